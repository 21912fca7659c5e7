"""Calibrating the monitors on benign traffic: the margin threshold, and the k-NN and link distances.

The gateway calibrates at start on benign inputs, e.g. the model's own test data::

    probs = model_probabilities(x_test)
    boundary = calibrate_boundary(probs, quantile=0.05)
    query = calibrate_query(benign_streams(x_test, clients=1000, length=100, seed=0),
                            k=20, dim=128, buffer_size=1000, seed=0)

Benign clients are simulated as users sending images of the test set drawn at random, in random
order, now and then re-sending one they sent before (a user re-submitting a photo is benign).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from bastion.errors import ConfigError, DataError
from bastion.gateway.monitors.boundary import margins
from bastion.gateway.monitors.interface import input_digest
from bastion.gateway.monitors.query import CHUNK, embed, pairwise_distances, stream_scores

__all__ = [
    "BoundaryCalibration",
    "QueryCalibration",
    "benign_streams",
    "calibrate_boundary",
    "calibrate_query",
    "nearest_distinct",
]

log = logging.getLogger(__name__)

# The most distinct benign inputs the link distance is measured on (its cost grows as the square).
MAX_LINK_POOL = 20_000


@dataclass(frozen=True)
class BoundaryCalibration:
    """The margin below which an input counts as near the boundary, and how often benign inputs are."""

    threshold: float
    population_rate: float  # measured: the share of the benign inputs with a margin below the threshold
    quantile: float
    samples: int


@dataclass(frozen=True)
class QueryCalibration:
    """The k-NN distance threshold and the link distance, with the false-positive rates measured on benign streams."""

    threshold: float
    measured_fpr: float  # the share of benign streams that would have been flagged (score < threshold)
    target_fpr: float
    link_distance: float
    link_rate: float  # the share of distinct benign inputs with another closer than link_distance
    k: int
    dim: int
    buffer_size: int
    seed: int
    streams: int
    stream_length: int  # the longest benign stream: the false-positive rate holds for streams up to this long


def calibrate_boundary(probs: np.ndarray, *, quantile: float = 0.05) -> BoundaryCalibration:
    """The ``quantile`` of benign margins (top-1 minus top-2 probability) as threshold, and its measured rate."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise DataError(f"expected benign probabilities of shape (n, num_classes >= 2), got {probs.shape}")
    if not 0 < quantile < 1:
        raise ConfigError(f"expected 0 < quantile < 1, got {quantile}")
    needed = math.ceil(2 / quantile)
    if len(probs) < needed:
        raise DataError(f"expected at least {needed} benign predictions for the {quantile} quantile, got {len(probs)}")
    if not np.isfinite(probs).all():
        raise DataError("benign probabilities contain NaN or Inf")
    margin = margins(probs)
    threshold = float(np.quantile(margin, quantile))
    rate = float(np.mean(margin < threshold))
    if rate == 0:
        raise DataError(
            f"no benign margin is below the {quantile} quantile ({threshold:.6g}): the margins are tied; "
            "calibrate on more varied inputs"
        )
    return BoundaryCalibration(threshold=threshold, population_rate=rate, quantile=quantile, samples=len(probs))


def calibrate_query(
    streams: Sequence[np.ndarray], *, k: int, dim: int, buffer_size: int, target_fpr: float = 0.001, seed: int
) -> QueryCalibration:
    """The k-NN threshold that flags at most ``target_fpr`` of the benign ``streams``, and the link distance.

    Each stream is one simulated benign client's queries, oldest first, scored exactly as
    :class:`QueryAttackDetector` scores them. The threshold is the ``target_fpr`` quantile (rounded
    down to a stream's value) of each stream's lowest score, so at most that share of streams
    falls below it; with fewer than ``1 / target_fpr`` streams that share is resolved only to
    ``1 / len(streams)``. The link distance is the same quantile of each distinct benign input's
    distance to its nearest distinct benign input.
    """
    if not 0 < target_fpr < 1:
        raise ConfigError(f"expected 0 < target_fpr < 1, got {target_fpr}")
    if not (k >= 1 and buffer_size >= k and dim >= 1):
        raise ConfigError(
            f"expected k >= 1, buffer_size >= k and dim >= 1, got k={k}, buffer_size={buffer_size}, dim={dim}"
        )
    lowest, pool, longest = _stream_minima(streams, k=k, dim=dim, buffer_size=buffer_size, seed=seed)
    threshold = float(np.quantile(lowest, target_fpr, method="lower"))
    if not math.isfinite(threshold):
        raise DataError(f"too few benign streams with more than k={k} distinct queries to calibrate on")
    if len(lowest) < 1 / target_fpr:
        log.warning("%d benign streams resolve a false-positive rate only to %.2g", len(lowest), 1 / len(lowest))
    nearest = nearest_distinct(pool, dim=dim, seed=seed)
    link_distance = float(np.quantile(nearest, target_fpr, method="lower"))
    return QueryCalibration(
        threshold=threshold,
        measured_fpr=float(np.mean(lowest < threshold)),
        target_fpr=target_fpr,
        link_distance=link_distance,
        link_rate=float(np.mean(nearest < link_distance)),
        k=k,
        dim=dim,
        buffer_size=buffer_size,
        seed=seed,
        streams=len(lowest),
        stream_length=longest,
    )


def nearest_distinct(x: np.ndarray, *, dim: int, seed: int) -> np.ndarray:
    """Each input's embedding distance to its nearest other input (``x`` holds no exact duplicates)."""
    if len(x) < 2:
        raise DataError(f"expected at least 2 distinct benign inputs, got {len(x)}")
    emb = embed(x, dim=dim, seed=seed)
    sq = np.einsum("ij,ij->i", emb, emb)
    nearest = np.empty(len(emb))
    for start in range(0, len(emb), CHUNK):
        dist = pairwise_distances(emb[start : start + CHUNK], emb, sq)
        dist[np.arange(len(dist)), start + np.arange(len(dist))] = np.inf
        nearest[start : start + CHUNK] = dist.min(axis=1)
    return nearest


def _stream_minima(
    streams: Sequence[np.ndarray], *, k: int, dim: int, buffer_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Each stream's lowest score (inf if never scored), the distinct inputs of all streams, the longest stream."""
    lowest: list[float] = []
    pool: dict[bytes, np.ndarray] = {}
    longest = 0
    for stream in streams:
        stream = np.asarray(stream, dtype=np.float32)
        if stream.ndim < 2 or len(stream) == 0:
            raise DataError(f"expected each benign stream of shape (n >= 1, *input_shape), got {stream.shape}")
        digests = [input_digest(row) for row in stream]
        scores = stream_scores(stream, k=k, dim=dim, buffer_size=buffer_size, seed=seed, digests=digests)
        lowest.append(float(np.nanmin(scores)) if np.isfinite(scores).any() else math.inf)
        longest = max(longest, len(stream))
        if len(pool) < MAX_LINK_POOL:
            pool.update(zip(digests, stream, strict=True))
    if not lowest:
        raise DataError("expected at least one benign stream, got none")
    return np.array(lowest), np.stack(list(pool.values())[:MAX_LINK_POOL]), longest


class _Streams(Sequence[np.ndarray]):
    """Benign streams as index arrays into ``x``, made into inputs only when read (memory stays small)."""

    def __init__(self, x: np.ndarray, indices: list[np.ndarray]) -> None:
        self.x = x
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[np.ndarray]: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | Sequence[np.ndarray]:
        if isinstance(i, slice):
            return _Streams(self.x, self.indices[i])
        return np.asarray(self.x[self.indices[i]])

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.x[idx] for idx in self.indices)


def benign_streams(
    x: np.ndarray, *, clients: int, length: int, repeat_rate: float = 0.05, seed: int
) -> Sequence[np.ndarray]:
    """``clients`` simulated benign streams of ``length`` inputs of ``x`` drawn at random, with some re-sent.

    Each query is, with probability ``repeat_rate``, an exact repeat of one of the client's earlier
    queries, else an input of ``x`` drawn uniformly (a client may also draw the same one twice).
    """
    if not (clients >= 1 and length >= 1 and 0 <= repeat_rate < 1 and len(x) >= 1):
        raise ConfigError(
            f"expected clients >= 1, length >= 1, 0 <= repeat_rate < 1 and some inputs, got clients={clients}, "
            f"length={length}, repeat_rate={repeat_rate}, {len(x)} inputs"
        )
    gen = np.random.default_rng(seed)
    indices = [_one_stream(gen, len(x), length, repeat_rate) for _ in range(clients)]
    return _Streams(np.asarray(x, dtype=np.float32), indices)


def _one_stream(gen: np.random.Generator, n: int, length: int, repeat_rate: float) -> np.ndarray:
    """Indices of one benign client's queries."""
    idx = gen.integers(0, n, size=length)
    repeat = gen.random(length) < repeat_rate
    for i in np.flatnonzero(repeat[1:]) + 1:
        idx[i] = idx[gen.integers(0, i)]
    return idx
