"""The monitors guard: shows each prediction to the monitors and carries out what their verdicts call for.

A verdict becomes a flag in the store (for a reviewer) and, per the monitor's configured action,
also: ``omit`` (the client's feedback and submissions are kept out of training), or ``throttle``
(the client is refused for ``server.throttle_seconds``). A verdict naming linked clients (keys
that sent near-duplicates of the same queries) acts on each of them too.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio.to_thread
import numpy as np
from starlette.responses import Response

from bastion.gateway.call import Call, Handler
from bastion.gateway.config import MonitorAction
from bastion.gateway.monitors import Monitor, Verdict

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["MonitorSlot", "Monitors", "act_on"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class MonitorSlot:
    """A monitor, what to do when it speaks, and a lock: monitors keep per-client state."""

    monitor: Monitor
    action: MonitorAction
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, client: str, x: np.ndarray, probs: np.ndarray) -> list[Verdict]:
        with self.lock:
            return self.monitor.observe(client, x, probs)


# Small requests are watched on the event loop: a thread hop costs ~0.3 ms of CPU, as much as a
# third of their watching (profiled: +18% requests/s for one MNIST image a request). Larger ones,
# whose embedding and searches grow with rows and values, go to a worker thread so the loop keeps
# serving meanwhile. At the limits the work is about 2 ms (4 rows of 4096 values, full indexes).
INLINE_ROWS = 4
INLINE_VALUES = 16_384


class Monitors:
    """Runs after the model; never changes the answer, only what happens to the client afterwards."""

    name = "monitors"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, call: Call, call_next: Handler) -> Response:
        if call.endpoint == "predict" and call.inputs is not None and call.probs is not None:
            if len(call.inputs) <= INLINE_ROWS and call.inputs.size <= INLINE_VALUES:
                self._watch(call.client, call.inputs, call.probs, call.prediction_ids)
            else:
                await anyio.to_thread.run_sync(self._watch, call.client, call.inputs, call.probs, call.prediction_ids)
        return await call_next(call)

    def _watch(self, client: str, x: np.ndarray, probs: np.ndarray, prediction_ids: list[str]) -> None:
        for slot in self.gateway.monitors:
            for verdict in slot.observe(client, x, probs):
                act_on(self.gateway, verdict, slot.action, prediction_ids[-1] if prediction_ids else None)


def act_on(gateway: Gateway, verdict: Verdict, action: MonitorAction, prediction_id: str | None) -> None:
    """Record the flag and carry out ``action`` for the verdict's client."""
    logger.warning("monitor %s flagged client %s: %s", verdict.monitor, verdict.client, verdict.reason)
    gateway.metrics.observe_flag(verdict.monitor)
    gateway.store.add_flag(
        client=verdict.client,
        kind=verdict.monitor,
        reason=verdict.reason,
        evidence={**verdict.evidence, "action": action},
        prediction_id=prediction_id,
        linked_clients=verdict.linked_clients,
    )
    if action == "omit":
        gateway.store.set_client_omitted(verdict.client, True)
    elif action == "throttle":
        gateway.penalties.throttle(verdict.client, gateway.config.server.throttle_seconds)
