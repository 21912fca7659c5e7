"""The command-line interface: ``bastion`` and its commands."""

from bastion.cli.main import app, main

__all__ = ["app", "main"]
