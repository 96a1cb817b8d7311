"""Token-bucket rate limits: per API key (orders/s, request weight/min) and per WS connection.

Arithmetic. Integers only, on a monotonic ns clock. A bucket of capacity ``cap`` tokens refills
``cap`` tokens per ``period_ns`` (so a full bucket is one period's allowance, also the burst). The
level is kept in units of ``token * period_ns / g`` (``g = gcd(cap, period_ns)``): each elapsed ns
adds ``cap / g`` units, a cost of ``c`` tokens removes ``c * period_ns / g``. No division on the
take path; ``Retry-After`` is the exact ceiling of the time until the level covers the cost. (The
``g`` keeps the numbers machine-sized: a weight of 10^9 a minute in units of ``token * period_ns``
tops out at 6e19, a big int in every take; with ``g`` at 6e10.)

Per key (``KeyLimiter``): every signed request costs its route's weight in the weight bucket
(``weight_per_minute``); order-entry requests (place, cancel, cancel-all) also cost 1 in the order
bucket (``orders_per_second``). A refused request consumes nothing from the bucket that refused it.
Response headers: ``X-RateLimit-Limit`` = weight per minute, ``X-RateLimit-Remaining`` = weight
left; on refusal ``Retry-After`` = whole seconds (>= 1). WebSocket requests after logon charge the
same buckets as REST for the key.

Per connection (``TokenBucket`` in the WS listener): ``ws_messages_per_second`` frames of any kind,
before or after logon, so a flood of garbage cannot cost more than a bounded amount of parsing.

Memory. One ``KeyLimits`` per API key that has made a request (keys are operator-issued and few);
idle entries are dropped by ``sweep``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from edge.errors import ApiError

NS: Final = 1_000_000_000


class TokenBucket:
    __slots__ = ("cap", "period_ns", "level", "t_ns", "_max", "_add", "_unit")

    def __init__(self, cap: int, period_ns: int, now_ns: int) -> None:
        if cap < 1 or period_ns < 1:
            raise ValueError("token bucket needs cap >= 1 and period_ns >= 1")
        self.cap = cap
        self.period_ns = period_ns
        g = math.gcd(cap, period_ns)
        self._add = cap // g  # units an elapsed ns adds
        self._unit = period_ns // g  # units a token costs
        self._max = cap * self._unit
        self.level = self._max
        self.t_ns = now_ns

    def _refill(self, now_ns: int) -> None:
        dt = now_ns - self.t_ns
        if dt > 0:
            lvl = self.level + dt * self._add
            self.level = lvl if lvl < self._max else self._max
            self.t_ns = now_ns

    def take(self, cost: int, now_ns: int) -> int:
        """Take ``cost`` tokens; 0 if taken, else the ns to wait until they would be there."""
        self._refill(now_ns)
        need = cost * self._unit
        if self.level >= need:
            self.level -= need
            return 0
        if need > self._max:
            return -(-(need - self._max) // self._add) + self.period_ns  # never fits: a period+
        return -(-(need - self.level) // self._add)

    def left(self) -> int:
        """Whole tokens in the bucket as of its last refill."""
        return self.level // self._unit

    def remaining(self, now_ns: int) -> int:
        self._refill(now_ns)
        return self.left()


def retry_after_s(wait_ns: int) -> int:
    return max(1, -(-wait_ns // NS))


class KeyLimits:
    __slots__ = ("weight", "orders", "last_ns")

    def __init__(self, weight: TokenBucket, orders: TokenBucket, last_ns: int) -> None:
        self.weight = weight
        self.orders = orders
        self.last_ns = last_ns


class Quota:
    """What the response headers say after an accepted request. A plain class, not a dataclass:
    one is built per request, and compiled (``pipeline.native``) that costs a fraction."""

    __slots__ = ("limit", "remaining")

    def __init__(self, limit: int, remaining: int) -> None:
        self.limit = limit
        self.remaining = remaining

    def headers(self) -> list[tuple[str, str]]:
        return [("X-RateLimit-Limit", str(self.limit)),
                ("X-RateLimit-Remaining", str(self.remaining))]


@dataclass
class LimitStats:
    drops: dict[str, int] = field(default_factory=dict)  # by reason: weight | orders | ws_messages
    drops_by_key: dict[str, int] = field(default_factory=dict)


class KeyLimiter:
    def __init__(self, orders_per_second: int, weight_per_minute: int,
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 on_drop: Callable[[str, str], None] | None = None) -> None:
        self.orders_per_second = orders_per_second
        self.weight_per_minute = weight_per_minute
        self.clock_ns = clock_ns
        self.on_drop = on_drop
        self._keys: dict[str, KeyLimits] = {}
        self.stats = LimitStats()

    def _limits(self, key_id: str, now: int) -> KeyLimits:
        lim = self._keys.get(key_id)
        if lim is None:
            lim = KeyLimits(TokenBucket(self.weight_per_minute, 60 * NS, now),
                            TokenBucket(self.orders_per_second, NS, now), now)
            self._keys[key_id] = lim
        lim.last_ns = now
        return lim

    def drop(self, key_id: str, reason: str) -> None:
        self.stats.drops[reason] = self.stats.drops.get(reason, 0) + 1
        self.stats.drops_by_key[key_id] = self.stats.drops_by_key.get(key_id, 0) + 1
        if self.on_drop is not None:
            self.on_drop(key_id, reason)

    def charge(self, key_id: str, weight: int, order: bool) -> Quota:
        """Charge a request; raises ApiError RATE_LIMITED (fields: retry_after_s, quota)."""
        lim = self.admit(key_id, weight, order)
        return Quota(self.weight_per_minute, lim.weight.left())

    def admit(self, key_id: str, weight: int, order: bool) -> KeyLimits:
        """``charge`` without the Quota (the WS path sends no headers: building it divided two
        big ints per order)."""
        now = self.clock_ns()
        lim = self._limits(key_id, now)
        wait = lim.weight.take(weight, now)
        if wait:
            self.drop(key_id, "weight")
            q = Quota(self.weight_per_minute, lim.weight.remaining(now))
            raise ApiError("RATE_LIMITED",
                           f"request weight limit {self.weight_per_minute}/min exceeded",
                           retry_after_s=retry_after_s(wait), quota=q)
        if order:
            wait = lim.orders.take(1, now)
            if wait:
                self.drop(key_id, "orders")
                q = Quota(self.weight_per_minute, lim.weight.remaining(now))
                raise ApiError("RATE_LIMITED",
                               f"order rate limit {self.orders_per_second}/s exceeded",
                               retry_after_s=retry_after_s(wait), quota=q)
        return lim

    def peek(self, key_id: str) -> Quota:
        """The key's weight quota without charging (or creating an entry for an unknown id)."""
        lim = self._keys.get(key_id)
        if lim is None:
            return Quota(self.weight_per_minute, self.weight_per_minute)
        return Quota(self.weight_per_minute, lim.weight.remaining(self.clock_ns()))

    def sweep(self, idle_ns: int = 120 * NS) -> int:
        """Forget keys idle for ``idle_ns`` (their buckets would be full again anyway)."""
        now = self.clock_ns()
        stale = [k for k, v in self._keys.items() if now - v.last_ns > idle_ns]
        for k in stale:
            del self._keys[k]
        return len(stale)

    def __len__(self) -> int:
        return len(self._keys)
