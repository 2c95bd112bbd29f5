"""``lookalike.train.average``: the moving average of the weights and the blend with the starting ones."""

import pytest
import torch
from torch import nn

from lookalike.train.average import Average


def one_weight(value: float) -> nn.Module:
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(value)
    return net


def set_weight(net: nn.Module, value: float) -> None:
    with torch.no_grad():
        net[0].weight.fill_(value)


def test_moving_average_follows_the_hand_worked_sequence():
    net = one_weight(0.0)
    average = Average(net, decay=0.5)
    for w in (1.0, 1.0, 3.0):  # 0 -> 0.5 -> 0.75 -> 1.875
        set_weight(net, w)
        average.update()
    assert average.exported()[0].weight.item() == pytest.approx(1.875)
    assert average.exported(0.5)[0].weight.item() == pytest.approx(0.9375)  # halfway back to the start, 0
    assert net[0].weight.item() == 3.0  # the network being trained is left alone
    counted = average.exported()[1].num_batches_tracked  # integer buffers are copied, not averaged
    assert counted.dtype == torch.int64 and counted.item() == net[1].num_batches_tracked.item()


def test_without_averaging_the_blend_runs_from_the_start_to_the_trained_weights():
    net = one_weight(2.0)
    average = Average(net)
    set_weight(net, 6.0)
    average.update()  # nothing to average
    assert [average.exported(s)[0].weight.item() for s in (0.0, 0.25, 1.0)] == [2.0, 3.0, 6.0]
    assert average.state() == {}
    with pytest.raises(ValueError, match="no moving average of decay 0.5"):
        average.exported(decay=0.5)


def test_several_averages_follow_one_run_each_by_its_own_decay():
    net = one_weight(0.0)
    average = Average(net, decay=0.5, decays=(0.0, 0.75, 0.5))
    assert sorted(average.state()) == [0.5, 0.75]  # 0 is the trained weights: nothing to keep
    for w in (4.0, 4.0):  # decay 0.5: 0 -> 2 -> 3; decay 0.75: 0 -> 1 -> 1.75
        set_weight(net, w)
        average.update()
    assert average.exported()[0].weight.item() == pytest.approx(3.0)  # the default decay
    assert average.exported(decay=0.75)[0].weight.item() == pytest.approx(1.75)
    assert average.exported(0.5, decay=0.75)[0].weight.item() == pytest.approx(0.875)
    assert average.exported(decay=0.0)[0].weight.item() == 4.0  # the last weights


def test_a_resumed_average_continues_from_its_saved_state():
    net = one_weight(0.0)
    first = Average(net, decay=0.5)
    set_weight(net, 1.0)
    first.update()
    saved = {d: {k: v.clone() for k, v in state.items()} for d, state in first.state().items()}
    rebuilt = one_weight(0.0)  # a resumed run rebuilds the starting network, then loads the checkpoint
    again = Average(rebuilt, decay=0.5)
    again.load(saved)
    set_weight(rebuilt, 1.0)
    again.update()
    assert again.exported()[0].weight.item() == pytest.approx(0.75)  # not 0.5: the average went on
    assert again.exported(0.0)[0].weight.item() == 0.0
