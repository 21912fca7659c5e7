"""Boundary proximity: flag a client whose inputs sit near the decision boundary far more often than benign traffic.

Attacks that search for adversarial examples through queries (HopSkipJump, the Boundary attack,
Square, ...) spend most of their queries hugging the decision boundary. The *margin* of an
input is its top-1 probability minus its top-2 probability; an input is *near the boundary*
when its margin is below a threshold calibrated on benign traffic (``calibrate_boundary``: the
5th percentile of benign margins, so a benign input is near with probability p0 ~ 0.05).

Per client, a sequential probability ratio test (Wald, "Sequential Tests of Statistical
Hypotheses", Ann. Math. Statist. 16(2), 1945) weighs H0: the client's near-boundary rate is p0
against H1: it is p1 > p0. Each input adds log(p1/p0) to the log-likelihood ratio if near,
log((1-p1)/(1-p0)) otherwise; the client is flagged when the ratio reaches
log((1-beta)/alpha). The ratio is floored at log(beta/(1-alpha)), Wald's acceptance boundary:
accepting H0 restarts the test instead of ending it (as in Page's CUSUM, 1954), so a long benign
history cannot bank credit that hides a later attack. With p0 = 0.05, p1 = 0.5, alpha = 1e-4 and
beta = 0.01, four near inputs in a row flag, and a benign client sending 100 inputs is flagged
with probability ~1e-4 (simulated).

An exact repeat of one of the client's recent inputs is not counted: a deterministic model
answers it as before, so it teaches an attacker nothing, and a user re-submitting an ambiguous
photo must not look like a boundary search.

Example::

    cal = calibrate_boundary(benign_probs)
    monitor = BoundaryProximityMonitor(threshold=cal.threshold, population_rate=cal.population_rate)
    verdicts = monitor.observe("key-1", x, probs)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from bastion.errors import ConfigError
from bastion.gateway.monitors.interface import ClientStates, Verdict, check_batch, input_digest

__all__ = ["BoundaryProximityMonitor", "margins"]

# How many of a client's most recent distinct inputs are remembered to skip exact repeats (a few
# hundred bytes a client: the monitor may track 100 000 of them).
RECENT_INPUTS = 8


def margins(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability of each row of ``probs`` ``(n, num_classes)``, as float64."""
    top2 = np.partition(np.asarray(probs, dtype=np.float64), -2, axis=1)[:, -2:]
    return np.asarray(top2[:, 1] - top2[:, 0])


@dataclass(frozen=True)
class _Test:
    """The SPRT's per-input increments and its two boundaries, derived once from the configuration."""

    near: float  # log(p1 / p0)
    far: float  # log((1 - p1) / (1 - p0))
    upper: float  # log((1 - beta) / alpha): flag
    lower: float  # log(beta / (1 - alpha)): accept H0 and restart


@dataclass
class _Client:
    """One client's running test."""

    llr: float = 0.0
    queries: int = 0  # distinct inputs counted
    near: int = 0  # of which near the boundary
    peak: float = 0.0  # the highest ratio reached
    flagged: bool = False
    recent: deque[bytes] = field(default_factory=lambda: deque(maxlen=RECENT_INPUTS))


class BoundaryProximityMonitor:
    """Wald's SPRT per client on "this client's near-boundary rate exceeds the benign rate"."""

    name = "boundary"

    def __init__(
        self,
        *,
        threshold: float,
        population_rate: float,
        attack_rate: float | None = None,
        alpha: float = 1e-4,
        beta: float = 0.01,
        max_clients: int = 100_000,
    ) -> None:
        """``attack_rate`` (p1) defaults to max(0.5, 5 p0), at most halfway from p0 to 1 (p0 = ``population_rate``)."""
        self.threshold = threshold
        self.population_rate = population_rate
        self.attack_rate = attack_rate
        self.alpha = alpha
        self.beta = beta
        self.max_clients = max_clients
        # Validated here rather than on first use: a gateway must refuse a bad configuration when it
        # starts, not on its first request.
        self._test = self._derive()
        self._clients: ClientStates[_Client] = ClientStates(max_clients)

    def observe(self, client: str, x: np.ndarray, probs: np.ndarray) -> list[Verdict]:
        """Update the client's test with each new input of the request; a verdict when it first crosses."""
        check_batch(x, probs)
        state = self._clients.get(client, _Client)
        crossed: Verdict | None = None
        for row, margin in zip(x, margins(probs), strict=True):
            digest = input_digest(row)
            if digest in state.recent:
                continue
            state.recent.append(digest)
            self._update(state, bool(margin < self.threshold))
            if state.llr >= self._test.upper and not state.flagged:
                state.flagged = True
                crossed = self._verdict(client, state)
        return [] if crossed is None else [crossed]

    def reset(self, client: str) -> None:
        """Forget the client: its test restarts from zero and it may be flagged again."""
        self._clients.pop(client)

    def tracked(self) -> list[str]:
        """The clients with state, least recently seen first."""
        return list(self._clients)

    def _update(self, state: _Client, near: bool) -> None:
        state.queries += 1
        state.near += near
        step = self._test.near if near else self._test.far
        state.llr = max(state.llr + step, self._test.lower)
        state.peak = max(state.peak, state.llr)

    def _verdict(self, client: str, state: _Client) -> Verdict:
        return Verdict(
            monitor=self.name,
            client=client,
            reason="near_boundary_queries",
            evidence={
                "log_likelihood_ratio": round(state.llr, 4),
                "flag_at": round(self._test.upper, 4),
                "queries": state.queries,
                "near_boundary": state.near,
                "margin_threshold": float(self.threshold),
                "population_rate": float(self.population_rate),
                "attack_rate": float(self._p1()),
            },
        )

    def _p1(self) -> float:
        if self.attack_rate is not None:
            return self.attack_rate
        return max(0.5, min(5 * self.population_rate, (1 + self.population_rate) / 2))

    def _derive(self) -> _Test:
        p0, p1 = self.population_rate, self._p1()
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"expected 0 < threshold <= 1 (a margin between probabilities), got {self.threshold}")
        if not 0 < p0 < 1:
            raise ConfigError(f"expected 0 < population_rate < 1, got {p0}")
        if not p0 < p1 < 1:
            raise ConfigError(f"expected population_rate {p0} < attack_rate < 1, got {p1}")
        if not (0 < self.alpha < 1 and 0 < self.beta < 1 and self.alpha + self.beta < 1):
            raise ConfigError(
                f"expected 0 < alpha, beta and alpha + beta < 1, got alpha={self.alpha}, beta={self.beta}"
            )
        return _Test(
            near=math.log(p1 / p0),
            far=math.log((1 - p1) / (1 - p0)),
            upper=math.log((1 - self.beta) / self.alpha),
            lower=math.log(self.beta / (1 - self.alpha)),
        )
