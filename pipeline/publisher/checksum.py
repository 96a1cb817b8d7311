"""Book checksum: CRC32 of the top levels, in a fixed, documented text format (docs/MARKET_DATA.md).

Format. Take the top ``CHECKSUM_LEVELS`` (10) bids (best = highest first) and the top 10 asks
(best = lowest first) of the book *as the channel shows it* (a ``@5`` channel has at most 5 a
side). Interleave them rank by rank — bid 1, ask 1, bid 2, ask 2, ... — writing each level as
``price:qty`` with the exact decimal strings of the messages; a side that has no level at a rank
contributes nothing at that rank. Join everything with ``:``. The checksum is the unsigned CRC32
(zlib / IEEE 802.3 polynomial) of the ASCII bytes, an integer in ``[0, 2**32)``. An empty book is
the empty string, checksum 0.

Test vector (also asserted by tests/unit/publisher/test_checksum.py)::

    bids [["100.25", "1.5000"], ["100.24", "0.0100"]]
    asks [["100.26", "2.0000"]]
    text "100.25:1.5000:100.26:2.0000:100.24:0.0100"
    checksum 1503141862
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

CHECKSUM_LEVELS = 10

TEST_VECTOR_BIDS = (("100.25", "1.5000"), ("100.24", "0.0100"))
TEST_VECTOR_ASKS = (("100.26", "2.0000"),)
TEST_VECTOR_TEXT = "100.25:1.5000:100.26:2.0000:100.24:0.0100"
TEST_VECTOR_CHECKSUM = 1503141862

Level = Sequence[str]  # [price, qty]


def checksum_text(bids: Sequence[Level], asks: Sequence[Level],
                  levels: int = CHECKSUM_LEVELS) -> str:
    parts: list[str] = []
    nb, na = min(len(bids), levels), min(len(asks), levels)
    for i in range(max(nb, na)):
        if i < nb:
            b = bids[i]
            parts.append(b[0])
            parts.append(b[1])
        if i < na:
            a = asks[i]
            parts.append(a[0])
            parts.append(a[1])
    return ":".join(parts)


def checksum(bids: Sequence[Level], asks: Sequence[Level], levels: int = CHECKSUM_LEVELS) -> int:
    """CRC32 of ``checksum_text``: bids best first, asks best first."""
    return zlib.crc32(checksum_text(bids, asks, levels).encode())
