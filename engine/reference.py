"""Plain-Python reference engine: README.md restated as simply as possible, for differential tests.

Slow on purpose (dicts, lists, full scans: best price by ``max``/``min`` over the levels, BALANCE
events by diffing every balance before and after a command, the state hash recomputed from scratch
at each CHECKPOINT). It shares only the record layouts and ``engine.fees`` (the one rounding rule)
with the kernels. ``apply(cmds, ts_ns)`` returns the EVENT records the kernels must produce.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from engine.fees import fee_ceil, fee_step, quote_spend_cap
from engine.layout import DEFAULT_MAX_MAKERS, MAX_BALANCE
from engine.reference_hash import balance_term, global_term, mode_term, order_term
from pipeline.config import Config, Symbol
from pipeline.records import (
    EVENT,
    GLOBAL_SYMBOL,
    CancelReason,
    CancelScope,
    Cmd,
    CmdFlag,
    Ev,
    ExpireReason,
    Mode,
    OrdType,
    RejectReason,
    Side,
    Stp,
    Tif,
)

R = RejectReason


@dataclasses.dataclass
class ROrder:
    id: int
    account: int
    symbol: int
    side: int
    price: int
    qty: int
    leaves: int
    locked: int
    cum: int
    stp: int
    flags: int
    tif: int
    otype: int
    ts: int
    cid: bytes


class Reject(Exception):
    def __init__(self, reason: int) -> None:
        self.reason = reason


class ReferenceEngine:
    def __init__(self, cfg: Config, max_makers_per_order: int = DEFAULT_MAX_MAKERS) -> None:
        e = cfg.engine
        self.syms: dict[int, Symbol] = {s.symbol_id: s for s in cfg.symbols}
        self.n_assets = len(cfg.assets)
        self.max_orders, self.max_accounts, self.max_levels = e.max_orders, e.max_accounts, e.max_levels
        self.fee, self.ext, self.every = e.fee_account, e.external_account, e.checkpoint_every
        self.max_makers = max_makers_per_order
        self.bal: dict[tuple[int, int], list[int]] = {}
        self.orders: dict[int, ROrder] = {}
        self.book: dict[tuple[int, int], dict[int, list[int]]] = {
            (s, side): {} for s in self.syms for side in (Side.BUY, Side.SELL)}
        self.cids: dict[tuple[int, bytes], int] = {}
        self.sym_mode = {s: 0 for s in self.syms}
        self.sym_lag = {s: 0 for s in self.syms}
        self.global_mode = self.global_lag = self.wd_halt = 0
        self.next_trade = 1
        self.seq = 0
        self.events: list[dict[str, Any]] = []
        self.cur: dict[str, Any] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def row(self, a: int, asset: int) -> list[int]:
        return self.bal.setdefault((a, asset), [0, 0])

    def move(self, a: int, asset: int, d_av: int, d_lk: int) -> None:
        r = self.row(a, asset)
        r[0] += d_av
        r[1] += d_lk

    def emit(self, kind: int, **f: Any) -> dict[str, Any]:
        ev = {"seq": self.cur["seq"], "ts_ns": self.cur["ts"], "conn": self.cur["conn"],
              "req": self.cur["req"], "kind": int(kind), **f}
        self.events.append(ev)
        return ev

    def balance_events(self, before: dict[tuple[int, int], tuple[int, int]]) -> None:
        for key in sorted(self.bal):
            a, asset = key
            now = tuple(self.bal[key])
            if now != before.get(key, (0, 0)) and a not in (self.fee, self.ext):
                self.emit(Ev.BALANCE, account=a, asset=asset, available=now[0], locked=now[1])

    def snap_bal(self) -> dict[tuple[int, int], tuple[int, int]]:
        return {k: (v[0], v[1]) for k, v in self.bal.items()}

    def best(self, sym: int, side: int) -> int | None:
        lv = self.book[(sym, side)]
        if not lv:
            return None
        return max(lv) if side == Side.BUY else min(lv)

    def mode_reject(self, sym: int, cancel: bool) -> int:
        def eff(mode: int, lag: int) -> int:
            return max(mode, Mode.SOFT_HALT if lag else Mode.NORMAL)

        es = eff(self.sym_mode[sym], self.sym_lag[sym])
        eg = eff(self.global_mode, self.global_lag)
        e = max(es, eg)
        if e == Mode.NORMAL or (cancel and e != Mode.HARD_HALT):
            return 0
        if e == Mode.CANCEL_ONLY:
            return R.SYMBOL_CANCEL_ONLY
        return R.MARKET_HALTED if eg > es else R.SYMBOL_HALTED

    def order_fields(self, o: ROrder) -> dict[str, Any]:
        return {"order_id": o.id, "account": o.account, "symbol": o.symbol, "side": o.side,
                "otype": o.otype, "tif": o.tif, "flags": o.flags, "stp": o.stp, "price": o.price,
                "cid": o.cid}

    def hold_asset(self, sym: int, side: int) -> int:
        s = self.syms[sym]
        return s.quote_id if side == Side.BUY else s.base_id

    def remove(self, o: ROrder) -> None:
        if o.locked:
            self.move(o.account, self.hold_asset(o.symbol, o.side), o.locked, -o.locked)
            o.locked = 0
        lv = self.book[(o.symbol, o.side)]
        lv[o.price].remove(o.id)
        if not lv[o.price]:
            del lv[o.price]
        del self.orders[o.id]
        if any(o.cid):
            del self.cids[(o.account, o.cid)]

    # -- dispatch ----------------------------------------------------------------------------------
    def apply(self, cmds: np.ndarray, ts_ns: int) -> np.ndarray:
        self.events = []
        for c in cmds:
            self.seq += 1
            self.cur = {"seq": self.seq, "ts": ts_ns, "conn": int(c["conn"]), "req": int(c["req"]),
                        "account": int(c["account"])}
            start = len(self.events)
            self.one(c)
            assert len(self.events) > start, "every command answers"
            self.events[-1]["last"] = 1
            if self.every > 0 and self.seq % self.every == 0:
                self.emit(Ev.CHECKPOINT, state_hash=self.state_hash(), conn=0, req=0, last=1)
        return to_records(self.events)

    def one(self, c: np.void) -> None:
        kind = int(c["kind"])
        try:
            if kind == Cmd.NEW_ORDER:
                self.new_order(c)
            elif kind == Cmd.CANCEL:
                self.cancel(c)
            elif kind == Cmd.CANCEL_ALL:
                self.cancel_all(c)
            elif kind in (Cmd.SET_MODE, Cmd.SET_LAG_HALT):
                self.set_mode(c, kind == Cmd.SET_LAG_HALT)
            elif kind in (Cmd.DEPOSIT, Cmd.WITHDRAW):
                self.transfer(c, kind == Cmd.WITHDRAW)
            elif kind == Cmd.WITHDRAWALS_HALT:
                if int(c["mode"]) > 1:
                    raise Reject(R.BAD_REQUEST)
                self.wd_halt = int(c["mode"])
                self.emit(Ev.WITHDRAWALS, account=self.cur["account"], mode=self.wd_halt)
            elif kind in (Cmd.SNAPSHOT, Cmd.HEARTBEAT):
                self.emit(Ev.ACK, account=self.cur["account"], reason=kind,
                          symbol=int(c["symbol"]), otype=int(c["otype"]))
            else:
                raise Reject(R.BAD_REQUEST)
        except Reject as rj:
            self.reject(c, rj.reason)

    def reject(self, c: np.void, reason: int) -> None:
        kind = int(c["kind"])
        f: dict[str, Any] = {"account": self.cur["account"], "reason": reason, "side": int(c["side"]),
                             "otype": int(c["otype"]), "tif": int(c["tif"]),
                             "flags": int(c["flags"]), "stp": int(c["stp"]),
                             "cid": bytes(c["cid"])}
        if kind == Cmd.CANCEL:
            f["order_id"] = int(c["order_id"])
        if kind == Cmd.NEW_ORDER:
            f["price"], f["qty"] = int(c["price"]), int(c["qty"])
        if kind in (Cmd.DEPOSIT, Cmd.WITHDRAW):
            f["qty"], f["asset"] = int(c["amount"]), int(c["asset"])
        else:
            f["symbol"] = int(c["symbol"])
        self.emit(Ev.REJECTED, **f)

    def valid_account(self, a: int) -> bool:
        return 1 <= a < self.max_accounts

    # -- orders ------------------------------------------------------------------------------------
    def new_order(self, c: np.void) -> None:
        from engine.reference_match import new_order

        new_order(self, c)

    def cancel(self, c: np.void) -> None:
        flags, account, sym = int(c["flags"]), int(c["account"]), int(c["symbol"])
        cid = bytes(c["cid"])
        if flags & ~(CmdFlag.BY_CID | CmdFlag.OPERATOR | CmdFlag.DISCONNECT) or (flags & CmdFlag.BY_CID and not any(cid)):
            raise Reject(R.BAD_REQUEST)
        if not self.valid_account(account):
            raise Reject(R.UNKNOWN_ACCOUNT)
        if sym != 0 and sym not in self.syms:
            raise Reject(R.UNKNOWN_SYMBOL)
        if flags & CmdFlag.BY_CID:
            oid = self.cids.get((account, cid))
        else:
            oid = int(c["order_id"])
        o = self.orders.get(oid) if oid is not None else None
        if o is None or o.account != account or (sym != 0 and o.symbol != sym):
            raise Reject(R.UNKNOWN_ORDER)
        mr = self.mode_reject(o.symbol, True)
        if mr:
            raise Reject(mr)
        self.cancel_step(o, self.cancel_reason(flags, CancelReason.USER))

    def cancel_reason(self, flags: int, default: CancelReason) -> CancelReason:
        if flags & CmdFlag.OPERATOR or self.cur["conn"] == 0:
            return CancelReason.ADMIN
        if flags & CmdFlag.DISCONNECT:
            return CancelReason.DISCONNECT
        return default

    def cancel_step(self, o: ROrder, reason: int) -> None:
        before = self.snap_bal()
        self.emit(Ev.CANCELED, **self.order_fields(o), qty=o.leaves, reason=reason)
        self.remove(o)
        self.balance_events(before)

    def cancel_all(self, c: np.void) -> None:
        scope, sym, account = int(c["scope"]), int(c["symbol"]), int(c["account"])
        if scope not in (1, 2, 3):
            raise Reject(R.BAD_REQUEST)
        if scope != CancelScope.ACCOUNT and sym not in self.syms:
            raise Reject(R.UNKNOWN_SYMBOL)
        if scope != CancelScope.SYMBOL and not self.valid_account(account):
            raise Reject(R.UNKNOWN_ACCOUNT)
        if scope != CancelScope.ACCOUNT:
            mr = self.mode_reject(sym, True)
            if mr:
                raise Reject(mr)
        if scope == CancelScope.SYMBOL:
            ids = [o.id for o in self.orders.values() if o.symbol == sym]
        elif scope == CancelScope.ACCOUNT:
            ids = [o.id for o in self.orders.values()
                   if o.account == account and self.mode_reject(o.symbol, True) == 0]
        else:
            ids = [o.id for o in self.orders.values() if o.account == account and o.symbol == sym]
        if not ids:
            self.emit(Ev.ACK, account=account, reason=Cmd.CANCEL_ALL, symbol=sym, otype=scope)
            return
        reason = self.cancel_reason(int(c["flags"]), CancelReason.CANCEL_ALL)
        for oid in sorted(ids):
            self.cancel_step(self.orders[oid], reason)

    # -- admin -------------------------------------------------------------------------------------
    def set_mode(self, c: np.void, lag: bool) -> None:
        sym, v = int(c["symbol"]), int(c["mode"])
        if sym != GLOBAL_SYMBOL and sym not in self.syms:
            raise Reject(R.UNKNOWN_SYMBOL)
        if v > (1 if lag else Mode.HARD_HALT):
            raise Reject(R.BAD_REQUEST)
        if sym == GLOBAL_SYMBOL:
            if lag:
                self.global_lag = v
            else:
                self.global_mode = v
            mode, flag = self.global_mode, self.global_lag
        else:
            if lag:
                self.sym_lag[sym] = v
            else:
                self.sym_mode[sym] = v
            mode, flag = self.sym_mode[sym], self.sym_lag[sym]
        self.emit(Ev.MODE_CHANGED, account=self.cur["account"], symbol=sym,
                  mode=max(mode, Mode.SOFT_HALT if flag else 0), qty=mode, price=flag,
                  reason=Cmd.SET_LAG_HALT if lag else Cmd.SET_MODE)

    def transfer(self, c: np.void, withdraw: bool) -> None:
        account, asset, amount = int(c["account"]), int(c["asset"]), int(c["amount"])
        if not self.valid_account(account):
            raise Reject(R.UNKNOWN_ACCOUNT)
        if account == self.ext or not 1 <= asset <= self.n_assets or amount <= 0:
            raise Reject(R.BAD_REQUEST)
        if not withdraw and -self.row(self.ext, asset)[0] + amount > MAX_BALANCE:
            raise Reject(R.BAD_REQUEST)
        if withdraw and self.wd_halt:
            raise Reject(R.WITHDRAWALS_HALTED)
        if withdraw and self.row(account, asset)[0] < amount:
            raise Reject(R.INSUFFICIENT_BALANCE)
        d = -amount if withdraw else amount
        before = self.snap_bal()
        self.emit(Ev.TRANSFER, account=account, asset=asset, qty=d)
        self.move(account, asset, d, 0)
        self.move(self.ext, asset, -d, 0)
        self.balance_events(before)

    # -- hash ----------------------------------------------------------------------------------------
    def state_hash(self) -> int:
        h = 0
        for (a, asset), (av, lk) in self.bal.items():
            if av or lk:
                h += balance_term(a, asset, av, lk)
        for o in self.orders.values():
            h += order_term(o.id, o.account, o.symbol, o.side, o.price, o.qty, o.leaves, o.locked,
                            o.cum, o.stp, o.flags, o.tif, o.otype, o.ts, o.cid)
        for s in self.syms:
            if self.sym_mode[s] or self.sym_lag[s]:
                h += mode_term(s, self.sym_mode[s], self.sym_lag[s])
        h += global_term(self.global_mode, self.global_lag, self.wd_halt, self.next_trade)
        return h & 0xFFFFFFFFFFFFFFFF


def to_records(events: list[dict[str, Any]]) -> np.ndarray:
    out = np.zeros(len(events), EVENT)
    for i, ev in enumerate(events):
        for k, v in ev.items():
            if k == "cid":
                out[i]["cid"] = np.frombuffer(v, np.uint8)
            else:
                out[i][k] = v
    return out


# re-exported for reference_match
__all__ = ["ReferenceEngine", "ROrder", "Reject", "to_records", "fee_ceil", "fee_step",
           "quote_spend_cap", "ExpireReason", "OrdType", "Stp", "Tif"]
