"""The 24 h ticker equals a brute-force computation over the trades of its minute window."""

from __future__ import annotations

import numpy as np

from pipeline.publisher.ticker import MINUTE_MS, WINDOW_MINUTES, Ticker

T0 = 1_700_000_000_000


def brute(trades: list[tuple[int, int, int, int]], now: int) -> dict[str, int | None]:
    first = now - now % MINUTE_MS - (WINDOW_MINUTES - 1) * MINUTE_MS
    w = [t for t in trades if first <= t[0] <= now]
    px = [t[1] for t in w]
    return {"open": px[0] if px else None, "high": max(px) if px else None,
            "low": min(px) if px else None, "volume": sum(t[2] for t in w),
            "quoteVolume": sum(t[3] for t in w), "trades": len(w)}


def test_rolling_window_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    tk = Ticker()
    trades: list[tuple[int, int, int, int]] = []
    t = T0
    for i in range(4000):
        t += int(rng.integers(0, 90_000))  # ~3 days of trades, gaps of up to 1.5 min
        px, lots = int(rng.integers(1, 1000)), int(rng.integers(1, 50))
        trades.append((t, px, lots, px * lots))
        tk.trade(t, px, lots, px * lots, i + 1)
        if i % 97 == 0:  # the clock reads now >= every trade so far; later trades come after it
            now = t + int(rng.integers(0, 3 * 3_600_000 if i % 3 else 60_000))
            got = tk.window(now)
            want = brute(trades, now)
            assert {k: got[k] for k in want} == want
            assert got["last"] == px
            t = now
    assert tk.window(t + 2 * 86_400_000)["trades"] == 0  # a quiet day empties the window
    assert tk.window(t + 2 * 86_400_000)["last"] == trades[-1][1]  # last survives
