"""Which prompts ``eval`` samples: a prompt file, the run's own, or the toy TEST split."""

from __future__ import annotations

from pathlib import Path

from spatialalign.core.errors import SpatialAlignError
from spatialalign.prompts.model import DSRPrompt
from spatialalign.rundir.layout import RunDir

TOY_TEST = "toy-test"
"""``--prompts toy-test[:N]``: the toy TEST split ``toy evaluate`` uses (N prompts, default 120)."""
AUTO_SPLIT = "auto"
"""Evaluate the file's ``test`` split when it has one, else every prompt."""


def toy_test_count(spec: str) -> int:
    """The prompt count of ``toy-test`` (120) or ``toy-test:N``; else one clear error."""
    if spec == TOY_TEST:
        return 120
    head, _, count = spec.partition(":")
    if head != TOY_TEST or not count.isdigit() or int(count) < 1:
        raise SpatialAlignError(f"--prompts {spec!r}: expected a file, toy-test or toy-test:N")
    return int(count)


def is_toy_test(spec: str | None) -> bool:
    """Whether ``--prompts`` asks for the generated toy TEST split."""
    return spec is not None and (spec == TOY_TEST or spec.startswith(TOY_TEST + ":"))


def toy_test_prompts(spec: str) -> list[DSRPrompt]:
    """``toy-test`` (120 prompts) or ``toy-test:N``: the generated toy TEST split, as
    ``toy evaluate`` draws it (prompt seed 0, beside 500 TRAIN prompts)."""
    from spatialalign.toy.evaluate import ToyEvalConfig, eval_prompts

    return eval_prompts(ToyEvalConfig(n_test=toy_test_count(spec)))


def prepare_prompts(run: RunDir, spec: str | None, split: str) -> tuple[Path, str, list[str]]:
    """(the prompt file to sample from, the split, the evaluated prompt ids).

    Writes ``RUN/prompts.parquet`` when absent, as ``sample`` does; for ``toy-test`` that
    file is what is sampled, so an existing one must hold exactly those prompts.
    """
    from spatialalign.prompts import write_prompts
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
            write_prompts(prompts, run.prompts_path)
        source = run.prompts_path
    else:
        source = Path(spec) if spec is not None else run.prompts_path
        prompts = run.read_prompts(source)
    if split == AUTO_SPLIT:
        split = "test" if any(p.split == "test" for p in prompts) else "all"
    chosen = [p.prompt_id for p in select_prompts(prompts, split)]
    ensure_run_prompts(run.root, prompts, chosen)
    return source, split, chosen
