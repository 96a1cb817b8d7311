"""settle.walbatch over a real WAL: batches, ordinals across resume, audit notes, contract errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.records import COMMAND, GLOBAL_SYMBOL, Cmd, Ev
from pipeline.wal import FrameKind, WalReader, WalWriter
from settle.catalog import Catalog
from settle.postings import concat_events, postings
from settle.synth import Synth, append_batches, event, trade_event
from settle.walbatch import WalBatch, WalBatcher, WalContractError


def read_batches(wal: Path, catalog: Catalog, from_seq: int = 0) -> list[WalBatch]:
    b = WalBatcher(catalog)
    r = WalReader(wal)
    try:
        return [x for f in r.iter_frames(from_seq) for x in b.feed(f)]
    finally:
        r.close()


def test_batches_and_resume_number_legs_identically(tmp_path: Path, catalog: Catalog) -> None:
    s = Synth(catalog, accounts=6)
    ev = concat_events([s.deposits(), s.trades(300, fills=3)])
    with WalWriter(tmp_path, segment_bytes=1 << 16, fencing_token=4) as w:  # several segments
        append_batches(w, ev, seqs_per_batch=16)
    batches = read_batches(tmp_path, catalog)
    assert batches[0].first_seq == 1 and batches[-1].last_seq == int(ev["seq"][-1])
    assert all(b.first_seq == a.last_seq + 1 for a, b in zip(batches, batches[1:], strict=False))
    assert sum(len(b.events) for b in batches) == len(ev)
    assert {b.fencing for b in batches} == {4}
    full = {(int(r["seq"]), int(r["leg"])): int(r["amount"]) for b in batches
            for r in postings(b.events, b.ords, b.fencing_events, catalog)}
    # resume from a seq in the middle of a batch: that batch is re-read whole, legs are the same
    mid = batches[10].first_seq + 5
    again = read_batches(tmp_path, catalog, from_seq=mid)
    assert again[0].first_seq == batches[10].first_seq
    for b in again:
        for r in postings(b.events, b.ords, b.fencing_events, catalog):
            assert full[(int(r["seq"]), int(r["leg"]))] == int(r["amount"])


def test_admin_note_becomes_an_audit_row(tmp_path: Path, catalog: Catalog) -> None:
    ev = concat_events([trade_event(1), event(2, Ev.MODE_CHANGED), event(3, Ev.ACK)])
    note = {"actor": "key-ops", "action": "SET_MODE", "reason": "halt BTC", "ticket": "INC-7"}
    with WalWriter(tmp_path) as w:
        append_batches(w, ev, blobs={2: json.dumps(note).encode(), 3: b"not json"})
    (b,) = read_batches(tmp_path, catalog)
    a2, a3 = b.audit
    assert (a2.seq, a2.actor, a2.action, a2.reason, a2.ticket, a2.symbol) == (
        2, "key-ops", "SET_MODE", "halt BTC", "INC-7", "BTC-USDT")
    assert json.loads(a2.note) == note
    assert a3.actor is None and json.loads(a3.note) == {"raw": "not json"}
    assert a3.action == "SET_MODE"  # from the command the note is attached to


def test_global_symbol_and_missing_events_frame(tmp_path: Path, catalog: Catalog) -> None:
    with WalWriter(tmp_path) as w:
        cmds = np.zeros(2, COMMAND)
        cmds["kind"] = Cmd.SET_MODE
        cmds["symbol"] = GLOBAL_SYMBOL
        w.append(FrameKind.COMMANDS, 1, 2, cmds.tobytes(), 5)
        w.append(FrameKind.BLOB, 2, 1, b'{"actor": "a"}', 5)
        # no EVENTS frame for seqs 1..2 (crash between the appends), then the next batch
        w.append(FrameKind.COMMANDS, 3, 1, np.zeros(1, COMMAND).tobytes(), 6)
        w.append(FrameKind.EVENTS, 3, 1, event(3, Ev.ACK).tobytes(), 6)
        w.sync()
    b1, b2 = read_batches(tmp_path, catalog)
    assert (b1.first_seq, b1.last_seq, len(b1.events)) == (1, 2, 0)
    assert b1.audit[0].symbol == "*" and b1.audit[0].action == "SET_MODE"
    assert (b2.first_seq, len(b2.events)) == (3, 1)


def test_contract_violations_are_named(tmp_path: Path, catalog: Catalog) -> None:
    with WalWriter(tmp_path) as w:
        w.append(FrameKind.COMMANDS, 1, 2, np.zeros(2, COMMAND).tobytes(), 5)
        w.append(FrameKind.EVENTS, 1, 1, event(1, Ev.ACK).tobytes(), 5)
        w.append(FrameKind.EVENTS, 1, 1, event(2, Ev.ACK).tobytes(), 5)  # a second EVENTS frame
        w.sync()
    with pytest.raises(WalContractError, match="no open batch"):
        read_batches(tmp_path, catalog)


def test_events_outside_their_batch(tmp_path: Path, catalog: Catalog) -> None:
    with WalWriter(tmp_path) as w:
        w.append(FrameKind.COMMANDS, 1, 1, np.zeros(1, COMMAND).tobytes(), 5)
        w.append(FrameKind.EVENTS, 1, 1, event(9, Ev.ACK).tobytes(), 5)
        w.sync()
    with pytest.raises(WalContractError, match="outside"):
        read_batches(tmp_path, catalog)
