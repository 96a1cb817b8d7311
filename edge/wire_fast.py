"""``WireFast``: a WS order request's bytes straight to its COMMAND record (one numba call).

Why. A market maker's WS traffic is almost all ``order.place`` (LIMIT) and ``order.cancel`` in one
shape. The general path parses the message into dicts (``orjson.loads``), checks the envelope,
then ``edge.fast_orders`` validates the params into the record: about 3.5 us a place and 2 us a
cancel of a saturated edge's CPU (perf, closed loop 64x16), most of it allocating and looking up
Python objects. ``_wire_kernels.parse`` reads the bytes once and writes the record: ~1.1 us a
place with the call, of which numba's dispatch is ~0.6 us and the parse itself 0.34 us; called
through its compiled entry for picows' payload views (``WireFast.view_kernel``), ~0.8 us.

Contract (the same one as ``edge.fast_orders``): ``parse(data, account)`` returns ``(kind, rid,
cmd)`` — kind 1 place / 2 cancel, the request id (int or str), the 64 record bytes (``conn`` /
``req`` 0) — exactly what the general path would take from the same bytes (the envelope checks of
``TradeSession.message``, then ``Validator.place_raw`` / ``cancel_raw``), or None whenever the
message is anything else (another method, an escape in a string, a duplicate or unknown member, a
value the general path refuses, ...). None is never an answer: the caller then runs the general
path, which packs the same record or answers the precise error. Property test:
tests/property/test_wire_fast.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge import _wire_kernels as K
from edge import schema
from edge.convert import SymbolUnits
from pipeline.cid import CID_ALPHABET, CID_BYTES, CID_MAX_LEN
from pipeline.records import Cmd, CmdFlag, OrdType, Side, Stp, Tif

assert (K.BUY, K.SELL, K.LIMIT, K.GTC, K.IOC, K.FOK) == (
    int(Side.BUY), int(Side.SELL), int(OrdType.LIMIT), int(Tif.GTC), int(Tif.IOC), int(Tif.FOK))
assert K.STP_CODES == tuple(int(Stp[name]) for name in schema.STPS)
assert K.WORDS[K.W_GTC:K.W_FOK + 1] == tuple(t.encode() for t in schema.TIFS)
assert K.WORDS[K.W_STP0:] == tuple(s.encode() for s in schema.STPS)
assert (K.NEW_ORDER, K.CANCEL, K.POST_ONLY, K.BY_CID) == (
    int(Cmd.NEW_ORDER), int(Cmd.CANCEL), int(CmdFlag.POST_ONLY), int(CmdFlag.BY_CID))
assert (K.CID_ALPHABET, K.CID_MAX, CID_BYTES) == (CID_ALPHABET.encode(), CID_MAX_LEN, 28)


def table(units: dict[str, SymbolUnits]) -> np.ndarray:
    """The symbol table of the kernel (its header); names over ``NAME_MAX`` bytes are left out
    (their requests take the general path)."""
    rows = [u for name, u in units.items() if name.isascii() and len(name) <= K.NAME_MAX]
    tab = np.zeros(1 + len(rows) * K.SYM_STRIDE, np.int64)
    tab[0] = len(rows)
    for k, u in enumerate(rows):
        s = u.sym
        base = 1 + k * K.SYM_STRIDE
        name = s.name.encode()
        tab[base] = len(name)
        tab[base + 1:base + 1 + len(name)] = np.frombuffer(name, np.uint8)
        tab[base + 1 + K.NAME_MAX:base + K.SYM_STRIDE] = (
            s.symbol_id, s.quote_scale, s.base_scale, s.tick_minor, s.max_price_ticks, s.lot_minor,
            s.min_qty_lots, s.max_qty_lots, s.k, s.min_notional_minor)
    return tab


class WireFast:
    """The kernel with its table and buffers (one per edge process; not re-entrant).

    ``kernel`` is numba's dispatcher: it works out the argument types at every call. picows hands
    each payload as the same kind of object, a read-only C-contiguous byte ``memoryview``, so
    ``view_kernel`` is the kernel's compiled entry for exactly those types, called without the
    dispatch (819 vs 1203 ns a place, timeit). Only a caller that knows its bytes are such a view
    may use it (``TradeSession.message(data, view=True)``); anything else goes through ``kernel``.
    """

    def __init__(self, units: dict[str, SymbolUnits]) -> None:
        self.tab = table(units)
        # the record is written into ``cmd``, a view of ``record_buf``, and copied out by slicing
        # the bytearray (49 ns), not through numpy's buffer export (``bytearray(cmd)``: 163 ns)
        self.record_buf = bytearray(64)
        self.cmd = np.frombuffer(self.record_buf, np.uint8)
        self.sc = np.zeros(3 * len(K.PARAM_KEYS), np.int64)
        self.kernel: Any = K.parse
        self.view_kernel: Any = self._entry(memoryview(b"{}"))

    def _entry(self, sample: memoryview) -> Any:
        """The compiled entry of ``kernel`` for arguments typed as ``sample`` and the buffers (the
        dispatcher compiles or loads it on this first call); the dispatcher if it has none."""
        import numba

        args = (sample, 1, self.tab, self.cmd, self.sc)
        self.kernel(*args)
        cres = self.kernel.overloads.get(tuple(numba.typeof(a) for a in args))
        return self.kernel if cres is None else cres.entry_point

    def parse(self, data: bytes | memoryview, account: int,
              view: bool = False) -> tuple[int, int | str, bytearray] | None:
        """``view``: ``data`` is a read-only C-contiguous byte memoryview, as picows hands them."""
        kernel = self.view_kernel if view else self.kernel
        kind, rid, rs, re = kernel(data, account, self.tab, self.cmd, self.sc)
        if not kind:
            return None
        return kind, (rid if rs < 0 else bytes(data[rs:re]).decode()), self.record_buf[:]


def warm() -> float:
    """Compile (or load from numba's cache) the wire kernels — this one, the batch cid decode of
    ``edge.recio.unpack_events`` and the balance lane of ``unpack_chunk`` — so that no request pays it (cold: seconds); returns the
    seconds it took."""
    import time

    from edge.recio import event_rows, unpack_chunk, unpack_events
    from pipeline.cid import cid_pack
    from pipeline.records import EVENT, Ev

    t0 = time.perf_counter()
    w = WireFast({})
    msg = b'{"id":1,"method":"order.cancel","params":{"orderId":7}}'
    for data in (msg, memoryview(msg)):
        if w.parse(data, 1) is None:
            raise AssertionError("wire_fast warm-up message was not parsed")
    ev = np.zeros(1, EVENT)
    ev["kind"] = int(Ev.ACCEPTED)
    ev["cid"] = np.frombuffer(cid_pack("warm"), np.uint8)
    if unpack_events(ev)[0].cid != "warm" or unpack_chunk(event_rows(ev), 0, 1)[0][0].cid != "warm":
        raise AssertionError("wire_fast warm-up cid was not decoded")
    return time.perf_counter() - t0
