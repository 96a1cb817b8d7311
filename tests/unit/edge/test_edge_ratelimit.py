import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import ApiError
from edge.ratelimit import NS, KeyLimiter, TokenBucket, retry_after_s


class Clock:
    def __init__(self) -> None:
        self.ns = 10 * NS

    def __call__(self) -> int:
        return self.ns


def test_bucket_exact_integer_refill_and_retry_after() -> None:
    b = TokenBucket(10, NS, 0)  # 10 per second
    for _ in range(10):
        assert b.take(1, 0) == 0
    wait = b.take(1, 0)
    assert wait == NS // 10  # one token refills in exactly 100 ms
    assert b.take(1, wait - 1) > 0
    assert b.take(1, wait) == 0
    assert b.remaining(wait) == 0
    assert b.remaining(wait + 10 * NS) == 10  # capped at capacity


def test_bucket_cost_above_capacity_never_fits() -> None:
    b = TokenBucket(5, NS, 0)
    assert b.take(6, 0) > NS


@given(st.lists(st.tuples(st.integers(0, NS // 5), st.integers(1, 3)), max_size=200))
def test_bucket_never_grants_more_than_capacity_plus_refill(steps: list[tuple[int, int]]) -> None:
    cap = 7
    b = TokenBucket(cap, NS, 0)
    now = granted = 0
    for dt, cost in steps:
        now += dt
        if b.take(cost, now) == 0:
            granted += cost
        assert granted <= cap + (now * cap) // NS
        assert 0 <= b.level <= cap * NS


class RefBucket:
    """The bucket in units of token * period_ns, unreduced (what TokenBucket computes in smaller
    numbers): the reference for its arithmetic."""

    def __init__(self, cap: int, period_ns: int, now: int) -> None:
        self.cap, self.period, self.max, self.level, self.t = cap, period_ns, cap * period_ns, \
            cap * period_ns, now

    def take(self, cost: int, now: int) -> int:
        if now > self.t:
            self.level, self.t = min(self.max, self.level + (now - self.t) * self.cap), now
        need = cost * self.period
        if self.level >= need:
            self.level -= need
            return 0
        if need > self.max:
            return -(-(need - self.max) // self.cap) + self.period
        return -(-(need - self.level) // self.cap)


@given(st.integers(1, 10**12), st.integers(1, 10**12),
       st.lists(st.tuples(st.integers(0, 10**11), st.integers(1, 2000)), max_size=60))
def test_bucket_equals_the_unreduced_arithmetic(cap: int, period: int,
                                               steps: list[tuple[int, int]]) -> None:
    b, ref = TokenBucket(cap, period, 0), RefBucket(cap, period, 0)
    now = 0
    for dt, cost in steps:
        now += dt
        assert b.take(cost, now) == ref.take(cost, now)
        assert b.left() == ref.level // period


def test_a_huge_allowance_stays_in_machine_ints() -> None:
    """The bench's "unlimited" weight (10^9 a minute) must not turn every take into big-int math."""
    b, ref = TokenBucket(10**9, 60 * NS, 0), RefBucket(10**9, 60 * NS, 0)
    for t in range(0, 10**6, 997):
        assert b.take(1, t) == 0 == ref.take(1, t)
        assert b.level < 2**62 < ref.level
    assert b.left() == ref.level // (60 * NS) == 10**9 - 1  # just after the last take
    assert b.remaining(10**6 + 51) == 10**9


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_s(1) == 1 and retry_after_s(NS) == 1 and retry_after_s(NS + 1) == 2


def test_key_limiter_orders_and_weight() -> None:
    clock = Clock()
    drops: list[tuple[str, str]] = []
    lim = KeyLimiter(orders_per_second=3, weight_per_minute=10, clock_ns=clock,
                     on_drop=lambda k, r: drops.append((k, r)))
    q = lim.charge("k1", 1, order=True)
    assert (q.limit, q.remaining) == (10, 9)
    assert q.headers() == [("X-RateLimit-Limit", "10"), ("X-RateLimit-Remaining", "9")]
    lim.charge("k1", 1, True)
    lim.charge("k1", 1, True)
    with pytest.raises(ApiError) as ei:
        lim.charge("k1", 1, True)
    assert ei.value.name == "RATE_LIMITED" and ei.value.fields["retry_after_s"] == 1
    assert drops == [("k1", "orders")]
    lim.charge("k2", 1, True)  # other keys are independent
    with pytest.raises(ApiError) as ei:
        lim.charge("k1", 7, False)  # 10 - 4 weight used = 6 left
    assert ei.value.fields["retry_after_s"] == 6  # 1 token per 6 s
    assert lim.stats.drops == {"orders": 1, "weight": 1} and lim.stats.drops_by_key == {"k1": 2}
    assert lim.peek("k1").remaining == 6 and lim.peek("unknown").remaining == 10
    assert len(lim) == 2
    clock.ns += 121 * NS
    assert lim.sweep() == 2 and len(lim) == 0
