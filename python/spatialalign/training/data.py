"""What the trainer reads: cached latents and text embeddings, and the items to train on.

Items are preference pairs (``dpo``, ``dpo+zo``, ``dpo+sft``) or scored samples (``sft``,
``rwr``). Which item each position of the data stream trains on is a pure function of the
seed and the position (:class:`ItemSampler`): ``pairs`` walks a stream of per-epoch
permutations of the items; ``prompt-uniform`` draws, at every position afresh, a uniformly
random prompt and then a uniformly random item of it (the official trainer's draws). Each
process takes its slice of each global micro-batch, and each stream position has its own
noise generator. So a resumed run needs no data-loader state, and 1 or N processes train on
the same global batches with the same noise.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

import torch

from spatialalign.core.errors import SpatialAlignError


@dataclass(frozen=True)
class Pair:
    """A winner and a loser sample of the same prompt."""

    prompt_id: str
    winner: str
    loser: str


@dataclass(frozen=True)
class Sample:
    """A sample of a prompt with its reward (DSR) for ``sft``/``rwr``."""

    prompt_id: str
    sample_id: str
    reward: float


@dataclass
class TrainData:
    """Latents ``[C, F, H, W]`` by sample id, text embeddings ``[L, D]`` by prompt id, and
    the pairs and samples to train on."""

    latents: dict[str, torch.Tensor]
    text: dict[str, torch.Tensor]
    pairs: list[Pair] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    def items(self, pairs: bool) -> list[Pair] | list[Sample]:
        """The pairs (``pairs=True``) or the samples, checked: non-empty, every id cached."""
        items: list = self.pairs if pairs else self.samples
        if not items:
            raise SpatialAlignError(f"no training {'pairs' if pairs else 'samples'}")
        for it in items:
            ids = (it.winner, it.loser) if isinstance(it, Pair) else (it.sample_id,)
            for sid in ids:
                if sid not in self.latents:
                    raise SpatialAlignError(f"no cached latents for sample {sid!r}")
            if it.prompt_id not in self.text:
                raise SpatialAlignError(f"no cached text embedding for prompt {it.prompt_id!r}")
        shapes = {tuple(v.shape) for v in self.latents.values()}
        if len(shapes) != 1:
            raise SpatialAlignError(f"cached latents differ in shape: {sorted(shapes)[:3]}")
        return items


def top_k_samples(samples: list[Sample], k: int) -> list[Sample]:
    """The ``k`` samples with the highest reward per prompt (ties: the first listed)."""
    by_prompt: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_prompt[s.prompt_id].append(s)
    out = []
    for group in by_prompt.values():
        out += sorted(group, key=lambda s: -s.reward)[:k]
    return out


def micro_batch_positions(
    n_items: int, batch: int, micro_index: int, seed: int, rank: int = 0, world: int = 1
) -> list[tuple[int, int]]:
    """``(stream position, item index)`` of micro-batch ``micro_index`` on ``rank``: positions
    ``[(k·world + rank)·batch, … + batch)`` of the stream of per-epoch permutations."""
    start = (micro_index * world + rank) * batch
    out: list[tuple[int, int]] = []
    epoch, perm = -1, torch.empty(0, dtype=torch.long)
    for pos in range(start, start + batch):
        e = pos // n_items
        if e != epoch:
            epoch = e
            perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed + e))
        out.append((pos, int(perm[pos % n_items])))
    return out


PairSampling = Literal["pairs", "prompt-uniform"]
PAIR_SAMPLING: tuple[str, ...] = ("pairs", "prompt-uniform")


def prompt_groups(items: list[Pair] | list[Sample]) -> list[list[int]]:
    """The indices of ``items`` per prompt, prompts in sorted id order, items in list order."""
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_prompt[it.prompt_id].append(i)
    return [by_prompt[p] for p in sorted(by_prompt)]


def draw_generator(seed: int, position: int) -> torch.Generator:
    """The CPU generator of one stream position's item draw (``prompt-uniform``): a pure
    function of seed and position, independent of the noise stream of :func:`item_generator`."""
    digest = hashlib.blake2b(f"spatialalign-draw:{seed}:{position}".encode(), digest_size=8)
    return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little"))


def prompt_uniform_positions(
    groups: list[list[int]], batch: int, micro_index: int, seed: int, rank: int = 0, world: int = 1
) -> list[tuple[int, int]]:
    """``(stream position, item index)`` of micro-batch ``micro_index`` on ``rank`` (positions
    as :func:`micro_batch_positions`): each position draws a uniformly random prompt (a group
    of ``groups``), then a uniformly random item of it, from its own generator."""
    start = (micro_index * world + rank) * batch
    out: list[tuple[int, int]] = []
    for pos in range(start, start + batch):
        g = draw_generator(seed, pos)
        group = groups[int(torch.randint(len(groups), (1,), generator=g))]
        out.append((pos, group[int(torch.randint(len(group), (1,), generator=g))]))
    return out


@dataclass(frozen=True)
class ItemSampler:
    """Which item each stream position trains on (``mode``: ``pairs`` or ``prompt-uniform``,
    see the module's docstring); a pure function of ``seed`` and the position."""

    items: list[Pair] | list[Sample]
    mode: PairSampling = "pairs"
    seed: int = 0
    groups: list[list[int]] = field(default_factory=list)

    @classmethod
    def of(cls, items: list[Pair] | list[Sample], mode: str, seed: int) -> ItemSampler:
        if mode not in PAIR_SAMPLING:
            raise SpatialAlignError(f"unknown pair sampling {mode!r} ({', '.join(PAIR_SAMPLING)})")
        groups = prompt_groups(items) if mode == "prompt-uniform" else []
        return cls(items, mode, seed, groups)  # type: ignore[arg-type]

    def positions(
        self, batch: int, micro_index: int, rank: int = 0, world: int = 1
    ) -> list[tuple[int, int]]:
        """``(stream position, item index)`` of micro-batch ``micro_index`` on ``rank``."""
        if self.mode == "prompt-uniform":
            return prompt_uniform_positions(self.groups, batch, micro_index, self.seed, rank, world)
        return micro_batch_positions(len(self.items), batch, micro_index, self.seed, rank, world)


def item_generator(seed: int, position: int) -> torch.Generator:
    """The CPU generator of one stream position's noise level and noise: a pure function of
    the position, so a resumed run, and any number of processes, draw the same."""
    return torch.Generator().manual_seed(seed * 1_000_003 + position)


def collate_pairs(
    data: TrainData, pairs: list[Pair]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Winner latents, loser latents ``[B, C, F, H, W]`` and text embeddings ``[B, L, D]``."""
    x_w = torch.stack([data.latents[p.winner] for p in pairs])
    x_l = torch.stack([data.latents[p.loser] for p in pairs])
    ctx = torch.stack([data.text[p.prompt_id] for p in pairs])
    return x_w, x_l, ctx


def collate_samples(
    data: TrainData, samples: list[Sample]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents ``[B, C, F, H, W]``, text embeddings ``[B, L, D]`` and rewards ``[B]``."""
    x = torch.stack([data.latents[s.sample_id] for s in samples])
    ctx = torch.stack([data.text[s.prompt_id] for s in samples])
    return x, ctx, torch.tensor([s.reward for s in samples], dtype=torch.float32)
