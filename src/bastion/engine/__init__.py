"""Engines: where work runs. In-process by default; the seam admits a cluster engine."""

from bastion.engine.interface import Batch, Engine
from bastion.engine.local import LocalEngine

__all__ = ["Batch", "Engine", "LocalEngine", "get_engine"]


def get_engine(name: str) -> Engine:
    """The engine called ``name``."""
    from bastion.errors import ConfigError

    if name != "local":
        raise ConfigError(f"unknown engine {name!r}: expected one of local")
    return LocalEngine()
