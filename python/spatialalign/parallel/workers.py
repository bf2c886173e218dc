"""Worker processes on one machine, without a launcher, for the stages that shard by rank.

``sample`` and ``track`` split their work by (rank, world size) (see
:mod:`spatialalign.parallel.ranks`); under ``torchrun`` each process is one rank. ``eval``
and ``loop`` run in one process, so they use :class:`Workers` instead: rank 0 runs in the
caller, ranks ``1..N-1`` in spawned processes that live as long as the ``Workers``
object (a loop pays the start-up of torch once, not every stage). Every video is a
function of its prompt and seed and every track of its video, so the results do not
depend on ``N``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from spatialalign.core.errors import SpatialAlignError

T = TypeVar("T")
MAX_AUTO_WORKERS = 8
"""Most processes chosen by :func:`default_workers` (each holds torch and a model copy)."""
VIDEOS_PER_WORKER = 200
"""Fewest videos worth another process when not told: starting one (importing diffusers
and loading the toy model) costs about 15 s, the time of some 120 toy videos."""


def workers_field() -> Any:
    """The ``--workers`` setting, one definition for every verb and config that spreads its
    work over processes (``sample``, ``track``, ``eval``, ``loop``)."""
    return field(
        default=None,
        metadata={
            "help": "Processes that share the work [the toy model or detector on the CPU: one "
            f"per core and per {VIDEOS_PER_WORKER} videos, up to {MAX_AUTO_WORKERS}; else 1; "
            "under torchrun 1]. The results do not depend on it.",
            "type": click.IntRange(min=1),
        },
    )


@dataclass(frozen=True)
class WorkerSpec:
    """How many processes share a stage's work (the verbs derive ``--workers`` from it)."""

    workers: int | None = workers_field()


def _cgroup_cores() -> int | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max``) in whole cores, rounded up;
    None when there is none or it cannot be read."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota == "max":
            return None
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask (not the machine's count),
    lowered to its cgroup's CPU quota (a container's limit)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cores()
    return max(1, min(n, quota) if quota is not None else n)


def _check_toy(toy: bool) -> bool:
    # the callers say it with models.registry.is_toy(model) (or detector == "toy"): this
    # layer knows no model names
    if not isinstance(toy, bool):
        raise TypeError(f"toy must be a bool (is_toy(model)), got {toy!r}")
    return toy


def default_workers(toy: bool, device: str | None = None, videos: int | None = None) -> int:
    """How many processes share sampling and tracking when not told.

    ``toy``: the work is a toy-family model's or the toy detector's
    (:func:`spatialalign.models.registry.is_toy`). On the CPU that runs one thread per
    process (its ops are tiny), so one process per usable core (at most
    :data:`MAX_AUTO_WORKERS`), and no more than one per :data:`VIDEOS_PER_WORKER` of the
    ``videos`` to make. Anything else, one: a GPU is shared badly by several processes, and
    several GPUs are ``torchrun``'s job.
    """
    from spatialalign.parallel.ranks import env_rank_world

    if not _check_toy(toy) or env_rank_world()[1] > 1:  # or one rank of a launcher already
        return 1
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not str(device).startswith("cpu"):
        return 1
    n = min(usable_cores(), MAX_AUTO_WORKERS)
    if videos is not None:
        n = min(n, videos // VIDEOS_PER_WORKER)
    return max(1, n)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def resolve_workers(
    workers: int | None,
    toy: bool,
    device: str | None = None,
    videos: int | None = None,
    *,
    say: Callable[[str], None] | None = None,
) -> int:
    """``workers`` checked (>= 1) and capped at the usable cores and at ``videos`` (the
    work items; each process needs one, and one core), or :func:`default_workers` when
    None (``toy``: as there). A cap is said in one line (``say``, default: stderr): ``--workers 12 capped to 2
    (2 cores, 6 videos)``."""
    if workers is None:
        return default_workers(toy, device, videos)
    _check_toy(toy)
    if workers < 1:
        raise SpatialAlignError(f"--workers must be >= 1, got {workers}")
    cores = usable_cores()
    n = min(workers, cores)
    if videos is not None:
        n = max(1, min(n, videos))
    if n < workers:
        why = _plural(cores, "core") + (
            f", {_plural(videos, 'video')}" if videos is not None else ""
        )
        line = f"--workers {workers} capped to {n} ({why})"
        if say is None:
            import sys

            print(line, file=sys.stderr, flush=True)
        else:
            say(line)
    return n


def _import_all(modules: tuple[str, ...]) -> None:
    import importlib

    for name in modules:
        importlib.import_module(name)


def preload_for(toy: bool) -> tuple[str, ...]:
    """Modules a worker sampling a model needs (to import while the caller starts up);
    ``toy``: a toy-family model (:func:`spatialalign.models.registry.is_toy`)."""
    mods = ("spatialalign.sampling.run", "spatialalign.detection.sharded")
    return (*mods, "spatialalign.models.toy.pipeline") if _check_toy(toy) else mods


class Workers:
    """``n`` ranks: 0 in this process, the others in a pool of spawned processes.

    Use as a context manager (the pool is shut down on exit). :meth:`run` calls
    ``fn(rank, n, *args)`` on every rank and returns the results in rank order; ``fn`` and
    its arguments must be picklable (a module-level function and plain data). ``preload``
    names modules the processes import as soon as they start (diffusers and the toy model
    take about 10 s), while this process gets on with its own work.
    """

    def __init__(self, n: int = 1, preload: tuple[str, ...] = ()) -> None:
        if n < 1:
            raise SpatialAlignError(f"--workers must be >= 1, got {n}")
        self.n = n
        self.preload = preload
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.n > 1 and self.preload:
            for _ in range(self.n - 1):
                self._executor().submit(_import_all, self.preload)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the worker processes (after their current task)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            # spawn, not fork: torch and tokenizer threads do not survive a fork
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.n - 1, mp_context=ctx)
        return self._pool

    def run(self, fn: Callable[..., T], *args: Any) -> list[T]:
        """``[fn(0, n, *args), ..., fn(n-1, n, *args)]``, rank 0 here and the rest in the pool.

        Every rank runs to its end even when another fails (finished work is kept on disk);
        then the first error is raised (a worker killed by the system as one clear error).
        """
        if self.n == 1:
            return [fn(0, 1, *args)]
        futures: list[Future[T]] = [
            self._executor().submit(fn, rank, self.n, *args) for rank in range(1, self.n)
        ]
        results: list[Any] = []
        error: BaseException | None = None
        try:
            results.append(fn(0, self.n, *args))
        except BaseException as e:  # noqa: BLE001 - re-raised once the other ranks stop
            error = e
        for rank, future in enumerate(futures, start=1):
            try:
                results.append(future.result())
            except BrokenProcessPool:
                self._pool = None  # unusable; a later run starts a fresh pool
                error = error or SpatialAlignError(
                    f"worker process of rank {rank} died (killed, or out of memory?); "
                    "rerun to resume, or use fewer --workers"
                )
            except BaseException as e:  # noqa: BLE001
                error = error or e
        if error is not None:
            raise error
        return results
