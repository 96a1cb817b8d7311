"""The book checksum format and its published test vector (docs/MARKET_DATA.md)."""

from __future__ import annotations

import zlib

from pipeline.publisher.checksum import (
    TEST_VECTOR_ASKS,
    TEST_VECTOR_BIDS,
    TEST_VECTOR_CHECKSUM,
    TEST_VECTOR_TEXT,
    checksum,
    checksum_text,
)


def test_published_test_vector() -> None:
    assert checksum_text(TEST_VECTOR_BIDS, TEST_VECTOR_ASKS) == TEST_VECTOR_TEXT
    assert checksum(TEST_VECTOR_BIDS, TEST_VECTOR_ASKS) == TEST_VECTOR_CHECKSUM == 1503141862
    assert zlib.crc32(TEST_VECTOR_TEXT.encode()) == TEST_VECTOR_CHECKSUM


def test_vector_is_in_the_docs() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "MARKET_DATA.md").read_text()
    assert TEST_VECTOR_TEXT in doc and str(TEST_VECTOR_CHECKSUM) in doc


def test_empty_book_and_one_sided_books() -> None:
    assert checksum([], []) == 0
    assert checksum_text([["1.00", "2"]], []) == "1.00:2"
    assert checksum_text([], [["1.00", "2"], ["1.01", "3"]]) == "1.00:2:1.01:3"


def test_only_the_top_ten_levels_count_and_ranks_interleave() -> None:
    bids = [[f"{100 - i}.00", f"{i + 1}"] for i in range(15)]
    asks = [[f"{101 + i}.00", f"{i + 1}"] for i in range(3)]
    text = checksum_text(bids, asks)
    parts = text.split(":")
    assert parts[:8] == ["100.00", "1", "101.00", "1", "99.00", "2", "102.00", "2"]
    assert len(parts) == 2 * (10 + 3)  # 10 bids, 3 asks
    assert checksum(bids, asks) == checksum(bids[:10], asks)
    assert checksum(bids, asks) != checksum(bids[:9], asks)
    assert checksum(bids, asks, levels=5) == checksum(bids[:5], asks)
