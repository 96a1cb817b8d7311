import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.recio import EvT, admin_note, pack_admin, pack_command, unpack_events
from pipeline.cid import CID_ALPHABET, cid_unpack
from pipeline.records import ADMIN, COMMAND, EVENT, Ev, cid_decode, cid_encode

i64 = st.integers(-(2**63), 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
u8 = st.integers(0, 255)
cids = st.text(alphabet="ABCxyz019_-", min_size=1, max_size=36)


@given(i64, i64, u32, u32, u32, u16, u8, u8, u8, u8, u8, u8, cids)
def test_pack_command_matches_numpy_fields(price, qty, account, conn, req, symbol, kind, flags,
                                           side, otype, tif, stp, cid) -> None:  # type: ignore[no-untyped-def]
    rec = pack_command(kind, account, price=price, qty=qty, symbol=symbol, flags=flags,
                       side=side, otype=otype, tif=tif, stp=stp,
                       cid=cid_encode(cid).tobytes(), conn=conn, req=req)
    ref = np.zeros((), COMMAND)
    for name, v in (("price", price), ("qty", qty), ("account", account), ("conn", conn),
                    ("req", req), ("symbol", symbol), ("kind", kind), ("flags", flags),
                    ("side", side), ("otype", otype), ("tif", tif), ("stp", stp)):
        ref[name] = v
    ref["cid"] = cid_encode(cid)
    assert rec.tobytes() == ref.tobytes()
    rec["req"] = 99  # writable: the gateway stamps req / conn
    assert int(rec["req"]) == 99


def test_pack_admin_round_trip() -> None:
    cmd = pack_command(4, symbol=3, side=2)
    rec = pack_admin(cmd, b'{"actor":"k"}')
    assert rec.dtype == ADMIN and admin_note(rec) == b'{"actor":"k"}'
    assert rec["cmd"].tobytes() == cmd.tobytes()


_EV_FIELDS = [n for n in EvT._fields if n != "cid"]


@settings(max_examples=60)
@given(st.lists(st.tuples(st.sampled_from([int(k) for k in Ev]), st.lists(i64, min_size=12, max_size=12),
                          st.lists(u32, min_size=4, max_size=4), u16, st.lists(u8, min_size=8, max_size=8),
                          cids), min_size=1, max_size=5))
def test_unpack_events_matches_numpy(rows) -> None:  # type: ignore[no-untyped-def]
    arr = np.zeros(len(rows), EVENT)
    for r, (kind, ints, u32s, sym, bytes8, cid) in zip(arr, rows, strict=True):
        for name, v in zip(("ts_ns", "order_id", "price", "qty", "trade_id", "maker_order_id",
                            "quote_qty", "taker_fee", "maker_fee", "maker_leaves", "leaves"), ints,
                           strict=False):
            r[name] = v
        r["seq"] = abs(ints[11])
        for name, v in zip(("account", "maker_account", "conn", "req"), u32s, strict=True):
            r[name] = v
        r["symbol"] = sym
        for name, v in zip(("reason", "side", "otype", "tif", "flags", "stp", "last"), bytes8,
                           strict=False):
            r[name] = v
        r["kind"] = kind
        if kind in (Ev.ACCEPTED, Ev.REJECTED):
            r["cid"] = cid_encode(cid)
    evs = unpack_events(arr)
    for e, r in zip(evs, arr, strict=True):
        cid_kind = e.kind in (Ev.ACCEPTED, Ev.REJECTED)
        for name in _EV_FIELDS:
            if cid_kind and name in ("trade_id", "maker_order_id", "quote_qty", "taker_fee"):
                assert getattr(e, name) == 0  # these bytes hold the cid on those kinds
            else:
                assert getattr(e, name) == int(r[name]), name
        assert e.cid == (cid_decode(r["cid"]) if cid_kind else None)
        assert (e.available, e.locked, e.asset, e.mode) == (
            int(r["available"]) if not cid_kind else 0, int(r["locked"]) if not cid_kind else 0,
            int(r["asset"]), int(r["mode"]))
    # a strided (non-contiguous) view decodes the same
    assert unpack_events(arr[::-1]) == evs[::-1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(min_size=28, max_size=28),
                          st.text(alphabet=CID_ALPHABET, min_size=1, max_size=36).map(
                              lambda c: cid_encode(c).tobytes()),
                          st.just(bytes(28))), min_size=1, max_size=40),
       st.lists(st.sampled_from([int(Ev.ACCEPTED), int(Ev.REJECTED), int(Ev.CANCELED),
                                 int(Ev.TRADE)]), min_size=40, max_size=40))
def test_the_batch_cid_decode_equals_cid_unpack(fields: list[bytes], kinds: list[int]) -> None:
    """unpack_events decodes a batch's cids in one kernel call: each equals ``cid_unpack`` of its
    field, None where that refuses it (all zero, a length symbol outside 1..36)."""
    arr = np.zeros(len(fields), EVENT)
    for r, f, k in zip(arr, fields, kinds, strict=False):
        r["kind"] = k
        r["cid"] = np.frombuffer(f, np.uint8)
    for e, f, k in zip(unpack_events(arr), fields, kinds, strict=False):
        if k not in (Ev.ACCEPTED, Ev.REJECTED):
            assert e.cid is None
            continue
        try:
            want = cid_unpack(f)
        except ValueError:
            want = None
        assert e.cid == want
