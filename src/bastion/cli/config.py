"""``bastion config sign`` and ``bastion config verify``: the gateway configuration's manifest (exit 6 on mismatch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bastion.audit.integrity import KEY_ENV, read_key, sign_config, verify_manifest
from bastion.cli.common import err_console, out_console
from bastion.errors import IntegrityError
from bastion.gateway.config import load_config

__all__ = ["config_app"]

config_app = typer.Typer(
    help="Sign the gateway configuration (config, hyper-parameters, model files) and verify it.", no_args_is_help=True
)

ConfigPath = Annotated[
    Path, typer.Option("--config", "-c", help="Gateway configuration (TOML); BASTION__SECTION__KEY overrides apply.")
]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help=f"HMAC-SHA256 key (at least 16 bytes); default: the config's \\[integrity] key_file, then ${KEY_ENV}.",
    ),
]


@config_app.command("sign")
def sign_command(
    config: ConfigPath,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the manifest (default: \\[integrity] manifest, else <config>.manifest.json)."
        ),
    ] = None,
    key_file: KeyFile = None,
) -> None:
    """Write the manifest of the configuration as it is now, signed when a key is given."""
    key = _key(config, key_file)
    written = sign_config(config, out=out, key=key)
    err_console.print(
        f"wrote {'signed' if key is not None else 'unsigned'} manifest {written}", highlight=False, markup=False
    )


@config_app.command("verify")
def verify_command(
    config: ConfigPath,
    manifest: Annotated[
        Path | None,
        typer.Option(help="The manifest (default: \\[integrity] manifest, else <config>.manifest.json)."),
    ] = None,
    key_file: KeyFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON on stdout.")] = False,
) -> None:
    """Compare the configuration, its hyper-parameters and files with the manifest; exit 6 on any difference."""
    report = verify_manifest(config, manifest, key=_key(config, key_file))
    if as_json:
        out_console.print_json(json.dumps(report.to_dict()))
    if not report.ok:
        raise IntegrityError(f"{config} does not match its manifest {report.manifest}; changed:\n{report.describe()}")
    signed = "signed, signature valid" if report.signed else "unsigned"
    err_console.print(
        f"{config} matches {report.manifest} ({signed}; {len(report.checks)} checks)", highlight=False, markup=False
    )


def _key(config: Path, key_file: Path | None) -> bytes | None:
    """``--key-file``, else the configuration's ``[integrity] key_file`` (beside it), else the environment."""
    if key_file is None:
        configured = load_config(config).integrity.key_file
        key_file = None if configured is None else config.parent / configured
    return read_key(key_file)
