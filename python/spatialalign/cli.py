"""The ``spatialalign`` command line: a thin layer over the stage packages.

Each verb lives in its stage's ``cli`` module and is imported only when used, so
``spatialalign score-batch`` never pays for importing torch. Every verb exits
non-zero with a one-line reason on bad input (``--debug`` shows the traceback).
"""

from __future__ import annotations

import importlib
import sys

import click

from spatialalign import __version__
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.options import finite_floats

# verb -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "demo": "spatialalign.demo:demo",
    "prompts": "spatialalign.prompts.cli:prompts",
    "sample": "spatialalign.sampling.cli:sample",
    "ingest": "spatialalign.sampling.cli:ingest",
    "track": "spatialalign.detection.cli:track",
    "export-onnx": "spatialalign.detection.export_cli:export_onnx",
    "score-batch": "spatialalign.scoring.cli:score_batch",
    "pairs": "spatialalign.pairs.cli:pairs",
    "train": "spatialalign.training.cli:train",
    "rl": "spatialalign.rl.cli:rl",
    "export-adapter": "spatialalign.training.cli:export_adapter",
    "eval": "spatialalign.evaluation.cli:eval_cmd",
    "compare": "spatialalign.evaluation.compare_cli:compare",
    "loop": "spatialalign.loop.cli:loop",
    "report": "spatialalign.report.cli:report",
    "toy": "spatialalign.toy.cli:toy",
    "convert-lora": "spatialalign.lora.cli:convert_lora_cmd",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            command = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            # a stage whose optional dependencies are missing: say so, don't crash --help
            reason = str(e)

            @click.command(cmd_name, help=f"(unavailable: {reason})")
            def unavailable() -> None:
                raise SpatialAlignError(f"'{cmd_name}' is unavailable: {reason}")

            return unavailable
        return finite_floats(command)  # no verb takes a NaN or infinite number


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="spatialalign")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """SpatialAlign: score and improve dynamic spatial relationships in T2V models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="spatialalign", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except (SpatialAlignError, ValueError, OSError) as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(getattr(e, "exit_code", 1))  # 128 + N for a run stopped by signal N


if __name__ == "__main__":
    main()
