"""clientOrderId <-> the 28-byte ``cid`` field of COMMAND / EVENT records (``pipeline.records``).

Format: the length as one 6-bit symbol, then each char as 6 bits, MSB first, left-aligned in 224
bits (37 symbols = 222 bits at most); all-zero means "no clientOrderId". The alphabet
``[A-Za-z0-9_-]`` is base64's with ``_-`` for ``+/``, so the 6-bit packing is base64 itself: one C
call (binascii) instead of a Python loop per char (the loop was ~5 % of an edge's CPU at load).
Compiled with the edge's per-order modules (``pipeline.native``).
"""

from __future__ import annotations

import binascii
from typing import Final, NoReturn

CID_BYTES = 28
CID_MAX_LEN = 36
CID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
# The alphabet is base64's with "_-" for "+/", so the 6-bit packing is base64 itself: one C call
# (binascii) instead of a Python loop per char (the loop was ~5 % of an edge's CPU at load).
_TO_B64 = bytes.maketrans(b"_-", b"+/")
_FROM_B64 = bytes.maketrans(b"+/", b"_-")
_ALPHABET_BYTES = CID_ALPHABET.encode()
# Base64 text of a cid of n chars: its length symbol, the chars, then "A" (symbol 0: zero bits,
# exactly what the left alignment needs) up to a multiple of 4 symbols.
_HEAD = tuple(CID_ALPHABET[n].encode() for n in range(CID_MAX_LEN + 1))
_TAIL = tuple(b"A" * (-(n + 1) % 4) for n in range(CID_MAX_LEN + 1))
_NO_CID = bytes(CID_BYTES)


# Both directions of the last few thousand cids packed here: an edge unpacks the cid of its own
# orders' ACCEPTED events moments after packing it, and a cancel by clientOrderId packs a cid the
# place packed (0.35 and 0.4 us each, a dict hit ~0.04 us). Exact (pure functions); cleared when full.
CACHE_MAX: Final = 8192


class _Cache:
    def __init__(self) -> None:
        self.packed: dict[str, bytes] = {}
        self.unpacked: dict[bytes, str] = {}


CACHE: Final = _Cache()  # Final: a C static once compiled, not a module-dict lookup per use


def cid_pack(cid: str) -> bytes:
    """Pack ``cid`` into ``CID_BYTES`` bytes (length symbol, then 6-bit chars). Raises ValueError."""
    c = CACHE
    if type(cid) is str:
        raw = c.packed.get(cid)
        if raw is not None:
            return raw
    raw = _pack(cid)
    if len(c.packed) >= CACHE_MAX:
        c.packed.clear()
        c.unpacked.clear()
    c.packed[cid] = raw
    c.unpacked[raw] = cid
    return raw


def _pack(cid: str) -> bytes:
    if type(cid) is not str or not cid.isascii() or not 1 <= len(cid) <= CID_MAX_LEN:
        _refuse(cid)
    b = cid.encode()
    if b.translate(None, _ALPHABET_BYTES):  # a byte outside the alphabet survives the deletion
        _refuse(cid)
    n = len(b)
    raw = binascii.a2b_base64(_HEAD[n] + b.translate(_TO_B64) + _TAIL[n])
    return raw[:CID_BYTES] if len(raw) >= CID_BYTES else raw.ljust(CID_BYTES, b"\0")


def _refuse(cid: object) -> NoReturn:
    if type(cid) is not str:
        raise ValueError(f"clientOrderId must be a string, got {type(cid).__name__}")
    n = len(cid)
    if not 1 <= n <= CID_MAX_LEN:
        raise ValueError(f"clientOrderId must be 1..{CID_MAX_LEN} chars, got {n}")
    bad = next(ch for ch in cid if ch not in CID_ALPHABET)
    raise ValueError(f"clientOrderId has a character outside [A-Za-z0-9_-]: {bad!r}")


def cid_unpack(raw: bytes) -> str | None:
    """Inverse of ``cid_pack``; None for the all-zero (absent) cid. Raises ValueError if corrupt."""
    if type(raw) is bytes:
        cid = CACHE.unpacked.get(raw)
        if cid is not None:
            return cid
    if raw == _NO_CID:
        return None
    s = binascii.b2a_base64(raw + b"\0\0", newline=False).translate(_FROM_B64).decode()  # 40 symbols
    n = CID_ALPHABET.index(s[0])
    if not 1 <= n <= CID_MAX_LEN:
        raise ValueError(f"corrupt cid field (length symbol {n})")
    return s[1:1 + n]
