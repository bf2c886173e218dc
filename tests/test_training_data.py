"""The training data stream: order and per-item noise are functions of the seed alone."""

from __future__ import annotations

import torch
from spatialalign.training.data import (
    Sample,
    item_generator,
    micro_batch_positions,
    top_k_samples,
)


def test_each_epoch_is_a_permutation_and_processes_split_the_global_batch():
    n, batch = 5, 2
    stream = [i for k in range(5) for _, i in micro_batch_positions(n, batch, k, seed=3)]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    # two processes with half the batch take exactly the one-process global batches
    for k in range(4):
        one = micro_batch_positions(n, 2, k, seed=3)
        two = [p for r in range(2) for p in micro_batch_positions(n, 1, k, 3, rank=r, world=2)]
        assert one == two
    assert micro_batch_positions(n, 2, 7, seed=3) == micro_batch_positions(n, 2, 7, seed=3)
    assert micro_batch_positions(n, 2, 0, seed=3) != micro_batch_positions(n, 2, 0, seed=4)


def test_item_noise_depends_on_the_position_only():
    a = torch.randn(3, generator=item_generator(0, 7))
    assert torch.equal(a, torch.randn(3, generator=item_generator(0, 7)))
    assert not torch.equal(a, torch.randn(3, generator=item_generator(0, 8)))


def test_top_k_per_prompt():
    s = [Sample("a", "a1", 0.2), Sample("a", "a2", 0.9), Sample("a", "a3", 0.5)]
    s += [Sample("b", "b1", 0.1)]
    assert [x.sample_id for x in top_k_samples(s, 2)] == ["a2", "a3", "b1"]
