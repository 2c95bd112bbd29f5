"""EmbeddingNet on a stand-in EfficientNet-Lite of three tiny blocks (tiny_lite.py): fast, and every
block's width differs, so a wrong block, layer or width shows."""

import pytest
import torch
import torch.nn.functional as F

from lookalike.train.head import EmbeddingNet

from tiny_lite import WIDTHS, tiny_features


@pytest.fixture
def x():
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("layer, in_dim", [("pool", 1280), ("blocks", WIDTHS[-1])])
def test_the_embedding_takes_the_chosen_layers_width_and_is_unit_length(layer, in_dim, x):
    torch.manual_seed(0)
    net = EmbeddingNet(tiny_features(layer), 7).eval()
    assert net.embedding.proj.weight.shape == (7, in_dim)  # pool: the 1280 head channels; blocks: the last block's
    assert net.n_blocks == len(WIDTHS)
    with torch.no_grad():
        e = net(x)
    assert e.shape == (3, 7)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-6)


@pytest.mark.parametrize("layer", ["pool", "blocks"])
def test_the_network_embeds_the_backbones_pooled_features(layer, x):
    net = EmbeddingNet(tiny_features(layer), 5).eval()
    with torch.no_grad():
        # the reference: LiteFeatures' own forward, then the head
        assert torch.allclose(net(x), net.embedding(net.features(x)), atol=1e-6)
        # and by hand for the blocks layer: the last block's output, averaged over the image
        if layer == "blocks":
            h = net.features.net._swish(net.features.net._bn0(net.features.net._conv_stem(x)))
            for block in net.features.net._blocks:
                h = block(h)
            assert torch.allclose(net(x), F.normalize(net.embedding.proj(
                F.layer_norm(h.mean(dim=(2, 3)), (WIDTHS[-1],))), dim=1), atol=1e-6)


def test_tail_from_the_prefix_at_any_block_equals_the_whole_network(x):
    net = EmbeddingNet(tiny_features(), 6).eval()
    with torch.no_grad():
        whole = net(x)
        assert torch.equal(net.tail(x, 0), whole)  # start 0: from the image, stem included
        for start in range(1, net.n_blocks + 1):
            prefix = net.prefix(x, start)
            assert prefix.shape == (3, WIDTHS[start - 1], 8, 8)  # block start-1's output
            assert torch.allclose(net.tail(prefix, start), whole, atol=1e-6)
        # the input of block 0 is the stem's output (tail from 0 takes the image itself instead)
        assert torch.equal(net.prefix(x, 0), net.features.net._swish(net.features.net._bn0(
            net.features.net._conv_stem(x))))


def _ids(params):
    return [id(p) for p in params]


def test_trainable_groups_run_from_the_output_and_freeze_the_rest():
    net = EmbeddingNet(tiny_features(), 6)
    tiny = net.features.net
    blocks = tiny._blocks
    head = [*tiny._conv_head.parameters(), *tiny._bn1.parameters()]
    stem = [*tiny._conv_stem.parameters(), *tiny._bn0.parameters()]

    groups = net.trainable(1)  # blocks 1 and 2
    # by depth from the output (lr decay counts these): the head convolution, block 2, block 1
    assert [_ids(g) for g in groups] == [_ids(head), _ids(blocks[2].parameters()), _ids(blocks[1].parameters())]
    trainable = {id(p) for p in net.features.parameters() if p.requires_grad}
    assert trainable == {id(p) for g in groups for p in g}
    assert not any(p.requires_grad for p in [*blocks[0].parameters(), *stem])
    assert all(p.requires_grad for p in net.embedding.parameters())  # the head is always trained

    groups = net.trainable(0)  # everything, the stem last (deepest, so slowest)
    assert [_ids(g) for g in groups] == [_ids(head), *(_ids(b.parameters()) for b in blocks[::-1]), _ids(stem)]
    assert all(p.requires_grad for p in net.parameters())

    assert net.trainable(net.n_blocks) == []  # head only: the whole backbone frozen again, not even its head conv
    assert not any(p.requires_grad for p in net.features.parameters())
    assert all(p.requires_grad for p in net.embedding.parameters())

    groups = net.trainable(2)  # from a frozen state: block 2 and the head convolution come back
    assert [_ids(g) for g in groups] == [_ids(head), _ids(blocks[2].parameters())]
    assert {id(p) for p in net.features.parameters() if p.requires_grad} == {id(p) for g in groups for p in g}


class _Scale(torch.nn.Module):
    """A stand-in whitening: each coordinate times 1, 2, 3, ..."""

    def forward(self, e):
        return e * torch.arange(1.0, e.shape[1] + 1)


def test_a_whitening_set_on_the_network_maps_every_embedding_it_makes(x):
    net = EmbeddingNet(tiny_features("pool"), 5).eval()
    scale = torch.arange(1.0, 6.0)
    with torch.no_grad():
        plain, from_block = net(x), net.tail(net.prefix(x, 2), 2)
        net.whitening = _Scale()
        assert torch.allclose(net(x), plain * scale, atol=1e-6)
        assert torch.allclose(net.tail(net.prefix(x, 2), 2), from_block * scale, atol=1e-6)  # from a block too
        net.whitening = None
        assert torch.equal(net(x), plain)
