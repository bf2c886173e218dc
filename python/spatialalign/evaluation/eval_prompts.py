"""Which prompts ``eval`` samples: a prompt file, the run's own, or the toy TEST split."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.prompts.splits import TOY_SPLIT
from spatialalign.rundir.layout import RunDir

TOY_TEST = "toy-test"
"""``--prompts toy-test[:N]``: the toy TEST split (:data:`~spatialalign.prompts.splits.TOY_SPLIT`;
N prompts, default its 120), which ``toy evaluate`` uses too."""
AUTO_SPLIT = "auto"
"""Evaluate the file's ``test`` split when it has one, else every prompt."""


def toy_test_count(spec: str) -> int:
    """The prompt count of ``toy-test`` (the split's 120) or ``toy-test:N``; else one clear
    error."""
    if spec == TOY_TEST:
        return TOY_SPLIT.n_test
    head, _, count = spec.partition(":")
    if head != TOY_TEST or not count.isdigit() or int(count) < 1:
        raise SpatialAlignError(f"--prompts {spec!r}: expected a file, toy-test or toy-test:N")
    return int(count)


def is_toy_test(spec: str | None) -> bool:
    """Whether ``--prompts`` asks for the generated toy TEST split."""
    return spec is not None and (spec == TOY_TEST or spec.startswith(TOY_TEST + ":"))


def toy_test_prompts(spec: str) -> list[DSRPrompt]:
    """``toy-test`` (120 prompts) or ``toy-test:N``: the toy split's TEST prompts (drawn with
    ``n_test`` N), as ``toy evaluate`` draws them."""
    return replace(TOY_SPLIT, n_test=toy_test_count(spec)).prompts("test")


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
