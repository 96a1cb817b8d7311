"""The state-hash terms of README §7 in plain Python (the reference engine's copy of
``engine/_hash.py``; a unit test checks they agree word for word)."""

from __future__ import annotations

M64 = 0xFFFFFFFFFFFFFFFF
PRIME = 0x9E3779B97F4A7C15
TAG_BAL, TAG_ORD, TAG_MODE, TAG_GLOBAL = 0xB1, 0x0D, 0x3D, 0x61


def fmix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def term(tag: int, *words: int) -> int:
    h = tag
    for w in words:
        h = ((h ^ (w & M64)) * PRIME) & M64
    return fmix(h)


def cid_words(cid: bytes) -> tuple[int, int, int, int]:
    b = bytes(cid) + bytes(32 - len(cid))
    return tuple(int.from_bytes(b[8 * k:8 * k + 8], "little", signed=True) for k in range(4))  # type: ignore[return-value]


def balance_term(account: int, asset: int, available: int, locked: int) -> int:
    return term(TAG_BAL, account, asset, available, locked)


def order_term(oid: int, account: int, symbol: int, side: int, price: int, qty: int, leaves: int,
               locked: int, cum: int, stp: int, flags: int, tif: int, otype: int, ts: int,
               cid: bytes) -> int:
    return term(TAG_ORD, oid, account, symbol, side, price, qty, stp, flags, tif, otype, ts,
                *cid_words(cid), leaves, locked, cum)


def mode_term(symbol: int, mode: int, lag: int) -> int:
    return term(TAG_MODE, symbol, mode, lag)


def global_term(global_mode: int, global_lag: int, wd_halt: int, next_trade: int) -> int:
    return term(TAG_GLOBAL, global_mode, global_lag, wd_halt, next_trade)
