"""Events -> double-entry postings. Pure, vectorised (numpy), deterministic.

Layout. ``POSTING`` is one ledger row before it gets an id: (shard, seq, leg, account, asset,
amount, kind, symbol, trade_id, fencing, ts_ns). Amounts are int64 minor units, + credit / - debit.

Legs. The idempotency key is ``(shard, seq, leg)``. Several events share one command seq (a taker
order that sweeps three makers makes three TRADEs), so ``leg = ordinal * LEGS_PER_EVENT + slot``
where ``ordinal`` is the event's position among *all* events of its seq (``ordinals``: counted from
the first event of the seq in WAL order, identical in the embedded and the Kafka path) and ``slot``
is fixed per event kind:

    TRADE    0 buyer  base  +qty*lot_minor                     TRADE
             1 seller base  -qty*lot_minor                     TRADE
             2 buyer  quote -(notional + buyer's fee)          TRADE
             3 seller quote +(notional - seller's fee)         TRADE
             4 fee account quote +(taker_fee + maker_fee)      FEE
    TRANSFER 0 account asset +amount                           DEPOSIT (amount > 0) / WITHDRAWAL
             1 external account asset -amount                  same

The buyer is the taker when the taker side is BUY, else the maker; the taker pays ``taker_fee``,
the maker ``maker_fee`` (quote minor units, computed and rounded by the engine). Zero-amount legs
(no fee) are not written; their slot numbers stay reserved, so keys never shift. Every trade's
legs sum to zero per asset, and so does every transfer's: the property tests check both.

Other event kinds produce no postings (they still take an ordinal).
"""

from __future__ import annotations

import enum

import numpy as np

from pipeline.records import EVENT, Ev, Side
from settle.catalog import Catalog
from settle.errors import PostingError


class Kind(enum.IntEnum):
    """ledger_entries.kind (table ledger_kinds)."""

    TRADE = 1
    FEE = 2
    DEPOSIT = 3
    WITHDRAWAL = 4
    CORRECTION = 5


LEGS_PER_EVENT = 8
TRADE_SLOTS = 5
SETTLED_KINDS = (int(Ev.TRADE), int(Ev.TRANSFER))
_TRADE, _TRANSFER = SETTLED_KINDS  # ints: numpy converts an IntEnum member at ~5 us a comparison

POSTING = np.dtype([
    ("shard", "<i2"), ("seq", "<i8"), ("leg", "<i4"), ("account", "<i8"), ("asset", "<i2"),
    ("amount", "<i8"), ("kind", "<i2"), ("symbol", "<i4"), ("trade_id", "<i8"),
    ("fencing", "<i8"), ("ts_ns", "<i8"),
])

Carry = tuple[int, int]  # (seq of the last event seen, events of that seq seen so far)


def ordinals(seqs: np.ndarray, carry: Carry = (0, 0)) -> tuple[np.ndarray, Carry]:
    """Position of each event among the events of its seq, continuing ``carry`` from the previous
    call (events of one seq may span calls). ``seqs`` must be non-decreasing."""
    n = len(seqs)
    if n == 0:
        return np.zeros(0, np.int64), carry
    s = seqs.astype(np.int64, copy=False)
    if n > 1 and bool(np.any(s[1:] < s[:-1])):
        i = int(np.argmax(s[1:] < s[:-1]))
        raise PostingError(f"event seqs go backwards: {int(s[i])} then {int(s[i + 1])}")
    if int(s[0]) < carry[0]:
        raise PostingError(f"event seq {int(s[0])} is before the previous batch's {carry[0]}")
    idx = np.arange(n, dtype=np.int64)
    change = np.empty(n, np.bool_)
    change[0] = True
    change[1:] = s[1:] != s[:-1]
    start = np.maximum.accumulate(np.where(change, idx, 0))
    out = idx - start
    if int(s[0]) == carry[0]:
        out[start == 0] += carry[1]
    last = int(s[-1])
    return out, (last, int(out[-1]) + 1)


def postings(events: np.ndarray, ords: np.ndarray, fencing: int | np.ndarray,
             catalog: Catalog) -> np.ndarray:
    """The ledger rows for ``events`` (EVENT records, any kinds) with their ``ords`` (see
    ``ordinals``) and fencing token(s). Raises PostingError on an event it cannot post."""
    if events.dtype != EVENT:
        raise PostingError(f"expected EVENT records, got dtype {events.dtype}")
    if len(ords) != len(events):
        raise PostingError("ords and events differ in length")
    kinds = events["kind"]
    sel = (kinds == _TRADE) | (kinds == _TRANSFER)
    ev = events[sel]
    n = len(ev)
    if n == 0:
        return np.zeros(0, POSTING)
    o = ords[sel].astype(np.int64)
    fen = np.broadcast_to(np.asarray(fencing, np.int64), len(events))[sel]
    is_trade = ev["kind"] == _TRADE
    _validate(ev, is_trade, catalog)

    acct = np.empty((n, TRADE_SLOTS), np.int64)
    asset = np.empty((n, TRADE_SLOTS), np.int16)
    amount = np.zeros((n, TRADE_SLOTS), np.int64)
    kind = np.empty((n, TRADE_SLOTS), np.int16)

    sym = np.where(is_trade, ev["symbol"], 0).astype(np.int64)
    taker = ev["account"].astype(np.int64)
    maker = ev["maker_account"].astype(np.int64)
    taker_buys = ev["side"] == Side.BUY
    buyer = np.where(taker_buys, taker, maker)
    seller = np.where(taker_buys, maker, taker)
    taker_fee = ev["taker_fee"]
    maker_fee = ev["maker_fee"]
    buyer_fee = np.where(taker_buys, taker_fee, maker_fee)
    seller_fee = np.where(taker_buys, maker_fee, taker_fee)
    base_amt = ev["qty"] * catalog.sym_lot[sym]
    notional = ev["quote_qty"]
    base, quote = catalog.sym_base[sym], catalog.sym_quote[sym]

    t = is_trade
    for slot, (a, s, m, k) in enumerate((
            (buyer, base, base_amt, Kind.TRADE),
            (seller, base, -base_amt, Kind.TRADE),
            (buyer, quote, -(notional + buyer_fee), Kind.TRADE),
            (seller, quote, notional - seller_fee, Kind.TRADE),
            (np.full(n, catalog.fee_account, np.int64), quote, taker_fee + maker_fee, Kind.FEE))):
        acct[:, slot] = a
        asset[:, slot] = s
        amount[:, slot] = np.where(t, m, 0)
        kind[:, slot] = k

    x = ~is_trade  # TRANSFER: + to the account, - to the external account
    if bool(np.any(x)):
        amt = ev["qty"][x]
        tk = np.where(amt > 0, Kind.DEPOSIT, Kind.WITHDRAWAL).astype(np.int16)
        a_id = ev["asset"][x].astype(np.int16)
        acct[x, 0], asset[x, 0], amount[x, 0], kind[x, 0] = taker[x], a_id, amt, tk
        acct[x, 1], asset[x, 1], amount[x, 1], kind[x, 1] = catalog.external_account, a_id, -amt, tk

    out = np.empty((n, TRADE_SLOTS), POSTING)
    out["shard"] = catalog.shard
    out["seq"] = ev["seq"].astype(np.int64)[:, None]
    out["leg"] = (o * LEGS_PER_EVENT)[:, None] + np.arange(TRADE_SLOTS, dtype=np.int64)
    out["account"] = acct
    out["asset"] = asset
    out["amount"] = amount
    out["kind"] = kind
    out["symbol"] = sym.astype(np.int32)[:, None]
    out["trade_id"] = np.where(is_trade, ev["trade_id"], 0)[:, None]
    out["fencing"] = fen[:, None]
    out["ts_ns"] = ev["ts_ns"][:, None]
    flat = out.reshape(-1)
    return flat[flat["amount"] != 0]


def concat_events(parts: list[np.ndarray]) -> np.ndarray:
    """np.concatenate for EVENT arrays (it would drop the aliased-field layout)."""
    out = np.empty(sum(len(p) for p in parts), EVENT)
    i = 0
    for p in parts:
        out[i:i + len(p)] = p
        i += len(p)
    return out



def legs_count(events: np.ndarray, catalog: Catalog) -> int:
    """How many postings ``events`` make (what ``settled_batches.legs`` records for them)."""
    return len(postings(events, np.zeros(len(events), np.int64), 0, catalog))


def _validate(ev: np.ndarray, is_trade: np.ndarray, catalog: Catalog) -> None:
    def fail(mask: np.ndarray, what: str) -> None:
        i = int(np.argmax(mask))
        raise PostingError(f"seq {int(ev['seq'][i])} ({Ev(int(ev['kind'][i])).name}): {what}")

    tr = ev[is_trade]
    if len(tr):
        sym = tr["symbol"].astype(np.int64)
        bad = (sym >= len(catalog.sym_valid))
        bad |= ~catalog.sym_valid[np.where(bad, 0, sym)]
        if bool(np.any(bad)):
            fail(_spread(bad, is_trade), "unknown symbol")
        checks = ((tr["side"] != Side.BUY) & (tr["side"] != Side.SELL), "taker side is not BUY/SELL"), \
                 (tr["qty"] <= 0, "qty_lots must be > 0"), \
                 (tr["quote_qty"] <= 0, "quote_qty must be > 0"), \
                 ((tr["taker_fee"] < 0) | (tr["maker_fee"] < 0), "fees must be >= 0")
        for mask, what in checks:
            if bool(np.any(mask)):
                fail(_spread(mask, is_trade), what)
    xf = ev[~is_trade]
    if len(xf):
        a = xf["asset"].astype(np.int64)
        bad = a >= len(catalog.asset_valid)
        bad |= ~catalog.asset_valid[np.where(bad, 0, a)]
        if bool(np.any(bad)):
            fail(_spread(bad, ~is_trade), "unknown asset")
        if bool(np.any(xf["qty"] == 0)):
            fail(_spread(xf["qty"] == 0, ~is_trade), "transfer amount is 0")


def _spread(sub_mask: np.ndarray, where: np.ndarray) -> np.ndarray:
    full = np.zeros(len(where), np.bool_)
    full[np.flatnonzero(where)[sub_mask]] = True
    return full
