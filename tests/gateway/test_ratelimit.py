"""Rate limits: moving windows per key and global, Retry-After, configuration errors, and Redis shared by processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import limits.storage.memory
import pytest
import redis

from bastion.errors import BastionError, ConfigError
from bastion.gateway.ratelimit import LimitDecision, RateLimiter, mask_url


class FakeTime:
    """A clock that moves only when told; stands in for the ``time`` module inside limits' memory storage."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """Time for the memory storage and the limiter together (the storage reads ``time.time()`` itself)."""
    fake = FakeTime()
    monkeypatch.setattr(limits.storage.memory, "time", fake)
    return fake


def memory_limiter(clock: FakeTime, **options: object) -> RateLimiter:
    return RateLimiter(storage_url="memory://", clock=clock.time, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Memory storage
# ---------------------------------------------------------------------------------------------


def test_a_key_is_admitted_up_to_its_limit_then_told_when_to_retry(clock: FakeTime) -> None:
    limiter = memory_limiter(clock, per_key=["3/minute"])
    admitted = []
    for _ in range(3):
        admitted.append(limiter.hit("key-1"))
        clock.advance(10)
    assert [d.allowed for d in admitted] == [True, True, True]
    assert [d.remaining for d in admitted] == [2, 1, 0]
    assert all(d.retry_after == 0 and d.limit is None for d in admitted)
    refused = limiter.hit("key-1")  # 30 s after the first hit, which frees its slot at 60 s
    assert refused == LimitDecision(allowed=False, retry_after=30.0, limit="3 per 1 minute", remaining=0)
    clock.advance(30.5)
    assert limiter.hit("key-1").allowed


def test_distinct_keys_have_their_own_windows(clock: FakeTime) -> None:
    limiter = memory_limiter(clock, per_key=["2/minute"])
    assert [limiter.hit("a").allowed for _ in range(3)] == [True, True, False]
    assert [limiter.hit("b").allowed for _ in range(3)] == [True, True, False]


def test_keys_are_quoted_so_they_cannot_collide(clock: FakeTime) -> None:
    limiter = memory_limiter(clock, per_key=["1/minute"])
    for key in ["x", "x/1", "x/1/1", "x%2F1", "\udcff", ""]:
        assert limiter.hit(key).allowed, key


def test_a_global_window_counts_every_key(clock: FakeTime) -> None:
    limiter = memory_limiter(clock, per_key=["10/minute"], global_=["5/minute"])
    outcomes = [limiter.hit(f"key-{i % 3}") for i in range(6)]
    assert [d.allowed for d in outcomes] == [True] * 5 + [False]
    assert outcomes[-1].limit == "5 per 1 minute"
    assert outcomes[-1].retry_after == 60.0


def test_a_refused_hit_consumes_no_window(clock: FakeTime) -> None:
    # The global window is tested before the key's is hit: refusals while the global window is
    # full leave the key's own hourly budget untouched.
    limiter = memory_limiter(clock, per_key=["3/hour"], global_=["2/minute"])
    assert [limiter.hit("a").allowed for _ in range(2)] == [True, True]
    assert not any(limiter.hit("a").allowed for _ in range(5))
    clock.advance(61)
    assert limiter.hit("a").allowed  # the 3rd of 3 per hour
    refused = limiter.hit("a")
    assert not refused.allowed and refused.limit == "3 per 1 hour"


def test_the_refusal_names_the_window_that_frees_last(clock: FakeTime) -> None:
    limiter = memory_limiter(clock, per_key=["1/second", "2/minute"])
    assert limiter.hit("a").allowed
    clock.advance(0.5)
    assert limiter.hit("a") == LimitDecision(allowed=False, retry_after=0.5, limit="1 per 1 second", remaining=0)
    clock.advance(1.0)
    assert limiter.hit("a").allowed
    clock.advance(0.1)
    both_full = limiter.hit("a")  # 1/second frees in 0.9 s, 2/minute only in 58.4 s
    assert both_full.limit == "2 per 1 minute"
    assert both_full.retry_after == pytest.approx(58.4)
    assert both_full.retry_after_seconds == 59


def test_one_string_may_hold_several_limits(clock: FakeTime) -> None:
    limiter = memory_limiter(clock, per_key="2/second; 3 per minute")
    outcomes = []
    for _ in range(4):
        outcomes.append(limiter.hit("a"))
        clock.advance(0.6)
    assert [d.allowed for d in outcomes] == [True, True, True, False]
    assert outcomes[-1].limit == "3 per 1 minute"


def test_reset_forgets_every_hit(clock: FakeTime) -> None:
    limiter = memory_limiter(clock, per_key=["1/day"])
    assert limiter.hit("a").allowed and not limiter.hit("a").allowed
    limiter.reset()
    assert limiter.hit("a").allowed


def test_a_decision_rounds_retry_after_up_for_the_header() -> None:
    refused = LimitDecision(allowed=False, retry_after=0.2, limit="10 per 1 second", remaining=0)
    assert refused.retry_after_seconds == 1
    assert LimitDecision(allowed=False, retry_after=2.0001, limit="x", remaining=0).retry_after_seconds == 3
    assert LimitDecision(allowed=True, retry_after=0.0, limit=None, remaining=4).retry_after_seconds == 0
    rejection = refused.rejection()
    assert (rejection.code, rejection.status) == ("rate_limited", 429)
    assert rejection.headers == {"Retry-After": "1"}
    assert "10 per 1 second" in rejection.detail


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["ten per second", "10/fortnight", "", "0/second", "10 per", "5/minute;;"])
def test_an_invalid_limit_names_the_string_and_the_expected_form(spec: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid rate limit {spec!r} in per_key; expected a limit such as"):
        RateLimiter(per_key=[spec])


def test_a_limit_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"invalid rate limit 10 in global_"):
        RateLimiter(global_=[10])  # type: ignore[list-item]


def test_at_least_one_limit_is_required() -> None:
    with pytest.raises(ConfigError, match="at least one rate limit"):
        RateLimiter(per_key=[], global_=[])


@pytest.mark.parametrize("namespace", ["", "has space", "a*", "x" * 65])
def test_a_namespace_is_a_plain_name(namespace: str) -> None:
    with pytest.raises(ConfigError, match="namespace"):
        RateLimiter(namespace=namespace)


@pytest.mark.parametrize(
    "url",
    [
        "memcached://user:hunter2@127.0.0.1:11211",
        "mongodb://user:hunter2@127.0.0.1",
        "not a url",
        "redis://:hunter2@h:x",
    ],
)
def test_an_unusable_storage_url_is_refused_with_its_password_masked(url: str) -> None:
    with pytest.raises(ConfigError, match="rate-limit storage") as info:
        RateLimiter(storage_url=url)
    assert "hunter2" not in str(info.value)


def test_an_unreachable_redis_is_named_with_its_password_masked() -> None:
    limiter = RateLimiter(storage_url="redis://:hunter2@127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(ConfigError, match=r"redis://:\*\*\*@127.0.0.1:1/0 cannot be reached") as unreachable:
        limiter.check_storage()
    with pytest.raises(BastionError, match=r"redis://:\*\*\*@127.0.0.1:1/0 failed") as failed:
        limiter.hit("a")
    assert "hunter2" not in str(unreachable.value) + str(failed.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host/1", "redis://user:***@host/1"),
        ("redis://host:6379", "redis://host:6379"),
        ("memory://", "memory://"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


# ---------------------------------------------------------------------------------------------
# Redis: one window shared by threads and by processes
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A namespace of this test's own; its keys are removed afterwards, through ``reset``."""
    name = f"bastion-test-{uuid.uuid4().hex[:12]}"
    yield name
    RateLimiter(per_key=["1/second"], storage_url=redis_url, namespace=name).reset()
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"*{name}*"))


def test_redis_storage_is_reachable_and_refuses_with_retry_after(redis_url: str, namespace: str) -> None:
    limiter = RateLimiter(per_key=["2/minute"], storage_url=redis_url, namespace=namespace)
    limiter.check_storage()
    outcomes = [limiter.hit("a") for _ in range(3)]
    assert [d.allowed for d in outcomes] == [True, True, False]
    assert 0 < outcomes[-1].retry_after <= 60 and outcomes[-1].limit == "2 per 1 minute"


def test_reset_clears_only_its_own_namespace(redis_url: str, namespace: str) -> None:
    other = f"{namespace}-other"
    mine = RateLimiter(per_key=["1/minute"], storage_url=redis_url, namespace=namespace)
    theirs = RateLimiter(per_key=["1/minute"], storage_url=redis_url, namespace=other)
    try:
        assert mine.hit("a").allowed and theirs.hit("a").allowed
        mine.reset()
        assert mine.hit("a").allowed
        assert not theirs.hit("a").allowed
    finally:
        theirs.reset()


def test_threads_never_exceed_the_global_window(redis_url: str, namespace: str) -> None:
    limiter = RateLimiter(per_key=["50/minute"], global_=["30/minute"], storage_url=redis_url, namespace=namespace)
    admitted = [0] * 4
    start = threading.Barrier(4)

    def hammer(index: int) -> None:
        start.wait()
        admitted[index] = sum(limiter.hit(f"key-{index}").allowed for _ in range(40))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 30
    assert limiter.hit("key-0").limit == "30 per 1 minute"


# Each child builds its own limiter on the shared Redis, reports ready, waits for the start signal
# (so that both hammer the key at the same time), and prints how many hits it was admitted.
CHILD = """
import sys
import redis
from bastion.gateway.ratelimit import RateLimiter

url, namespace, hits, ready, go = sys.argv[1:6]
limiter = RateLimiter(per_key=["50/minute"], storage_url=url, namespace=namespace)
client = redis.Redis.from_url(url)
client.rpush(ready, 1)
if client.blpop([go], timeout=300) is None:
    sys.exit("no start signal")
admitted = sum(limiter.hit("shared-key").allowed for _ in range(int(hits)))
sys.stdout.write(f"{admitted}\\n")
"""


def test_two_processes_sharing_redis_never_admit_more_than_the_limit(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    ready, go = f"{namespace}:ready", f"{namespace}:go"
    command = [sys.executable, "-c", CHILD, redis_url, namespace, "100", ready, go]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        wait_until_ready(client, ready, children)
        client.rpush(go, *["go"] * len(children))
        outputs = [child.communicate(timeout=300) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        client.delete(ready, go)
    assert [child.returncode for child in children] == [0, 0], [err[-2000:] for _, err in outputs]
    assert sum(int(out) for out, _ in outputs) == 50


def wait_until_ready(client: redis.Redis, ready: str, children: list[subprocess.Popen[str]]) -> None:
    """Block until every child has reported ready; fail with its stderr if one exits first."""
    waiting = len(children)
    for _ in range(300):  # at most 300 one-second waits: a hang guard, not a timing assertion
        if client.blpop([ready], timeout=1) is not None:
            waiting -= 1
            if waiting == 0:
                return
        for child in children:
            if child.poll() is not None:
                pytest.fail(f"a child exited early with {child.returncode}: {child.communicate()[1][-2000:]}")
    pytest.fail("the children never reported ready")
