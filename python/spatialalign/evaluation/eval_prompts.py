"""Which prompts ``eval`` samples: a prompt file, the run's own, or a toy TEST split."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.models.registry import model_world
from spatialalign.prompts.splits import ToySplit, world_split
from spatialalign.rundir.layout import RunDir

TOY_TEST = "toy-test"
"""``--prompts toy-test[:N]``: the toy TEST split (:data:`~spatialalign.prompts.splits.TOY_SPLIT`;
N prompts, default its 120), which ``toy evaluate`` uses too."""
HARD_TEST = "toy-hard-test"
"""``--prompts toy-hard-test[:N]``: the hard world's TEST split
(:data:`~spatialalign.prompts.splits.HARD_SPLIT`), which ``toy evaluate --world hard`` uses."""
TEST_SETS: dict[str, str] = {TOY_TEST: "toy", HARD_TEST: "hard"}
"""``--prompts`` names of the generated TEST splits -> their toy world."""
AUTO_SPLIT = "auto"
"""Evaluate the file's ``test`` split when it has one, else every prompt."""


def _parse(spec: str) -> tuple[str, str | None]:
    """(test set name, count text or None) of ``NAME`` / ``NAME:N``."""
    head, sep, count = spec.partition(":")
    return head, (count if sep else None)


def default_test_set(model: str) -> str:
    """The TEST split a model is evaluated on by default: ``toy-hard-test`` for the hard
    world's model, ``toy-test`` for the others (the toy model, and Wan as before)."""
    return HARD_TEST if model_world(model) == "hard" else TOY_TEST


def test_set_split(spec: str) -> ToySplit:
    """The split whose TEST prompts ``spec`` (``toy-test[:N]``, ``toy-hard-test[:N]``) names."""
    return world_split(TEST_SETS[_parse(spec)[0]])


def toy_test_count(spec: str) -> int:
    """The prompt count of ``toy-test`` / ``toy-hard-test`` (the split's 120) or ``NAME:N``;
    else one clear error."""
    head, count = _parse(spec)
    if head in TEST_SETS and count is None:
        return world_split(TEST_SETS[head]).n_test
    if head not in TEST_SETS or count is None or not count.isdigit() or int(count) < 1:
        raise SpatialAlignError(
            f"--prompts {spec!r}: expected a file, toy-test or toy-test:N "
            "(toy-hard-test[:N]: the hard world's)"
        )
    return int(count)


def is_toy_test(spec: str | None) -> bool:
    """Whether ``--prompts`` asks for a generated toy TEST split (``toy-test[:N]``,
    ``toy-hard-test[:N]``)."""
    return spec is not None and any(spec == n or spec.startswith(n + ":") for n in TEST_SETS)


def toy_test_prompts(spec: str) -> list[DSRPrompt]:
    """``toy-test`` (120 prompts) or ``toy-test:N`` (and the same of ``toy-hard-test``): the
    split's TEST prompts (drawn with ``n_test`` N), as ``toy evaluate`` draws them."""
    return replace(test_set_split(spec), n_test=toy_test_count(spec)).prompts("test")


def prepare_prompts(run: RunDir, spec: str | None, split: str) -> tuple[Path, str, list[str]]:
    """(the prompt file to sample from, the split, the evaluated prompt ids).

    Writes ``RUN/prompts.parquet`` when absent, as ``sample`` does; for ``toy-test`` that
    file is what is sampled, so an existing one must hold exactly those prompts.
    """
    from spatialalign.sampling.run_prompts import ensure_run_prompts
    from spatialalign.sampling.sampler import select_prompts

    if is_toy_test(spec):
        prompts = toy_test_prompts(spec)
        if run.prompts_path.is_file():
            have = {(p.prompt_id, p.text) for p in run.read_prompts()}
            if have != {(p.prompt_id, p.text) for p in prompts}:
                raise SpatialAlignError(
                    f"{run.prompts_path} holds other prompts than {spec}; use another run directory"
                )
        else:
            run.write_prompts(prompts)
        source = run.prompts_path
    else:
        source = Path(spec) if spec is not None else run.prompts_path
        prompts = run.read_prompts(source)
    if split == AUTO_SPLIT:
        split = "test" if any(p.split == "test" for p in prompts) else "all"
    chosen = [p.prompt_id for p in select_prompts(prompts, split)]
    ensure_run_prompts(run.root, prompts, chosen)
    return source, split, chosen
