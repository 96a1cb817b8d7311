"""settle.schema: messages of a WAL batch decode back to the same postings; keys, headers, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from pipeline.records import GLOBAL_SYMBOL, Ev, Mode, Side
from pipeline.wal import WalReader, WalWriter
from settle.catalog import Catalog
from settle.errors import SchemaError
from settle.postings import concat_events, postings
from settle.schema import KEY_ACCOUNT, KEY_ADMIN, decode_many, encode_batch
from settle.synth import Synth, append_batches, event, trade_event, transfer_event
from settle.walbatch import WalBatcher


def batches_of(tmp_path: Path, catalog: Catalog, ev: np.ndarray, **kw: object) -> list:
    with WalWriter(tmp_path, fencing_token=6) as w:
        append_batches(w, ev, **kw)  # type: ignore[arg-type]
    r = WalReader(tmp_path)
    b = WalBatcher(catalog)
    try:
        return [x for f in r.iter_frames() for x in b.feed(f)]
    finally:
        r.close()


def test_roundtrip_gives_the_same_postings(tmp_path: Path, catalog: Catalog) -> None:
    s = Synth(catalog, accounts=5)
    ev = concat_events([s.deposits(), s.trades(40, fills=3, withdraw_every=7)])
    batches = batches_of(tmp_path, catalog, ev, seqs_per_batch=8)
    msgs = [m for b in batches for m in encode_batch(b, catalog)]
    assert len(msgs) == len(ev)
    d = decode_many([m[1] for m in msgs], catalog.shard)
    want = np.concatenate([postings(b.events, b.ords, b.fencing_events, catalog) for b in batches])
    got = postings(d.events, d.ords, d.fencing, catalog)
    cols = ["seq", "leg", "account", "asset", "amount", "kind", "symbol", "trade_id", "fencing", "ts_ns"]
    assert got[cols].tolist() == want[cols].tolist()
    assert d.ranges == [(b.first_seq, b.last_seq,
                         len(postings(b.events, b.ords, 0, catalog))) for b in batches]
    assert d.last_seq == int(ev["seq"][-1]) and (d.fencing_min, d.fencing_max) == (6, 6)
    assert len(d.ts_ns) == len(ev) and d.skipped == 0
    assert decode_many([m[1] for m in msgs], catalog.shard + 1).skipped == len(msgs)


def test_keys_headers_and_fields(tmp_path: Path, catalog: Catalog) -> None:
    ev = concat_events([
        trade_event(1, symbol=1, side=Side.SELL), transfer_event(2, asset=2, amount=-5),
        event(3, Ev.MODE_CHANGED, symbol=GLOBAL_SYMBOL, mode=Mode.SOFT_HALT),
        event(4, Ev.MODE_CHANGED, symbol=3, mode=Mode.CANCEL_ONLY),
        event(5, Ev.REJECTED, symbol=0, account=9, reason=5), event(6, Ev.CHECKPOINT, state_hash=2**64 - 1)])
    (b,) = batches_of(tmp_path, catalog, ev, blobs={3: json.dumps({"actor": "ops", "ticket": "T"}).encode()})
    msgs = encode_batch(b, catalog, wal_id=77)
    keys = [m[0] for m in msgs]
    assert keys == [KEY_ADMIN, b"BTC-USDT", KEY_ACCOUNT, KEY_ADMIN, b"SMK-USDT", KEY_ACCOUNT, KEY_ADMIN]
    docs = [orjson.loads(m[1]) for m in msgs]
    assert docs[0]["type"] == "ADMIN_NOTE" and docs[0]["ticket"] == "T" and docs[0]["symbol"] == "BTC-USDT"
    t = docs[1]
    assert (t["type"], t["taker_side"], t["symbol"], t["seq"], t["ix"], t["fencing"]) == (
        "TRADE", "SELL", "BTC-USDT", 1, 0, 6)
    assert docs[2]["amount"] == -5 and docs[2]["asset"] == "BTC"
    assert docs[3]["mode"] == "SOFT_HALT" and docs[3]["symbol"] == "*"
    assert docs[5]["reason"] == "INSUFFICIENT_BALANCE"
    assert docs[6]["state_hash"] == "ffffffffffffffff" and docs[6]["batch"]["last_seq"] == 6
    h = dict(msgs[1][2])
    assert h == {"shard": b"0", "seq": b"1", "fencing": b"6", "schema": b"1", "type": b"TRADE",
                 "wal": b"77"}
    assert {d["wal"] for d in docs} == {77}
    assert decode_many([m[1] for m in msgs], 0).wal_ids == {77}


@pytest.mark.parametrize("raw, match", [
    (b"{nope", "not JSON"),
    (b'{"v": 2, "type": "TRADE"}', "version"),
    (b'[1]', "version"),
    (b'{"v": 1, "type": "TRADE", "shard": 0, "seq": 1, "ix": 0, "ts_ns": 1, "fencing": 0}', "TRADE"),
])
def test_bad_messages(raw: bytes, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        decode_many([raw], 0)
