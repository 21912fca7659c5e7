"""The running gateway's parts in one object: configuration, model, store, limiter, monitors, metrics.

:meth:`Gateway.build` turns a validated :class:`~bastion.gateway.config.GatewayConfig` into these
parts: it checks the configuration against its manifest when ``[integrity]`` asks for it (before
anything is loaded; see :mod:`bastion.audit.integrity`), loads the model through the model
protocol, opens (and migrates) the store, checks the rate-limit storage, and calibrates the
monitors on benign inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from bastion.audit.integrity import verify_at_start
from bastion.data.dataset import Dataset
from bastion.data.loaders import load_data
from bastion.errors import ConfigError
from bastion.gateway.config import GatewayConfig, ModelConfig
from bastion.gateway.decode import InputSpec
from bastion.gateway.guards.model import classify
from bastion.gateway.guards.monitors import MonitorSlot
from bastion.gateway.guards.ratelimit import Penalties
from bastion.gateway.metrics import Metrics
from bastion.gateway.monitoring import build_monitors
from bastion.gateway.ratelimit import RateLimiter
from bastion.gateway.recorder import Recorder
from bastion.gateway.review.session import Sessions
from bastion.gateway.store import Store
from bastion.models.interface import Classifier
from bastion.models.open import load_model

__all__ = ["Gateway", "load_gateway_model"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Gateway:
    """Everything a guard or an endpoint may need; one per gateway process."""

    config: GatewayConfig
    model: Classifier
    spec: InputSpec
    store: Store
    recorder: Recorder
    limiter: RateLimiter
    monitors: list[MonitorSlot]
    sessions: Sessions = field(default_factory=Sessions)
    metrics: Metrics = field(default_factory=Metrics)
    penalties: Penalties = field(default_factory=Penalties)

    @classmethod
    def build(cls, config: GatewayConfig, *, model: Classifier | None = None, store: Store | None = None) -> Gateway:
        """The gateway's parts from ``config``; ``model`` and ``store`` replace the configured ones.

        Raises :class:`~bastion.errors.IntegrityError` when the configuration or a file it names
        differs from its manifest: nothing is loaded from a file that changed.
        """
        verify_at_start(config)
        calibration: Dataset | None = None
        if model is None:
            model, calibration = load_gateway_model(config.model)
        elif config.model.calibration_data is not None:
            calibration = load_data(config.model.calibration_data)
        limiter = RateLimiter(
            per_key=config.rate_limit.per_key, global_=config.rate_limit.global_, storage_url=config.rate_limit.storage
        )
        limiter.check_storage()
        spec = InputSpec(
            input_shape=model.input_shape,
            bounds=model.bounds,
            max_batch=config.validation.max_batch,
            image_formats=config.validation.image_formats,
            max_pixels=config.validation.max_pixels,
            max_image_bytes=config.validation.max_image_bytes,
        )
        monitors = _monitors(config, model, calibration)
        store = store if store is not None else Store.open(config.store.url)
        return cls(
            config=config,
            model=model,
            spec=spec,
            store=store,
            recorder=Recorder(store),
            limiter=limiter,
            monitors=monitors,
            sessions=Sessions(config.server.session_secret),
        )

    def close(self) -> None:
        """Write what is queued and close the store."""
        self.recorder.close()
        self.store.close()


def load_gateway_model(config: ModelConfig) -> tuple[Classifier, Dataset | None]:
    """The configured model and its calibration data (the demo's training split for a demo model)."""
    from bastion.demo import demo_model

    calibration_spec = config.calibration_data
    if config.source.startswith("demo:"):
        name = config.source[5:]
        model: Classifier = demo_model(name)
        calibration_spec = calibration_spec or f"demo:{name}:train"
    else:
        if config.input_shape is None:  # the config validator requires it; here for the type checker
            raise ConfigError(f"input_shape is required for the model file {config.source!r}")
        model = load_model(
            config.source,
            input_shape=config.input_shape,
            bounds=config.bounds,
            factory=config.factory,
            trust_pickle=config.trust_pickle,
            trusted=config.trust_model_file,
        )
    calibration = load_data(calibration_spec) if calibration_spec is not None else None
    return model, calibration


def _monitors(config: GatewayConfig, model: Classifier, calibration: Dataset | None) -> list[MonitorSlot]:
    wanted = "monitors" in config.guards and (config.monitors.boundary.enabled or config.monitors.query.enabled)
    if not wanted:
        return []
    if calibration is None:
        raise ConfigError(
            "the monitors need benign inputs to calibrate on: set [model] calibration_data, "
            "or switch them off ([monitors.boundary] enabled = false, [monitors.query] enabled = false)"
        )
    inputs = calibration.x.detach().cpu().numpy().astype(np.float32)
    probs = np.concatenate([classify(model, inputs[i : i + 512]) for i in range(0, len(inputs), 512)])
    built = build_monitors(config.monitors, inputs, probs)
    return [MonitorSlot(monitor=monitor, action=action) for monitor, action in built]
