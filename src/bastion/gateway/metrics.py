"""Counters and a latency histogram for ``/metrics``, in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Mapping

__all__ = ["Metrics"]

# Latency buckets in seconds: a prediction is ~1 ms on a small model, a slow store write ~100 ms.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)


class Metrics:
    """Process-wide counts; thread-safe. Each gateway process exposes its own (Prometheus sums them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._rejections: Counter[str] = Counter()
        self._flags: Counter[str] = Counter()
        self._predictions = 0
        self._latency: Counter[tuple[str, float]] = Counter()
        self._latency_sum: dict[str, float] = {}

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(endpoint, status)] += 1
            self._latency_sum[endpoint] = self._latency_sum.get(endpoint, 0.0) + seconds
            for bound in _BUCKETS:
                if seconds <= bound:
                    self._latency[(endpoint, bound)] += 1

    def observe_rejection(self, code: str) -> None:
        with self._lock:
            self._rejections[code] += 1

    def observe_flag(self, monitor: str) -> None:
        with self._lock:
            self._flags[monitor] += 1

    def observe_predictions(self, count: int) -> None:
        with self._lock:
            self._predictions += count

    def render(self, gauges: Mapping[str, int] | None = None) -> str:
        """The exposition text; ``gauges`` adds current sizes (e.g. items waiting in quarantine)."""
        with self._lock:
            lines = _counter("bastion_requests_total", "Requests answered, by endpoint and status.")
            lines += [
                f'bastion_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                for (e, s), n in sorted(self._requests.items())
            ]
            lines += _counter("bastion_rejections_total", "Requests refused by a guard, by code.")
            lines += [f'bastion_rejections_total{{code="{c}"}} {n}' for c, n in sorted(self._rejections.items())]
            lines += _counter("bastion_flags_total", "Clients flagged, by monitor.")
            lines += [f'bastion_flags_total{{monitor="{m}"}} {n}' for m, n in sorted(self._flags.items())]
            lines += _counter("bastion_predictions_total", "Inputs classified.")
            lines.append(f"bastion_predictions_total {self._predictions}")
            lines += self._histogram_lines()
        for name, value in sorted((gauges or {}).items()):
            lines += [
                f"# HELP bastion_{name} Current count of {name.replace('_', ' ')}.",
                f"# TYPE bastion_{name} gauge",
            ]
            lines.append(f"bastion_{name} {value}")
        return "\n".join(lines) + "\n"

    def _histogram_lines(self) -> list[str]:
        name = "bastion_request_duration_seconds"
        lines = [f"# HELP {name} Time from request to response.", f"# TYPE {name} histogram"]
        for endpoint in sorted(self._latency_sum):
            for bound in _BUCKETS:
                label = "+Inf" if math.isinf(bound) else repr(bound)
                count = self._latency[(endpoint, bound)]
                lines.append(f'{name}_bucket{{endpoint="{endpoint}",le="{label}"}} {count}')
            lines.append(f'{name}_sum{{endpoint="{endpoint}"}} {self._latency_sum[endpoint]:.6f}')
            lines.append(f'{name}_count{{endpoint="{endpoint}"}} {self._latency[(endpoint, math.inf)]}')
        return lines


def _counter(name: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
