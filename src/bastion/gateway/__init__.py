"""The guarded gateway (``bastion serve``): a FastAPI service in front of a deployed classifier.

Example::

    from bastion.gateway import Gateway, create_app, load_config

    app = create_app(Gateway.build(load_config("bastion.toml")))
"""

from __future__ import annotations

from bastion.gateway.app import create_app
from bastion.gateway.config import GatewayConfig, load_config
from bastion.gateway.service import Gateway

__all__ = ["Gateway", "GatewayConfig", "create_app", "load_config"]
