"""The NormSoftmax embedding head and the network that is exported."""

import pytest
import torch
import torch.nn.functional as F

from lookalike.models.efficientnet_lite import build
from lookalike.models.registry import resolve
from lookalike.train.head import Embedding, EmbeddingNet, NormSoftmax


def test_embedding_is_unit_length_and_ignores_feature_scale():
    torch.manual_seed(0)
    head = Embedding(40, 8)
    x = torch.randn(5, 40)
    e = head(x)
    assert e.shape == (5, 8)
    assert torch.allclose(e.norm(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(head(3 * x + 2), e, atol=1e-5)  # LayerNorm without affine removes scale and shift
    assert head.proj.bias is None and not list(head.norm.parameters())


def test_normsoftmax_loss_matches_its_definition():
    torch.manual_seed(0)
    loss_fn = NormSoftmax(4, 3, temperature=0.1)
    emb = F.normalize(torch.randn(6, 4), dim=1)
    codes = torch.tensor([0, 1, 2, 0, 1, 2])
    logits = emb @ F.normalize(loss_fn.proxies, dim=1).T / 0.1
    assert torch.allclose(loss_fn(emb, codes), F.cross_entropy(logits, codes))


def test_the_default_temperature_is_the_documented_recipes():
    from lookalike.train.config import TrainConfig

    assert NormSoftmax(4, 3).temperature == 0.05 == TrainConfig().temperature  # docs/training.md: 0.05


def test_a_margin_is_taken_off_the_true_class_cosine_only():
    torch.manual_seed(0)
    plain, margin = NormSoftmax(4, 3, temperature=0.1), NormSoftmax(4, 3, temperature=0.1, margin=0.2)
    margin.load_state_dict(plain.state_dict())
    emb = F.normalize(torch.randn(6, 4), dim=1)
    codes = torch.tensor([0, 1, 2, 0, 1, 2])
    cos = emb @ F.normalize(plain.proxies, dim=1).T
    # by hand, CosFace: -log(exp((cos_y - m) / T) / (exp((cos_y - m) / T) + sum over other classes of exp(cos_j / T)))
    true = cos[torch.arange(6), codes]
    others = torch.logsumexp(cos.masked_fill(F.one_hot(codes, 3).bool(), float("-inf")) / 0.1, dim=1)
    by_hand = -((true - 0.2) / 0.1 - torch.logaddexp((true - 0.2) / 0.1, others)).mean()
    assert torch.allclose(margin(emb, codes), by_hand, atol=1e-5)
    assert margin(emb, codes) > plain(emb, codes)
    assert torch.equal(margin.logits(emb), plain.logits(emb))  # the margin is a training penalty, not a score


def test_proxies_start_at_class_means():
    torch.manual_seed(0)
    emb = F.normalize(torch.randn(30, 16), dim=1)
    codes = torch.arange(30) % 3
    loss_fn = NormSoftmax(16, 4)
    untouched = loss_fn.proxies[3].clone()
    random_loss = loss_fn(emb, codes).item()
    loss_fn.init_from(emb, codes)
    for c in range(3):
        assert torch.allclose(loss_fn.proxies[c], F.normalize(emb[codes == c].mean(0), dim=0), atol=1e-6)
    assert torch.equal(loss_fn.proxies[3], untouched)  # a class without images keeps its random start
    assert loss_fn(emb, codes).item() < random_loss


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EmbeddingNet(build(resolve("efficientnet-lite0")), 32).eval()


@pytest.mark.slow
def test_tail_from_cached_prefix_equals_the_whole_network(net):
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        whole = net(x)
        for start in (5, 11, net.n_blocks):
            assert torch.allclose(net.tail(net.prefix(x, start), start), whole, atol=1e-5)
    assert whole.shape == (2, 32)


@pytest.mark.slow
def test_trainable_unfreezes_only_the_tail(net):
    groups = net.trainable(13)
    blocks = net.features.net._blocks
    head = net.features.net._conv_head, net.features.net._bn1
    # by depth from the output (lr-decay counts these): the head convolution, then blocks 15, 14, 13
    assert [len(g) for g in groups] == [sum(1 for m in ms for _ in m.parameters())
                                        for ms in (head, *([b] for b in blocks[:12:-1]))]
    assert groups[1][0] is next(blocks[15].parameters())
    params = [p for g in groups for p in g]
    assert all(p.requires_grad for b in blocks[13:] for p in b.parameters())
    assert not any(p.requires_grad for b in blocks[:13] for p in b.parameters())
    assert all(p.requires_grad for p in net.features.net._conv_head.parameters())
    assert not any(p.requires_grad for p in net.features.net._conv_stem.parameters())
    assert len(params) == sum(1 for m in [*blocks[13:], net.features.net._conv_head, net.features.net._bn1]
                              for _ in m.parameters())
    assert net.trainable(net.n_blocks) == []  # head only: the backbone stays frozen
    everything = net.trainable(0)
    assert len(everything) == net.n_blocks + 2 and all(p.requires_grad for g in everything for p in g)
    assert everything[-1][0] is net.features.net._conv_stem.weight  # the stem is deepest, so slowest


def test_a_margin_works_on_a_batch_without_the_last_classes():
    torch.manual_seed(0)
    loss_fn = NormSoftmax(4, 5, temperature=0.1, margin=0.2)
    emb = F.normalize(torch.randn(4, 4), dim=1)
    codes = torch.tensor([0, 1, 1, 0])  # classes 2-4 have no image in this batch
    cos = emb @ F.normalize(loss_fn.proxies, dim=1).T
    # by hand: the margin comes off the true class's cosine, the other four classes (present or not) compete
    logits = cos / 0.1
    logits[torch.arange(4), codes] -= 0.2 / 0.1
    by_hand = (torch.logsumexp(logits, dim=1) - logits[torch.arange(4), codes]).mean()
    assert torch.allclose(loss_fn(emb, codes), by_hand, atol=1e-5)
