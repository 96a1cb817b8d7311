"""NEW_ORDER of the reference engine (README §2-§4), plain Python."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine.fees import fee_ceil, fee_step, quote_spend_cap
from pipeline.records import CmdFlag, Ev, ExpireReason, OrdType, RejectReason, Side, Stp, Tif

if TYPE_CHECKING:
    from engine.reference import ReferenceEngine

R = RejectReason
X = ExpireReason


def _validate(eng: ReferenceEngine, c: np.void) -> tuple[int, int, int]:
    """(reject reason or 0, hold, limit price)."""
    sym, side, otype, tif = int(c["symbol"]), int(c["side"]), int(c["otype"]), int(c["tif"])
    stp, flags, price, qty, account = (int(c["stp"]), int(c["flags"]), int(c["price"]),
                                       int(c["qty"]), int(c["account"]))
    if sym not in eng.syms:
        return R.UNKNOWN_SYMBOL, 0, 0
    post, quote = bool(flags & CmdFlag.POST_ONLY), bool(flags & CmdFlag.QUOTE_QTY)
    if (side not in (1, 2) or otype not in (1, 2) or tif not in (1, 2, 3) or stp not in (1, 2, 3, 4)
            or flags & ~(CmdFlag.POST_ONLY | CmdFlag.QUOTE_QTY)
            or (post and (otype != OrdType.LIMIT or tif != Tif.GTC))
            or (quote and (otype != OrdType.MARKET or side != Side.BUY or tif == Tif.FOK))
            or (otype == OrdType.MARKET and (tif == Tif.GTC or price != 0))):
        return R.BAD_REQUEST, 0, 0
    if not eng.valid_account(account):
        return R.UNKNOWN_ACCOUNT, 0, 0
    mr = eng.mode_reject(sym, False)
    if mr:
        return mr, 0, 0
    s = eng.syms[sym]
    if otype == OrdType.LIMIT and not 1 <= price <= s.max_price_ticks:
        return R.INVALID_PRICE, 0, 0
    if quote:
        if not 1 <= qty <= s.max_price_ticks * s.max_qty_lots * s.k:
            return R.INVALID_QUANTITY, 0, 0
        if qty < s.min_notional_minor:
            return R.MIN_NOTIONAL, 0, 0
    else:
        if not s.min_qty_lots <= qty <= s.max_qty_lots:
            return R.INVALID_QUANTITY, 0, 0
        if otype == OrdType.LIMIT and price * qty * s.k < s.min_notional_minor:
            return R.MIN_NOTIONAL, 0, 0
    cid = bytes(c["cid"])
    if any(cid) and (account, cid) in eng.cids:
        return R.DUPLICATE_CLIENT_ORDER_ID, 0, 0
    opp = Side.SELL if side == Side.BUY else Side.BUY
    b = eng.best(sym, opp)
    if post and b is not None and (price >= b if side == Side.BUY else price <= b):
        return R.WOULD_TAKE, 0, 0
    lim = price
    if otype == OrdType.MARKET and b is not None:
        band = b * s.price_band_bps // 10000
        lim = min(b + band, s.max_price_ticks) if side == Side.BUY else max(b - band, 1)
    if side == Side.SELL:
        hold, asset = qty * s.lot_minor, s.base_id
    else:
        asset = s.quote_id
        mb, tb = s.maker_fee_bps, s.taker_fee_bps
        if quote:
            hold = qty
        elif otype == OrdType.LIMIT:
            n = price * qty * s.k
            if post:
                hold = n + fee_ceil(n, mb)
            elif tif != Tif.GTC:
                hold = n + fee_ceil(n, tb)
            else:
                hold = n + fee_ceil(n, max(mb, tb)) + (1 if mb > 0 and tb > 0 else 0)
        elif b is not None:
            m = lim * qty * s.k
            hold = m + fee_ceil(m, tb)
        else:
            hold = 0
    if eng.row(account, asset)[0] < hold:
        return R.INSUFFICIENT_BALANCE, 0, 0
    if tif == Tif.GTC and otype == OrdType.LIMIT:
        levels = eng.book[(sym, side)]
        if len(eng.orders) >= eng.max_orders or (price not in levels and len(levels) >= eng.max_levels):
            return R.CAPACITY_EXHAUSTED, 0, 0
    return 0, hold, lim


def _crosses(side: int, p: int, lim: int) -> bool:
    return p <= lim if side == Side.BUY else p >= lim


def _fok_ok(eng: ReferenceEngine, sym: int, side: int, lim: int, qty: int, account: int,
            stp: int) -> bool:
    opp = Side.SELL if side == Side.BUY else Side.BUY
    levels = eng.book[(sym, opp)]
    got = touched = 0
    for p in sorted(levels, reverse=(opp == Side.BUY)):
        if not _crosses(side, p, lim):
            break
        for mid in levels[p]:
            if got >= qty:
                return True
            if touched == eng.max_makers:
                return False
            m = eng.orders[mid]
            if m.account == account and stp != Stp.NONE:
                if stp != Stp.EXPIRE_MAKER:
                    return False
            else:
                got += m.leaves
            touched += 1
    return got >= qty


def new_order(eng: ReferenceEngine, c: np.void) -> None:
    from engine.reference import Reject, ROrder

    reason, hold, lim = _validate(eng, c)
    if reason:
        raise Reject(reason)
    before = eng.snap_bal()
    sym, side, otype, tif = int(c["symbol"]), int(c["side"]), int(c["otype"]), int(c["tif"])
    stp, flags, price, qty, account = (int(c["stp"]), int(c["flags"]), int(c["price"]),
                                       int(c["qty"]), int(c["account"]))
    cid = bytes(c["cid"])
    s = eng.syms[sym]
    seq = eng.cur["seq"]
    quote = bool(flags & CmdFlag.QUOTE_QTY)
    hasset = s.quote_id if side == Side.BUY else s.base_id
    opp = Side.SELL if side == Side.BUY else Side.BUY
    mb, tb, k, lot = s.maker_fee_bps, s.taker_fee_bps, s.k, s.lot_minor
    eng.move(account, hasset, -hold, hold)
    lock = hold
    taker = {"order_id": seq, "account": account, "symbol": sym, "side": side, "otype": otype,
             "tif": tif, "flags": flags, "stp": stp}
    eng.emit(Ev.ACCEPTED, **taker, price=price, qty=qty, leaves=qty, cid=cid)
    rem, stop, cum, touched = qty, "", 0, 0
    cap = quote_spend_cap(qty, tb) if quote else 0
    if tif == Tif.FOK and not _fok_ok(eng, sym, side, lim, qty, account, stp):
        stop = "fok"
    else:
        while quote or rem > 0:
            p = eng.best(sym, opp)
            if p is None:
                stop = "noliq"
                break
            if not _crosses(side, p, lim):
                stop = "limit"
                break
            if quote and cap - cum < p * k:
                stop = "budget"
                break
            if touched == eng.max_makers:
                stop = "matchlimit"
                break
            m = eng.orders[eng.book[(sym, opp)][p][0]]
            if m.account == account and stp != Stp.NONE:
                if stp == Stp.EXPIRE_TAKER:
                    stop = "stp"
                    break
                eng.emit(Ev.EXPIRED, **eng.order_fields(m), qty=m.leaves, reason=X.STP_MAKER)
                eng.remove(m)
                touched += 1
                if stp == Stp.EXPIRE_BOTH:
                    stop = "stp"
                    break
                continue
            q = min(m.leaves, (cap - cum) // (p * k)) if quote else min(rem, m.leaves)
            n = p * q * k
            tf, mf = fee_step(cum, n, tb), fee_step(m.cum, n, mb)
            cum += n
            m.cum += n
            m.leaves -= q
            if side == Side.BUY:
                eng.move(account, s.quote_id, 0, -(n + tf))
                lock -= n + tf
                eng.move(account, s.base_id, q * lot, 0)
                eng.move(m.account, s.base_id, 0, -q * lot)
                m.locked -= q * lot
                eng.move(m.account, s.quote_id, n - mf, 0)
            else:
                eng.move(account, s.base_id, 0, -q * lot)
                lock -= q * lot
                eng.move(account, s.quote_id, n - tf, 0)
                eng.move(m.account, s.quote_id, 0, -(n + mf))
                m.locked -= n + mf
                eng.move(m.account, s.base_id, q * lot, 0)
            eng.move(eng.fee, s.quote_id, tf + mf, 0)
            rem = qty - cum - fee_ceil(cum, tb) if quote else rem - q
            eng.emit(Ev.TRADE, **taker, price=p, qty=q, trade_id=eng.next_trade,
                     maker_order_id=m.id, maker_account=m.account, quote_qty=n, taker_fee=tf,
                     maker_fee=mf, maker_leaves=m.leaves, leaves=rem)
            eng.next_trade += 1
            touched += 1
            if m.leaves == 0:
                eng.remove(m)
    if rem > 0 and otype == OrdType.LIMIT and tif == Tif.GTC and stop in ("noliq", "limit"):
        if side == Side.BUY:
            r = price * rem * k
            keep = r + fee_ceil(r, mb)
        else:
            keep = rem * lot
        eng.move(account, hasset, lock - keep, keep - lock)
        o = ROrder(id=seq, account=account, symbol=sym, side=side, price=price, qty=qty,
                   leaves=rem, locked=keep, cum=0, stp=stp, flags=flags, tif=tif, otype=otype,
                   ts=eng.cur["ts"], cid=cid)
        eng.orders[seq] = o
        eng.book[(sym, side)].setdefault(price, []).append(seq)
        if any(cid):
            eng.cids[(account, cid)] = seq
    else:
        if rem > 0:
            if tif == Tif.FOK:
                xr = X.FOK
            elif stop == "stp":
                xr = X.STP_TAKER
            elif stop == "matchlimit":
                xr = X.MATCH_LIMIT
            elif otype == OrdType.LIMIT:
                xr = X.IOC
            else:
                xr = {"budget": X.QUOTE_BUDGET, "noliq": X.MARKET_NO_LIQUIDITY}.get(stop, X.PRICE_BAND)
            eng.emit(Ev.EXPIRED, **taker, price=price, qty=rem, reason=xr, cid=cid)
        eng.move(account, hasset, lock, -lock)
    eng.balance_events(before)
