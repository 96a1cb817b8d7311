"""Synthetic event streams for tests and the bench (until the real engine can drive them).

``Synth`` hands out EVENT batches the way the engine would journal them: one command seq per
batch entry, a taker order that sweeps ``fills`` makers produces that many TRADEs under one seq
(each followed by nothing else here), deposits produce a TRANSFER. Accounts start with deposits
large enough that no balance ever goes negative. Fees are rounded up, in the venue's favour.
Deterministic for a given seed.
"""

from __future__ import annotations

import time

import numpy as np

from pipeline.records import COMMAND, EVENT, Cmd, Ev, Side
from pipeline.wal import FrameKind, WalWriter
from settle.catalog import Catalog
from settle.postings import concat_events as concat


def trade_event(seq: int, *, symbol: int = 1, taker: int = 10, maker: int = 20,
                side: int = Side.BUY, qty: int = 3, price: int = 100, quote_qty: int | None = None,
                taker_fee: int = 7, maker_fee: int = 2, trade_id: int = 1,
                ts_ns: int = 1_000) -> np.ndarray:
    """One hand-built TRADE record (a 1-element EVENT array)."""
    return event(seq, Ev.TRADE, ts_ns=ts_ns, symbol=symbol, account=taker, maker_account=maker,
                 side=side, qty=qty, price=price,
                 quote_qty=price * qty if quote_qty is None else quote_qty,
                 taker_fee=taker_fee, maker_fee=maker_fee, trade_id=trade_id)


def transfer_event(seq: int, *, account: int = 10, asset: int = 1, amount: int = 1_000,
                   ts_ns: int = 1_000) -> np.ndarray:
    """One hand-built TRANSFER record (+ deposit, - withdrawal)."""
    return event(seq, Ev.TRANSFER, ts_ns=ts_ns, account=account, asset=asset, qty=amount)


def event(seq: int, kind: int, **fields: object) -> np.ndarray:
    """One EVENT record of any kind with the given fields (the rest zero)."""
    ev = np.zeros(1, EVENT)
    ev["seq"], ev["kind"], ev["last"] = seq, kind, 1
    for k, v in fields.items():
        ev[k] = v
    return ev


def fee(notional: int | np.ndarray, bps: int) -> np.ndarray:
    return -((-np.asarray(notional, np.int64) * bps) // 10_000)


class Synth:
    def __init__(self, catalog: Catalog, *, accounts: int = 100, first_account: int = 1000,
                 seed: int = 7, taker_bps: int = 5, maker_bps: int = 2) -> None:
        self.catalog = catalog
        self.rng = np.random.default_rng(seed)
        self.accounts = np.arange(first_account, first_account + accounts, dtype=np.uint32)
        self.seq = 0
        self.trade_id = 0
        self.taker_bps, self.maker_bps = taker_bps, maker_bps
        self.symbols = [s for s in catalog.symbols]

    def _new(self, n: int, ts_ns: int) -> np.ndarray:
        ev = np.zeros(n, EVENT)
        ev["ts_ns"] = ts_ns
        ev["last"] = 1
        return ev

    def deposits(self, amount: int = 10**15, ts_ns: int = 0) -> np.ndarray:
        """One TRANSFER per (account, asset), each under its own seq."""
        assets = [a.asset_id for a in self.catalog.assets]
        n = len(self.accounts) * len(assets)
        ev = self._new(n, ts_ns)
        ev["kind"] = Ev.TRANSFER
        ev["account"] = np.repeat(self.accounts, len(assets))
        ev["asset"] = np.tile(np.array(assets, np.uint32), len(self.accounts))
        ev["qty"] = amount
        ev["seq"] = np.arange(self.seq + 1, self.seq + 1 + n, dtype=np.uint64)
        self.seq += n
        return ev

    def trades(self, commands: int, fills: int = 1, ts_ns: int = 0,
               withdraw_every: int = 0) -> np.ndarray:
        """``commands`` taker commands of ``fills`` TRADEs each (plus a WITHDRAW TRANSFER command
        every ``withdraw_every`` commands when > 0)."""
        rng = self.rng
        n = commands * fills
        ev = self._new(n, ts_ns)
        ev["kind"] = Ev.TRADE
        cmd_seq = np.arange(self.seq + 1, self.seq + 1 + commands, dtype=np.uint64)
        ev["seq"] = np.repeat(cmd_seq, fills)
        self.seq += commands
        syms = np.array([s.symbol_id for s in self.symbols], np.uint16)
        ev["symbol"] = np.repeat(rng.choice(syms, commands), fills)
        ev["account"] = np.repeat(rng.choice(self.accounts, commands), fills)
        ev["side"] = np.repeat(rng.choice([Side.BUY, Side.SELL], commands), fills)
        ev["maker_account"] = rng.choice(self.accounts, n)
        ev["price"] = rng.integers(1_000, 100_000, n)
        ev["qty"] = rng.integers(1, 50, n)
        ev["quote_qty"] = ev["price"] * ev["qty"]  # synthetic notional: the ledger posts what a TRADE says
        ev["taker_fee"] = fee(ev["quote_qty"], self.taker_bps)
        ev["maker_fee"] = fee(ev["quote_qty"], self.maker_bps)
        ev["trade_id"] = np.arange(self.trade_id + 1, self.trade_id + 1 + n)
        self.trade_id += n
        ev["order_id"] = ev["seq"].astype(np.int64)
        ev["maker_order_id"] = ev["trade_id"] + 10**9
        ev["last"] = 0
        ev["last"][fills - 1::fills] = 1
        if withdraw_every > 0:
            parts = []
            for i in range(0, commands, withdraw_every):
                chunk = ev[i * fills:(i + withdraw_every) * fills]
                parts.append(chunk)
                w = self._new(1, ts_ns)
                w["kind"] = Ev.TRANSFER
                w["account"] = self.accounts[int(rng.integers(len(self.accounts)))]
                w["asset"] = self.catalog.assets[0].asset_id
                w["qty"] = -int(rng.integers(1, 1000))
                parts.append(w)
            ev = concat(parts)
            ev["seq"] = _renumber(ev)
            self.seq = int(ev["seq"][-1])
        return ev


def _renumber(ev: np.ndarray) -> np.ndarray:
    """Seqs contiguous again after inserting commands: one new seq per run of equal old seqs
    (a TRANSFER gets its own)."""
    old = ev["seq"].astype(np.int64)
    change = np.ones(len(ev), np.bool_)
    change[1:] = (old[1:] != old[:-1]) | (ev["kind"][1:] == Ev.TRANSFER) | (ev["kind"][:-1] == Ev.TRANSFER)
    return (int(old[0]) - 1 + np.cumsum(change)).astype(np.uint64)


def append_batches(writer: WalWriter, events: np.ndarray, seqs_per_batch: int = 64,
                   blobs: dict[int, bytes] | None = None, ts_ns: int | None = None,
                   sync: bool = True) -> int:
    """Journal ``events`` the way the engine does: per batch of ``seqs_per_batch`` command seqs a
    COMMANDS frame (placeholder commands; SET_MODE where a blob note is attached), the BLOB notes,
    then one EVENTS frame. Seqs must continue the WAL. Returns the last seq appended."""
    blobs = blobs or {}
    seqs = events["seq"].astype(np.int64)
    first_all, last_all = int(seqs[0]), int(seqs[-1])
    for first in range(first_all, last_all + 1, seqs_per_batch):
        last = min(last_all, first + seqs_per_batch - 1)
        cmds = np.zeros(last - first + 1, COMMAND)
        cmds["kind"] = Cmd.NEW_ORDER
        lo, hi = np.searchsorted(seqs, first, "left"), np.searchsorted(seqs, last, "right")
        evs = events[lo:hi]
        ts = int(evs["ts_ns"][0]) if ts_ns is None and len(evs) else (ts_ns or time.time_ns())
        for s in blobs:
            if first <= s <= last:
                cmds["kind"][s - first] = Cmd.SET_MODE
                cmds["symbol"][s - first] = 1
        writer.append(FrameKind.COMMANDS, first, len(cmds), cmds.tobytes(), ts)
        for s, note in sorted(blobs.items()):
            if first <= s <= last:
                writer.append(FrameKind.BLOB, s, 1, note, ts)
        writer.append(FrameKind.EVENTS, first, len(evs), evs.tobytes(), ts)
    if sync:
        writer.sync()
    return last_all
