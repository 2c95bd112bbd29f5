"""``lookalike.train.average``: the blend of the trained weights with the starting ones."""

import torch
from torch import nn

from lookalike.train.average import Average


def test_the_blend_runs_from_the_start_to_the_trained_weights():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(2.0)
    average = Average(net)
    with torch.no_grad():
        net[0].weight.fill_(6.0)
        net[1].num_batches_tracked.fill_(5)
    assert [average.exported(s)[0].weight.item() for s in (0.0, 0.25, 1.0)] == [2.0, 3.0, 6.0]
    assert net[0].weight.item() == 6.0  # the network being trained is left alone
    counted = average.exported(0.5)[1].num_batches_tracked  # integer buffers are the trained ones, not mixed
    assert counted.dtype == torch.int64 and counted.item() == 5
