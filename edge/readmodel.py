"""In-memory read model of the edge: orders, fills, balances and modes, fed with EVENT records.

Fed by the gateway with every durable event in seq order (in the stack: the WAL tail; in-process:
the engine's output), *before* the command's response is released, so a client reads its own
writes. Answers GET /v1/orders[/{id}], /v1/fills, /v1/balances and their WS twins, and produces the
private WS events (``OrderUpdate`` with ``lastFill``, ``BalanceUpdate``) for subscribed accounts,
serialised once per event (``edge.views_text``) and handed to every subscriber as bytes. In ``OrderUpdate`` the order's
own ``type`` (LIMIT/MARKET) is named ``orderType``, since ``type`` names the event.

Balance updates are conflated per batch. A ``BalanceUpdate`` is a snapshot (available, locked, and
the seq of the change), so each call of ``apply`` (one durable batch) pushes one per subscribed
(account, asset) that changed in it, with its newest state, after the batch's ``OrderUpdate``s.
Nothing a client can act on is lost: the newest balance is what it would have ended up with, its
``seq`` says which events it includes. Under load a market maker with many orders in one batch got
dozens of superseded updates per asset, each formatted and written (~5 % of an edge's CPU at
saturation); at low rates a batch holds one command and nothing changes. Fed by
``Dispatcher.feed_records`` (the stack and the in-process engine), the BALANCE events arrive
already conflated, as rows of the newest state per (account, asset) of the chunk
(``edge.recio.unpack_chunk``), and are applied and pushed the same way without ever becoming
objects. ``OrderUpdate``s are never conflated: every state change and fill of an order is pushed.

Memory (bounded, per process):
  * open orders: every open order of every account (bounded by the engine's ``max_orders``), one
    ``OrderState`` (~250 B) each, indexed by order id and per account;
  * closed orders: the last ``closed_per_account`` per account (default 100), oldest evicted first;
    rejected new orders are kept there too (key ``-seq``) only if they carried a clientOrderId, so a
    client whose request timed out can find out by clientOrderId;
  * fills: the last ``fills_per_account`` per account (default 200), ~150 B each;
  * balances: one (available, locked) pair per (account, asset) seen.
  So about ``accounts x (100 x 250 B + 200 x 150 B) = 55 KiB`` per active account on top of the
  open orders; accounts are bounded by the engine's ``max_accounts``.
Lookups are O(1) except listings (O(result)).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from edge.convert import SymbolUnits, format_units
from edge.errors import REJECT_AS_EXPIRED, REJECT_TO_ERROR
from edge.recio import BalanceRow, EvT
from edge.views import Fill, OrderState, fill_row_json, order_json
from edge.views_text import balance_update_text, order_update_text
from pipeline.config import Asset
from pipeline.records import GLOBAL_SYMBOL, Ev, RejectReason

log = logging.getLogger(__name__)
# Final: once compiled a constant, not a lookup in the module's dict at every use (mypyc)
_TRADE: Final = int(Ev.TRADE)
_BALANCE: Final = int(Ev.BALANCE)
_ACCEPTED: Final = int(Ev.ACCEPTED)
_EXPIRED: Final = int(Ev.EXPIRED)
_CANCELED: Final = int(Ev.CANCELED)
_REJECTED: Final = int(Ev.REJECTED)
_MODE_CHANGED: Final = int(Ev.MODE_CHANGED)
_WITHDRAWALS: Final = int(Ev.WITHDRAWALS)
_CHECKPOINT: Final = int(Ev.CHECKPOINT)
_GLOBAL_SYMBOL: Final = GLOBAL_SYMBOL
PrivateSink = Callable[[int, bytes], None]


class AccountView:
    __slots__ = ("open", "closed", "closed_keys", "cids", "fills", "balances")

    def __init__(self, fills_max: int) -> None:
        self.open: dict[int, OrderState] = {}
        self.closed: dict[int, OrderState] = {}
        # ``closed``'s keys, oldest first: the one to evict without iterating the dict, which
        # walks over every slot freed by earlier evictions (they stay at the front of its table
        # until it is rebuilt: ~1.3 % of a saturated edge in ``dict`` iteration alone)
        self.closed_keys: deque[int] = deque()
        self.cids: dict[str, int] = {}
        self.fills: deque[Fill] = deque(maxlen=fills_max)
        self.balances: dict[int, tuple[int, int]] = {}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # pickled the same compiled or not
        return _account_view, (self.open, self.closed, self.cids, self.fills, self.balances)


def _account_view(open_: dict[int, OrderState], closed: dict[int, OrderState], cids: dict[str, int],
                  fills: deque[Fill], balances: dict[int, tuple[int, int]]) -> AccountView:
    a = AccountView(fills.maxlen or 0)
    a.open, a.closed, a.cids, a.fills, a.balances = open_, closed, cids, fills, balances
    a.closed_keys = deque(closed)  # derived: a snapshot keeps its format
    return a


class ReadModel:
    def __init__(self, units: dict[int, SymbolUnits], assets: dict[int, Asset],
                 closed_per_account: int = 100, fills_per_account: int = 200) -> None:
        self.units = units
        self.assets = assets
        self.closed_max = closed_per_account
        self.fills_max = fills_per_account
        self.accounts: dict[int, AccountView] = {}
        self.open_index: dict[int, OrderState] = {}
        self.modes: dict[int, int] = {}
        self.global_mode = 0
        self.withdrawals_halted = False
        self.last_seq = 0
        self.state_hash = 0
        self.sink_errors = 0
        self._subs: dict[int, tuple[PrivateSink, ...]] = {}  # tuples: notify iterates, no copy

    # -- snapshots (pipeline.edge_snapshot) ---------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What an edge snapshot keeps: everything derived from events (not config, subscribers)."""
        return {"accounts": self.accounts, "open_index": self.open_index, "modes": self.modes,
                "global_mode": self.global_mode, "withdrawals_halted": self.withdrawals_halted,
                "last_seq": self.last_seq, "state_hash": self.state_hash,
                "sink_errors": self.sink_errors}

    def restore(self, state: dict[str, Any]) -> None:
        self.accounts = state["accounts"]
        self.open_index = state["open_index"]
        self.modes = state["modes"]
        self.global_mode = state["global_mode"]
        self.withdrawals_halted = state["withdrawals_halted"]
        self.last_seq = state["last_seq"]
        self.state_hash = state["state_hash"]
        self.sink_errors = state["sink_errors"]

    # -- subscriptions ----------------------------------------------------------------------------
    def subscribe(self, account: int, sink: PrivateSink) -> Callable[[], None]:
        """Deliver ``account``'s private events to ``sink(account, json_bytes)``; returns unsubscribe."""
        self._subs[account] = (*self._subs.get(account, ()), sink)

        def unsubscribe() -> None:
            sinks = self._subs.get(account, ())
            if sink in sinks:
                i = sinks.index(sink)
                rest = sinks[:i] + sinks[i + 1:]
                if rest:
                    self._subs[account] = rest
                else:
                    del self._subs[account]
        return unsubscribe

    def _notify(self, account: int, text: str) -> None:
        payload = text.encode()
        for sink in self._subs.get(account, ()):
            try:
                sink(account, payload)
            except Exception:  # noqa: BLE001 - one broken subscriber must not stop the feed
                self.sink_errors += 1
                log.exception("private event subscriber failed")

    def _order_update(self, st: OrderState, fill: Fill | None, seq: int) -> None:
        u = self.units.get(st.symbol)
        if u is not None:
            self._notify(st.account, order_update_text(st, u, seq, fill))

    # -- feeding ----------------------------------------------------------------------------------
    def _acct(self, account: int) -> AccountView:
        a = self.accounts.get(account)
        if a is None:
            a = self.accounts[account] = AccountView(self.fills_max)
        return a

    def _close(self, st: OrderState, key: int) -> None:
        a = self._acct(st.account)
        if key in a.open:  # `in` + `del` compile to C calls; `dict.pop(k, None)` is a method call
            del a.open[key]
        index = self.open_index
        if key in index:
            del index[key]
        closed = a.closed
        if key not in closed:  # (a key closes once; kept exact if one ever came back)
            a.closed_keys.append(key)
        closed[key] = st
        if len(closed) > self.closed_max:
            old_key = a.closed_keys.popleft()
            old = closed[old_key]
            del closed[old_key]
            cid = old.cid
            if cid is not None:
                cur = a.cids.get(cid)
                if cur is not None and cur == old_key:
                    del a.cids[cid]

    def apply(self, evs: list[EvT], bal: list[BalanceRow] | None = None, top: int = 0) -> None:
        """Feed durable events in seq order. ``bal`` / ``top`` (``edge.recio.unpack_chunk``): the
        balances of the same range as rows (newest per (account, asset)) and its highest seq; with
        them, BALANCE events among ``evs`` are only carriers of their command's end and are not
        applied again."""
        subs = self._subs
        balances: dict[int, EvT] | None = None  # subscribed (account, asset) -> newest BALANCE
        for e in evs:  # kinds compared as plain ints (module constants): cheaper than Ev.X
            k = e.kind
            if e.seq > self.last_seq:
                self.last_seq = e.seq
            if k == _TRADE:
                for maker in (False, True):
                    oid = e.maker_order_id if maker else e.order_id
                    st = self.open_index.get(oid)
                    if st is None:
                        continue
                    fill = st.trade(e, maker)
                    a = self._acct(st.account)
                    a.fills.append(fill)
                    if st.account in subs:
                        self._order_update(st, fill, e.seq)
                    if not st.is_open:
                        self._close(st, oid)
            elif k == _BALANCE:  # asset, available, locked: the aliases' slots (no property)
                if bal is not None:
                    continue
                a = self._acct(e.account)
                a.balances[e.maker_account] = (e.trade_id, e.maker_order_id)
                if e.account in subs:
                    if balances is None:
                        balances = {}
                    balances[(e.account << 32) | e.maker_account] = e  # the newest wins
            elif k == _ACCEPTED:
                st = OrderState(e)
                a = self._acct(e.account)
                a.open[e.order_id] = st
                self.open_index[e.order_id] = st
                if st.cid is not None:
                    a.cids[st.cid] = e.order_id
                if e.account in subs:
                    self._order_update(st, None, e.seq)
            elif k == _EXPIRED or k == _CANCELED:
                st = self.open_index.get(e.order_id)
                if st is not None:
                    st.close("EXPIRED" if k == _EXPIRED else "CANCELED", e.ts_ns)
                    if st.account in subs:
                        self._order_update(st, None, e.seq)
                    self._close(st, e.order_id)
            elif k == _REJECTED:
                self._rejected(e)
            elif k == _MODE_CHANGED:
                if e.symbol == _GLOBAL_SYMBOL:
                    self.global_mode = e.mode
                else:
                    self.modes[e.symbol] = e.mode
            elif k == _WITHDRAWALS:
                self.withdrawals_halted = bool(e.mode)
            elif k == _CHECKPOINT:
                self.state_hash = e.order_id
        if balances is not None:
            self._balance_updates(balances)
        if bal is not None:
            self._balance_rows(bal, top)

    def _balance_updates(self, balances: dict[int, EvT]) -> None:
        """One ``BalanceUpdate`` per subscribed (account, asset) changed in this batch: its newest
        state (a balance is a snapshot, not a delta; see the module header)."""
        for e in balances.values():
            self._balance_update(e.account, e.maker_account, e.trade_id, e.maker_order_id, e.seq,
                                 e.ts_ns)

    def _balance_rows(self, bal: list[BalanceRow], top: int) -> None:
        """The balances of a range as rows: applied, and pushed as ``_balance_updates`` does (the
        rows are the newest per key, in the order of their first change)."""
        if top > self.last_seq:
            self.last_seq = top
        subs = self._subs
        for row in bal:
            account = row[0]
            asset = row[1]
            self._acct(account).balances[asset] = (row[2], row[3])
            if account in subs:
                self._balance_update(account, asset, row[2], row[3], row[4], row[5])

    def _balance_update(self, account: int, asset_id: int, available: int, locked: int, seq: int,
                        ts_ns: int) -> None:
        asset = self.assets.get(asset_id)
        if asset is not None:
            self._notify(account, balance_update_text(asset, available, locked, seq, ts_ns))

    def _rejected(self, e: EvT) -> None:
        """Remember a refused new order that had a clientOrderId (see the module header)."""
        if not (e.cid and e.otype and e.account and e.symbol in self.units):
            return
        fok = e.reason in REJECT_AS_EXPIRED
        st = OrderState(e, "EXPIRED" if fok else "REJECTED")
        st.order_id = 0
        st.leaves = 0
        if not fok:
            try:
                st.reject = REJECT_TO_ERROR[RejectReason(e.reason)].name
            except (ValueError, KeyError):
                st.reject = str(e.reason)
        a = self._acct(e.account)
        key = -e.seq if e.seq else -(len(a.closed) + 1)
        cur = a.cids.get(e.cid)
        if e.cid not in a.cids or (cur is not None and cur not in a.open):
            a.cids[e.cid] = key
        self._close(st, key)
        if e.account in self._subs:
            self._order_update(st, None, e.seq)

    # -- queries ----------------------------------------------------------------------------------
    def order(self, account: int, order_id: int) -> OrderState | None:
        a = self.accounts.get(account)
        if a is None:
            return None
        return a.open.get(order_id) or a.closed.get(order_id)

    def order_by_cid(self, account: int, cid: str) -> OrderState | None:
        a = self.accounts.get(account)
        if a is None:
            return None
        key = a.cids.get(cid)
        if key is None:
            return None
        return a.open.get(key) or a.closed.get(key)

    def open_orders(self, account: int, symbol: int = 0) -> list[OrderState]:
        a = self.accounts.get(account)
        if a is None:
            return []
        return [o for o in a.open.values() if not symbol or o.symbol == symbol]

    def fills(self, account: int, symbol: int = 0, limit: int = 100) -> list[Fill]:
        a = self.accounts.get(account)
        if a is None:
            return []
        out: list[Fill] = []
        for f in reversed(a.fills):
            if not symbol or f.symbol == symbol:
                out.append(f)
                if len(out) >= limit:
                    break
        out.reverse()
        return out

    def balance(self, account: int, asset: int) -> tuple[int, int]:
        a = self.accounts.get(account)
        return a.balances.get(asset, (0, 0)) if a is not None else (0, 0)

    def balances_json(self, account: int) -> list[dict[str, str]]:
        out = []
        for aid, asset in sorted(self.assets.items()):
            avail, locked = self.balance(account, aid)
            out.append({"asset": asset.name, "available": format_units(avail, asset.scale),
                        "locked": format_units(locked, asset.scale)})
        return out

    def order_json(self, st: OrderState) -> dict[str, Any]:
        return order_json(st, self.units[st.symbol])

    def fills_json(self, account: int, symbol: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return [fill_row_json(f, self.units[f.symbol]) for f in self.fills(account, symbol, limit)]

    def symbol_mode(self, symbol: int) -> int:
        """The effective mode: the stricter of the symbol's own and the global mode."""
        return max(self.modes.get(symbol, 0), self.global_mode)

    def statistics(self) -> dict[str, int]:
        return {"accounts": len(self.accounts), "open_orders": len(self.open_index),
                "closed_orders": sum(len(a.closed) for a in self.accounts.values()),
                "fills": sum(len(a.fills) for a in self.accounts.values()),
                "subscribed_accounts": len(self._subs), "last_seq": self.last_seq}
