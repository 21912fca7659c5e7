"""The ``bastion`` command: one typer app, one module per command group, errors mapped to exit codes."""

from __future__ import annotations

import logging
import sys

import typer
from rich.markup import escape

import bastion
from bastion.cli.assess import assess_command
from bastion.cli.audit import audit_command
from bastion.cli.common import err_console, out_console
from bastion.cli.config import config_app
from bastion.cli.extract import extract_command
from bastion.cli.fuzz import fuzz_command
from bastion.cli.gate import gate_command, registry_app, retrain_command
from bastion.cli.harden import harden_command
from bastion.cli.poison import poison_command
from bastion.cli.serve import keys_app, review_app, serve_command
from bastion.cli.universal import patch_command, perturbation_command
from bastion.engine.memory import map_large_buffers
from bastion.errors import INTERNAL_ERROR_EXIT_CODE, BastionError

__all__ = ["app", "main"]

app = typer.Typer(
    name="bastion",
    help="Attack, harden and guard machine-learning classifiers.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)
app.command("assess")(assess_command)
app.command("audit")(audit_command)
app.command("extract")(extract_command)
app.command("patch")(patch_command)
app.command("perturbation")(perturbation_command)
app.command("poison")(poison_command)
app.command("serve")(serve_command)
app.command("gate")(gate_command)
app.command("harden")(harden_command)
app.command("fuzz")(fuzz_command)
app.command("retrain")(retrain_command)
app.add_typer(registry_app, name="registry")
app.add_typer(keys_app, name="keys")
app.add_typer(review_app, name="review")
app.add_typer(config_app, name="config")


@app.command("attacks")
def attacks_command() -> None:
    """List the registered attacks with the norms they support."""
    from rich.table import Table

    from bastion.attacks.registry import ATTACKS

    table = Table("attack", "norms", "knowledge", "kind")
    for name in sorted(ATTACKS):
        attack = ATTACKS[name]()
        kind = "minimal perturbation" if attack.minimal else "bounded (eps)"
        table.add_row(name, ", ".join(attack.norms), attack.knowledge.value, kind)
    out_console.print(table)


@app.command("version")
def version_command() -> None:
    """Print the version."""
    out_console.print(f"bastion {bastion.__version__}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; no traceback ever reaches the user."""
    _configure_logging()
    map_large_buffers()  # peak memory follows the batch size, not the number of batches
    try:
        # Standalone mode: typer reports usage errors itself (exit 2) and ends with SystemExit.
        app(args=argv, prog_name="bastion")
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BastionError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)  # "[integrity]" is text
        return exc.exit_code
    except Exception as exc:  # the last line of defence: a bug, reported without a traceback
        logging.getLogger("bastion").debug("internal error", exc_info=True)
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}. "
            "This is a bug in Bastion; set BASTION_DEBUG=1 for the traceback.",
            highlight=False,
        )
        if _debug():
            raise
        return INTERNAL_ERROR_EXIT_CODE
    return 0


def _configure_logging() -> None:
    """Warnings from everything; Bastion's own progress notes (e.g. demo training) at INFO, on stderr."""
    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    logging.getLogger("bastion").setLevel(logging.INFO)


def _debug() -> bool:
    import os

    return os.environ.get("BASTION_DEBUG", "") not in ("", "0")


if __name__ == "__main__":
    sys.exit(main())
