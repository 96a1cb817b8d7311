"""Fee and notional arithmetic: the one rounding rule (README §4), overflow-safe in int64.

``fee_ceil(x, bps) = ceil(x * bps / 10000)`` for ``x >= 0`` and ``0 <= bps <= 10000``, rounded up in
the venue's favour. It is computed as ``(x // 10000) * bps + ceil((x % 10000) * bps / 10000)`` so
``x * bps`` never has to fit in int64 (x may be near 2**62). ``fee_step`` is the fee of one fill under
the cumulative rule; ``quote_spend_cap`` is the largest cumulative notional a quote budget can buy
with its taker fee. These are numba kernels and plain callables at once (tests call them from
Python; ``engine.reference`` uses the same functions).
"""

from __future__ import annotations

from engine._numba import kernel

BPS = 10_000


@kernel
def fee_ceil(x: int, bps: int) -> int:
    q = x // 10000
    r = x - q * 10000
    return q * bps + (r * bps + 9999) // 10000


@kernel
def fee_step(cum_before: int, n: int, bps: int) -> int:
    """Fee of a fill of notional ``n`` for an order (role) whose cumulative notional was ``cum_before``."""
    return fee_ceil(cum_before + n, bps) - fee_ceil(cum_before, bps)


@kernel
def quote_spend_cap(budget: int, bps: int) -> int:
    """Largest X with ``X + fee_ceil(X, bps) <= budget``: ``budget - ceil(budget*bps/(10000+bps))``."""
    d = 10000 + bps
    q = budget // d
    r = budget - q * d
    return budget - (q * bps + (r * bps + d - 1) // d)


@kernel
def bps_floor(x: int, bps: int) -> int:
    """``floor(x * bps / 10000)`` for ``x >= 0`` without forming ``x * bps`` (the price band)."""
    q = x // 10000
    r = x - q * 10000
    return q * bps + (r * bps) // 10000
