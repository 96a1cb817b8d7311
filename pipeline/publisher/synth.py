"""A small plain-Python reference matcher that journals EVENT records (tests and benches).

It follows the event contract of pipeline/records.py (ACCEPTED, TRADE with maker_leaves / leaves,
CANCELED / EXPIRED with the removed lots, REJECTED, ``last = 1`` on each command's final event),
price-time priority, GTC / IOC / FOK, MARKET, post-only and self-trade prevention. It keeps no
balances (every order is funded) and emits one BALANCE event after each trade-producing command,
so consumers see events that do not touch the book. It exists so the market-data derivation can be
tested and benched without the numba engine; the property test also runs against the real engine
(``engine.Engine``) when it is importable. Deterministic: time advances ``step_ns`` per command.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from pipeline.config import Config
from pipeline.records import (
    COMMAND,
    EVENT,
    CancelReason,
    CancelScope,
    Cmd,
    CmdFlag,
    Ev,
    ExpireReason,
    OrdType,
    RejectReason,
    Side,
    Stp,
    Tif,
)


class _Order:
    __slots__ = ("oid", "account", "symbol", "side", "price", "leaves")

    def __init__(self, oid: int, account: int, symbol: int, side: int, price: int, leaves: int) -> None:
        self.oid, self.account, self.symbol, self.side = oid, account, symbol, side
        self.price, self.leaves = price, leaves


class RefEngine:
    def __init__(self, cfg: Config, t0_ns: int = 1_700_000_000_000_000_000,
                 step_ns: int = 1_000_000) -> None:
        self.k = {s.symbol_id: s.k for s in cfg.symbols}
        self.levels: dict[tuple[int, int], dict[int, deque[_Order]]] = {}
        self.orders: dict[int, _Order] = {}
        self.seq = 0
        self.trade_id = 0
        self.now = t0_ns
        self.step_ns = step_ns
        self._out: list[dict[str, int]] = []

    # -- public -----------------------------------------------------------------------------------
    def apply(self, cmds: np.ndarray) -> np.ndarray:
        self._out = []
        for c in cmds:
            self.seq += 1
            self.now += self.step_ns
            start = len(self._out)
            self._one(c)
            if len(self._out) == start:
                self._ev(c, Ev.ACK)
            self._out[-1]["last"] = 1
        ev = np.zeros(len(self._out), EVENT)
        for i, d in enumerate(self._out):
            for k, v in d.items():
                ev[i][k] = v
        return ev

    def open_orders(self) -> list[tuple[int, int]]:
        """(order id, account) of every resting order."""
        return [(o.oid, o.account) for o in self.orders.values()]

    def book(self, symbol: int, depth: int = 1 << 30) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids best first, asks best first) as (price ticks, total lots)."""
        out = []
        for side in (Side.BUY, Side.SELL):
            lv = self.levels.get((symbol, side), {})
            prices = sorted(lv, reverse=side == Side.BUY)[:depth]
            out.append([(p, sum(o.leaves for o in lv[p])) for p in prices])
        return out[0], out[1]

    # -- internals --------------------------------------------------------------------------------
    def _ev(self, c: np.void, kind: int, **f: int) -> dict[str, int]:
        d = {"seq": self.seq, "ts_ns": self.now, "kind": int(kind), "conn": int(c["conn"]),
             "req": int(c["req"]), "symbol": int(c["symbol"]), "account": int(c["account"]), **f}
        self._out.append(d)
        return d

    def _one(self, c: np.void) -> None:
        kind = int(c["kind"])
        if kind == Cmd.NEW_ORDER:
            self._new(c)
        elif kind == Cmd.CANCEL:
            o = self.orders.get(int(c["order_id"]))
            if o is None or o.account != int(c["account"]) or int(c["symbol"]) not in (0, o.symbol):
                self._ev(c, Ev.REJECTED, reason=RejectReason.UNKNOWN_ORDER)
                return
            self._remove(o)
            self._ev(c, Ev.CANCELED, order_id=o.oid, price=o.price, qty=o.leaves, side=o.side,
                     reason=CancelReason.USER, account=o.account, leaves=0)
        elif kind == Cmd.CANCEL_ALL:
            sym = int(c["symbol"])
            for o in sorted((o for o in self.orders.values() if o.symbol == sym), key=lambda o: o.oid):
                self._remove(o)
                self._ev(c, Ev.CANCELED, order_id=o.oid, price=o.price, qty=o.leaves, side=o.side,
                         reason=CancelReason.CANCEL_ALL, account=o.account, leaves=0)

    def _remove(self, o: _Order) -> None:
        lv = self.levels[(o.symbol, o.side)]
        q = lv[o.price]
        q.remove(o)
        if not q:
            del lv[o.price]
        del self.orders[o.oid]

    def _crossing(self, sym: int, side: int, price: int, market: bool) -> list[int]:
        lv = self.levels.get((sym, Side.SELL if side == Side.BUY else Side.BUY), {})
        if side == Side.BUY:
            return sorted(p for p in lv if market or p <= price)
        return sorted((p for p in lv if market or p >= price), reverse=True)

    def _new(self, c: np.void) -> None:
        sym, side, price, qty = int(c["symbol"]), int(c["side"]), int(c["price"]), int(c["qty"])
        otype, tif, stp, flags = int(c["otype"]), int(c["tif"]), int(c["stp"]), int(c["flags"])
        acct = int(c["account"])
        market = otype == OrdType.MARKET
        base = {"side": side, "otype": otype, "tif": tif, "stp": stp, "flags": flags}
        if qty <= 0 or (not market and price <= 0) or sym not in self.k:
            self._ev(c, Ev.REJECTED, reason=RejectReason.BAD_REQUEST, **base)
            return
        cross = self._crossing(sym, side, price, market)
        opp = self.levels.get((sym, Side.SELL if side == Side.BUY else Side.BUY), {})
        if flags & CmdFlag.POST_ONLY and cross:
            self._ev(c, Ev.REJECTED, reason=RejectReason.WOULD_TAKE, price=price, qty=qty, **base)
            return
        oid = self.seq  # as the engine: an order's id is its command's seq
        self._ev(c, Ev.ACCEPTED, order_id=oid, price=price, qty=qty, leaves=qty, **base)
        if tif == Tif.FOK and sum(o.leaves for p in cross for o in opp[p]) < qty:
            self._ev(c, Ev.EXPIRED, order_id=oid, price=price, qty=qty, leaves=0,
                     reason=ExpireReason.FOK, **base)
            return
        leaves = qty
        traded = False
        done = False
        for p in cross:
            q = opp.get(p)
            while q and leaves > 0:
                mk = q[0]
                if mk.account == acct and stp != Stp.NONE:
                    if stp in (Stp.EXPIRE_MAKER, Stp.EXPIRE_BOTH):
                        self._remove(mk)
                        self._ev(c, Ev.EXPIRED, order_id=mk.oid, price=mk.price, qty=mk.leaves,
                                 side=mk.side, reason=ExpireReason.STP_MAKER, account=mk.account,
                                 leaves=0)
                    if stp in (Stp.EXPIRE_TAKER, Stp.EXPIRE_BOTH):
                        done = True
                        break
                    q = opp.get(p)
                    continue
                fill = min(leaves, mk.leaves)
                leaves -= fill
                mk.leaves -= fill
                self.trade_id += 1
                self._ev(c, Ev.TRADE, order_id=oid, maker_order_id=mk.oid, price=p, qty=fill,
                         quote_qty=p * fill * self.k[sym], trade_id=self.trade_id,
                         maker_account=mk.account, maker_leaves=mk.leaves, leaves=leaves, **base)
                traded = True
                if mk.leaves == 0:
                    self._remove(mk)
                q = opp.get(p)
            if done or leaves == 0:
                break
        if leaves > 0:
            if done or market or tif != Tif.GTC:
                reason = (ExpireReason.STP_TAKER if done else ExpireReason.MARKET_NO_LIQUIDITY
                          if market else ExpireReason.IOC)
                self._ev(c, Ev.EXPIRED, order_id=oid, price=price, qty=leaves, leaves=0,
                         reason=reason, **base)
            else:
                o = _Order(oid, acct, sym, side, price, leaves)
                self.orders[oid] = o
                self.levels.setdefault((sym, side), {}).setdefault(price, deque()).append(o)
        if traded:
            self._ev(c, Ev.BALANCE, available=0, locked=0, asset=1)


def random_commands(rng: np.random.Generator, n: int, symbols: Sequence[int], *,
                    accounts: Sequence[int] = (3, 4, 5, 6, 7), mid: int = 10_000,
                    spread: int = 20, lots: tuple[int, int] = (1, 20),
                    open_orders: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """``n`` random commands: mostly limit orders within ``spread`` ticks of ``mid`` (so books
    build up and cross), some IOC / FOK / MARKET / post-only, every STP mode, cancels of orders in
    ``open_orders`` ((order id, account) pairs; stale ones are refused by the engine) and rare
    cancel-alls of a symbol."""
    c = np.zeros(n, COMMAND)
    for i in range(n):
        r = rng.random()
        rec = c[i]
        rec["symbol"] = symbols[int(rng.integers(len(symbols)))]
        rec["account"] = accounts[int(rng.integers(len(accounts)))]
        rec["conn"], rec["req"] = 1, i + 1
        if r < 0.2 and open_orders:
            oid, acct = open_orders[int(rng.integers(len(open_orders)))]
            rec["kind"] = Cmd.CANCEL
            rec["order_id"] = oid
            rec["account"] = acct
            rec["symbol"] = 0
            continue
        if r < 0.203:
            rec["kind"] = Cmd.CANCEL_ALL
            rec["scope"] = CancelScope.SYMBOL
            continue
        rec["kind"] = Cmd.NEW_ORDER
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        rec["side"] = side
        off = int(rng.integers(-spread, spread + 1))
        rec["price"] = max(1, mid + (off if side == Side.BUY else -off))
        rec["qty"] = int(rng.integers(lots[0], lots[1] + 1))
        rec["stp"] = (Stp.EXPIRE_TAKER, Stp.EXPIRE_MAKER, Stp.EXPIRE_BOTH, Stp.NONE)[int(rng.integers(4))]
        x = rng.random()
        rec["otype"], rec["tif"] = OrdType.LIMIT, Tif.GTC
        if x < 0.08:
            rec["tif"] = Tif.IOC
        elif x < 0.12:
            rec["tif"] = Tif.FOK
        elif x < 0.16:
            rec["otype"], rec["tif"], rec["price"] = OrdType.MARKET, Tif.IOC, 0
        elif x < 0.22:
            rec["flags"] = CmdFlag.POST_ONLY
    return c


def deposits(accounts: Sequence[int], assets: Sequence[int], amount: int) -> np.ndarray:
    """One DEPOSIT per (account, asset)."""
    c = np.zeros(len(accounts) * len(assets), COMMAND)
    for i, (a, s) in enumerate((a, s) for a in accounts for s in assets):
        c[i]["kind"] = Cmd.DEPOSIT
        c[i]["account"] = a
        c[i]["asset"] = s
        c[i]["amount"] = amount
    return c
