"""The EVENT fields each kind uses (engine/README.md §6) never share bytes, and COMMAND fields per
kind likewise (pipeline/records.py unions)."""

from __future__ import annotations

import pytest

from pipeline.records import COMMAND, EVENT, Cmd, Ev

COMMON = ["seq", "ts_ns", "conn", "req", "kind", "last"]
ORDER = ["order_id", "account", "symbol", "side", "otype", "tif", "flags", "stp", "price", "qty",
         "leaves", "reason", "cid"]
EVENT_FIELDS = {
    Ev.ACCEPTED: ORDER,
    Ev.REJECTED: ORDER + ["asset"],
    Ev.TRADE: ["order_id", "account", "side", "otype", "tif", "flags", "stp", "symbol", "price",
               "qty", "trade_id", "maker_order_id", "maker_account", "quote_qty", "taker_fee",
               "maker_fee", "maker_leaves", "leaves"],
    Ev.CANCELED: ORDER,
    Ev.EXPIRED: ORDER,
    Ev.BALANCE: ["account", "asset", "available", "locked"],
    Ev.MODE_CHANGED: ["account", "symbol", "mode", "qty", "price", "reason"],
    Ev.CHECKPOINT: ["state_hash"],
    Ev.WITHDRAWALS: ["account", "mode"],
    Ev.TRANSFER: ["account", "asset", "qty"],
    Ev.ACK: ["account", "reason", "symbol", "otype", "qty"],
}
COMMAND_FIELDS = {
    Cmd.NEW_ORDER: ["price", "qty", "account", "conn", "req", "symbol", "kind", "flags", "side",
                    "otype", "tif", "stp", "cid"],
    Cmd.CANCEL: ["order_id", "account", "conn", "req", "symbol", "kind", "flags", "cid"],
    Cmd.CANCEL_ALL: ["account", "conn", "req", "symbol", "kind", "scope"],
    Cmd.DEPOSIT: ["amount", "account", "conn", "req", "asset", "kind"],
    Cmd.SET_MODE: ["symbol", "mode", "kind", "conn", "req", "account"],
}


def _overlaps(dtype: object, names: list[str]) -> list[tuple[str, str]]:
    spans = []
    for n in names:
        ft, off = dtype.fields[n][:2]  # type: ignore[attr-defined]
        spans.append((n, off, off + ft.itemsize))
    return [(a, b) for i, (a, s1, e1) in enumerate(spans) for (b, s2, e2) in spans[i + 1:]
            if s1 < e2 and s2 < e1]


@pytest.mark.parametrize("kind", list(EVENT_FIELDS), ids=lambda k: k.name)
def test_event_fields_of_a_kind_do_not_overlap(kind: Ev) -> None:
    assert _overlaps(EVENT, COMMON + EVENT_FIELDS[kind]) == []


@pytest.mark.parametrize("kind", list(COMMAND_FIELDS), ids=lambda k: k.name)
def test_command_fields_of_a_kind_do_not_overlap(kind: Cmd) -> None:
    assert _overlaps(COMMAND, COMMAND_FIELDS[kind]) == []


def test_sizes() -> None:
    assert (COMMAND.itemsize, EVENT.itemsize) == (64, 128)
