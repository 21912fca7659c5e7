"""Moving-window rate limits per API key and across all keys, in memory or shared through Redis.

Built on the ``limits`` library's moving-window strategy: each window keeps the timestamps of
the hits it admitted, and a hit is admitted only when fewer than ``amount`` of them fall within
the last ``period``. On Redis the check-and-record of one window is a single Lua script, so it is
atomic across every process sharing that Redis.

The key passed to :meth:`RateLimiter.hit` must be an identity the gateway established itself,
the authenticated API key id (or, without authentication, the peer address); never a value read
from a client-supplied header, or a client could pick a fresh key for every request.

Clock: the storage timestamps hits with ``time.time()`` (on Redis, the calling process's clock, so
processes sharing a Redis need synchronised clocks). ``clock`` must read that same clock; it is a
parameter so that tests can move time for the memory storage and the limiter together.
"""

from __future__ import annotations

import logging
import math
import re
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from limits import RateLimitItem
from limits.errors import ConfigurationError, StorageError
from limits.storage import MemoryStorage, MovingWindowSupport, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from limits.util import parse_many

from bastion.errors import BastionError, ConfigError, RequestRejectedError
from bastion.urls import mask_url

__all__ = ["LimitDecision", "RateLimiter", "mask_url"]

logger = logging.getLogger(__name__)

_EXPECTED_LIMIT = 'expected a limit such as "10/second", "2000 per day" or "5/minute; 100/hour"'
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Storages whose moving window is atomic and which accept a key prefix (so reset() stays in our namespace).
_REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster"})
_SCHEMES = _REDIS_SCHEMES | {"memory"}


@dataclass(frozen=True)
class LimitDecision:
    """The outcome of one hit: admitted or not, and when to retry."""

    allowed: bool
    retry_after: float  # seconds until the refusing window frees a slot; 0 when allowed
    limit: str | None  # the window that refused, e.g. "10 per 1 second"; None when allowed
    remaining: int  # hits left in the tightest window after this one

    @property
    def retry_after_seconds(self) -> int:
        """``retry_after`` rounded up to whole seconds for a ``Retry-After`` header (at least 1 when refused)."""
        return 0 if self.allowed else max(1, math.ceil(self.retry_after))

    def rejection(self) -> RequestRejectedError:
        """A 429 ``rate_limited`` rejection carrying the ``Retry-After`` header."""
        detail = f"rate limit {self.limit} reached; retry in {self.retry_after_seconds} s"
        return RequestRejectedError(
            "rate_limited", detail, status=429, headers={"Retry-After": str(self.retry_after_seconds)}
        )


@dataclass(frozen=True)
class _Window:
    """One limit applied to one storage key."""

    item: RateLimitItem
    identifiers: tuple[str, ...]


class RateLimiter:
    """Per-key and global moving windows; a hit is admitted only when every window has room.

    Example::

        limiter = RateLimiter(per_key=("10/second", "2000/day"), storage_url="redis://127.0.0.1:6379/0")
        decision = limiter.hit(api_key_id)
        if not decision.allowed:
            raise decision.rejection()
    """

    def __init__(
        self,
        *,
        per_key: Sequence[str] = ("10/second", "2000/day"),
        global_: Sequence[str] = (),
        storage_url: str = "memory://",
        namespace: str = "bastion",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_key = _parse_limits(per_key, "per_key")
        self.global_ = _parse_limits(global_, "global_")
        if not self.per_key and not self.global_:
            raise ConfigError(f"expected at least one rate limit in per_key or global_; {_EXPECTED_LIMIT}")
        if not _NAMESPACE.match(namespace):
            raise ConfigError(f"expected a namespace of 1-64 letters, digits, '_', '.' or '-', got {namespace!r}")
        self.namespace = namespace
        self.storage_url = storage_url
        self.clock = clock
        self._storage = _open_storage(storage_url, namespace)
        self._strategy = MovingWindowRateLimiter(self._storage)

    def hit(self, key: str) -> LimitDecision:
        """Consume one unit from each of ``key``'s windows and the global ones, or refuse when any is full.

        Raises :class:`BastionError` (HTTP 500) naming the storage when it fails: the gateway then
        refuses the request rather than serve it unlimited.
        """
        windows = self._windows(key)
        try:
            return self._hit(windows)
        except self._storage_errors() as error:
            raise self._failure(error) from error

    def reset(self) -> None:
        """Forget every hit in this limiter's namespace (for tests); other namespaces are untouched."""
        try:
            self._storage.reset()
        except self._storage_errors() as error:
            raise self._failure(error) from error

    def check_storage(self) -> None:
        """Raise :class:`ConfigError` naming the storage URL (password masked) when it cannot be reached."""
        if not self._storage.check():
            raise ConfigError(f"rate-limit storage {mask_url(self.storage_url)} cannot be reached")

    def _storage_errors(self) -> tuple[type[Exception], ...]:
        """What the storage raises when it fails (its client's errors are not all wrapped in StorageError)."""
        if isinstance(self._storage, MemoryStorage):
            return (StorageError,)
        client_errors = self._storage.base_exceptions
        return (StorageError, *(client_errors if isinstance(client_errors, tuple) else (client_errors,)))

    def _failure(self, error: Exception) -> BastionError:
        logger.error("rate-limit storage %s failed: %r", mask_url(self.storage_url), error)
        return BastionError(f"rate-limit storage {mask_url(self.storage_url)} failed: {type(error).__name__}")

    def _windows(self, key: str) -> list[_Window]:
        # Quoting keeps a key containing "/" from colliding with another key's window.
        quoted = urllib.parse.quote(key.encode("utf-8", "surrogatepass"), safe="")
        per_key = [_Window(item, (self.namespace, "key", quoted)) for item in self.per_key]
        return per_key + [_Window(item, (self.namespace, "global")) for item in self.global_]

    def _hit(self, windows: list[_Window]) -> LimitDecision:
        # Test every window before hitting any, so that a full global window does not also use up
        # the key's own windows (and the other way round).
        stats = [self._strategy.get_window_stats(w.item, *w.identifiers) for w in windows]
        full = [(w, s.reset_time) for w, s in zip(windows, stats, strict=True) if s.remaining < 1]
        if full:
            return self._refusal(full)
        # Another process may fill a window between the test and the hit, so each hit re-verifies:
        # acquiring an entry is one atomic check-and-record (a Lua script on Redis), which refuses
        # when the window is full. No window can therefore admit more than its limit. A hit that
        # loses such a race keeps the entries it already acquired in earlier windows (the storage
        # cannot take one back), which costs a rare extra refusal later, never an extra admission.
        for window in windows:
            if not self._strategy.hit(window.item, *window.identifiers):
                now = self._strategy.get_window_stats(window.item, *window.identifiers)
                reset = now.reset_time if now.remaining < 1 else self.clock()  # freed again since: retry at once
                logger.debug("rate limit %s filled between test and hit", window.item)
                return self._refusal([(window, reset)])
        return LimitDecision(allowed=True, retry_after=0.0, limit=None, remaining=min(s.remaining for s in stats) - 1)

    def _refusal(self, full: list[tuple[_Window, float]]) -> LimitDecision:
        """Refuse, naming the window that frees a slot last: until then, some window stays full."""
        window, reset = max(full, key=lambda pair: pair[1])
        retry_after = max(0.0, reset - self.clock())
        return LimitDecision(allowed=False, retry_after=retry_after, limit=str(window.item), remaining=0)


def _without_password(text: str, url: str) -> str:
    """``text`` with the password of ``url`` masked wherever it appears (errors may quote the URL)."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return "the URL could not be parsed"
    return text.replace(password, "***") if password else text


def _parse_limits(specs: Sequence[str] | str, name: str) -> list[RateLimitItem]:
    """Every limit in ``specs``; one string may hold several, separated by ";", "," or "|"."""
    if isinstance(specs, str):
        specs = (specs,)
    items: list[RateLimitItem] = []
    for spec in specs:
        try:
            parsed = parse_many(spec) if isinstance(spec, str) else None
        except ValueError:
            parsed = None
        if not parsed or any(item.amount < 1 for item in parsed):
            raise ConfigError(f"invalid rate limit {spec!r} in {name}; {_EXPECTED_LIMIT}")
        items.extend(parsed)
    return items


def _open_storage(url: str, namespace: str) -> Storage:
    scheme = urllib.parse.urlsplit(url).scheme if isinstance(url, str) else ""
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"unsupported rate-limit storage {mask_url(str(url))}; expected memory:// or redis://host:port/db"
        )
    options: dict[str, float | str | bool] = {"wrap_exceptions": True}
    if scheme in _REDIS_SCHEMES:
        options["key_prefix"] = f"LIMITS:{namespace}"
    try:
        storage = storage_from_string(url, **options)
    except (ConfigurationError, ValueError) as error:
        reason = _without_password(str(error), url)
        raise ConfigError(f"invalid rate-limit storage {mask_url(url)}: {reason}") from None
    if not isinstance(storage, Storage) or not isinstance(storage, MovingWindowSupport):
        raise ConfigError(f"rate-limit storage {mask_url(url)} has no moving-window support")
    return storage
