"""Which worker am I? Rank and world size under ``torchrun`` / ``accelerate launch``.

Shared by the stages that shard their work (``sample``, ``track``).

Both launchers set ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR`` /
``MASTER_PORT``). When a process group is available — already initialised by the
caller (e.g. accelerate), or creatable from the ``MASTER_*`` variables — workers can
wait for each other (:meth:`DistContext.barrier`); with only ``RANK`` / ``WORLD_SIZE``
set they run independently and coordinate through files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from spatialalign.core.errors import SpatialAlignError


@dataclass
class DistContext:
    """This process's place among the sampling workers."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    has_group: bool = False
    """Whether a torch.distributed process group is usable for barriers."""
    owns_group: bool = False
    """Whether we created the process group (and so must destroy it)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Waits for every worker; a no-op without a process group."""
        if self.has_group:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Destroys the process group if this context created it."""
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = self.has_group = False


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise SpatialAlignError(
            f"environment variable {name} must be an integer, got {value!r}"
        ) from None


def env_rank_world() -> tuple[int, int]:
    """(rank, world size) from ``RANK`` / ``WORLD_SIZE``, without importing torch."""
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if world < 1 or not 0 <= rank < world:
        raise SpatialAlignError(f"invalid RANK={rank} / WORLD_SIZE={world}")
    return rank, world


def dist_context(*, init_group: bool = True) -> DistContext:
    """Reads rank/world size from the environment (or an initialised process group).

    With ``init_group`` and the launcher's ``MASTER_ADDR``/``MASTER_PORT`` present, a gloo
    process group is created for barriers (gloo works on CPU-only machines and beside
    CUDA).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistContext(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=_env_int("LOCAL_RANK", 0),
            has_group=True,
        )
    rank, world = env_rank_world()
    ctx = DistContext(rank=rank, world_size=world, local_rank=_env_int("LOCAL_RANK", 0))
    if (
        init_group
        and world > 1
        and dist.is_available()
        and os.environ.get("MASTER_ADDR")
        and os.environ.get("MASTER_PORT")
    ):
        dist.init_process_group(backend="gloo", rank=rank, world_size=world)
        ctx.has_group = ctx.owns_group = True
    return ctx
