"""L2 derivation: depth-view deltas equal a brute-force diff of the views, and an event stream
that does not fit the book is refused loudly instead of producing a wrong book."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.publisher.book import BookDeriver, SideBook
from pipeline.publisher.channels import DEPTHS
from pipeline.publisher.errors import BookInconsistency
from pipeline.publisher.views import view_diff
from pipeline.records import EVENT, Ev, OrdType, Side


@pytest.mark.parametrize("bid", [True, False])
def test_view_diff_equals_brute_force(bid: bool) -> None:
    rng = np.random.default_rng(11 if bid else 12)
    side = SideBook(bid)
    for _ in range(400):
        before = {p: side.qty[p] for p in side.top(2000)}
        old_views = {n: {p: side.qty[p] for p in side.top(n)} for n in DEPTHS}
        for _ in range(int(rng.integers(1, 12))):
            p = int(rng.integers(1, 160))
            cur = side.qty.get(p, 0)
            dq = int(rng.integers(-cur, 20)) if rng.random() < 0.6 else -cur
            side.add(p, dq, track=True)
        net = side.net_changes()
        assert net == {p: side.qty.get(p, 0) for p in set(before) | set(side.qty)
                       if side.qty.get(p, 0) != before.get(p, 0)}
        new_top = side.top(1000)
        for n in DEPTHS:
            new_view = {p: side.qty[p] for p in side.top(n)}
            old = old_views[n]
            want = sorted([(p, q) for p, q in new_view.items() if old.get(p) != q]
                          + [(p, 0) for p in old if p not in new_view], reverse=bid)
            got = view_diff(side, side.old_top or [], new_top, n, net) if net else []
            assert got == want, n
        side.end_batch()


def ev(kind: int, **f: int) -> np.ndarray:
    e = np.zeros(1, EVENT)
    e["kind"] = kind
    e["symbol"] = 1
    e["last"] = 1
    for k, v in f.items():
        e[k] = v
    return e


def rest(d: BookDeriver, oid: int, side: int, price: int, qty: int, seq: int) -> None:
    e = ev(Ev.ACCEPTED, seq=seq, order_id=oid, side=side, price=price, qty=qty, leaves=qty,
           otype=OrdType.LIMIT)
    d.apply(e)


def test_a_fill_of_an_order_that_is_not_resting_is_refused() -> None:
    d = BookDeriver([1])
    with pytest.raises(BookInconsistency, match="maker is not resting"):
        d.apply(ev(Ev.TRADE, seq=1, order_id=2, maker_order_id=99, side=Side.BUY, price=10, qty=1))


def test_maker_leaves_must_add_up() -> None:
    d = BookDeriver([1])
    rest(d, 1, Side.SELL, 10, 5, 1)
    assert d.books[1].asks.qty == {10: 5}
    with pytest.raises(BookInconsistency, match="leaves"):
        d.apply(ev(Ev.TRADE, seq=2, order_id=2, maker_order_id=1, side=Side.BUY, price=10, qty=2,
                   maker_leaves=4))


def test_a_trade_on_the_makers_own_side_or_price_is_refused() -> None:
    d = BookDeriver([1])
    rest(d, 1, Side.SELL, 10, 5, 1)
    with pytest.raises(BookInconsistency):
        d.apply(ev(Ev.TRADE, seq=2, order_id=2, maker_order_id=1, side=Side.SELL, price=10,
                   qty=1, maker_leaves=4))
    with pytest.raises(BookInconsistency):
        d.apply(ev(Ev.TRADE, seq=3, order_id=3, maker_order_id=1, side=Side.BUY, price=11,
                   qty=1, maker_leaves=4))


def test_expired_taker_never_rests_and_market_orders_never_rest() -> None:
    d = BookDeriver([1])
    both = np.concatenate([ev(Ev.ACCEPTED, seq=1, order_id=1, side=Side.BUY, price=10, qty=5,
                              leaves=5, otype=OrdType.LIMIT, last=0),
                           ev(Ev.EXPIRED, seq=1, order_id=1, qty=5)])
    d.apply(both)
    d.apply(ev(Ev.ACCEPTED, seq=2, order_id=2, side=Side.BUY, price=0, qty=5, leaves=5,
               otype=OrdType.MARKET))
    assert d.books[1].bids.qty == {} and d.orders == {}


def test_cancel_removes_the_remainder_and_partial_removal_keeps_the_rest() -> None:
    d = BookDeriver([1])
    rest(d, 1, Side.BUY, 10, 5, 1)
    rest(d, 2, Side.BUY, 10, 3, 2)
    d.apply(ev(Ev.CANCELED, seq=3, order_id=1, qty=5))
    assert d.books[1].bids.qty == {10: 3} and list(d.orders) == [2]
    d.apply(ev(Ev.EXPIRED, seq=4, order_id=2, qty=1))  # a partial removal (quantity removed)
    assert d.books[1].bids.qty == {10: 2} and d.orders[2][3] == 2
    d.apply(ev(Ev.CANCELED, seq=5, order_id=77, qty=1))  # unknown id: not on the book, ignored
    assert d.books[1].bids.qty == {10: 2}


def test_a_new_order_rests_when_its_command_ends_within_a_batch_or_at_its_end() -> None:
    """Commands as market makers send them, several in one batch: place (ACCEPTED + BALANCE),
    place, cancel of the first (CANCELED + BALANCE), and a place ending the batch. Each new order
    rests once its command has no more events; the book's seq and time are the last command that
    changed it; BALANCE events (not looked at) change nothing."""
    d = BookDeriver([1])

    def place(oid: int, price: int, seq: int) -> list[np.ndarray]:
        return [ev(Ev.ACCEPTED, seq=seq, order_id=oid, side=Side.BUY, price=price, qty=5, leaves=5,
                   otype=OrdType.LIMIT, last=0, ts_ns=seq * 100),
                ev(Ev.BALANCE, seq=seq, ts_ns=seq * 100, account=7)]

    batch = np.concatenate([*place(1, 10, 1), *place(2, 11, 2),
                            ev(Ev.CANCELED, seq=3, order_id=1, qty=5, last=0, ts_ns=300),
                            ev(Ev.BALANCE, seq=3, ts_ns=300, account=7), *place(3, 12, 4)])
    d.apply(batch, track=False)
    b = d.books[1]
    assert b.bids.qty == {11: 5, 12: 5} and sorted(d.orders) == [2, 3]
    assert (b.seq, b.ts_ns, d.last_seq) == (4, 400, 4)
    d.apply(np.concatenate([ev(Ev.BALANCE, seq=5, ts_ns=500, account=7)]), track=False)
    assert (b.seq, b.ts_ns, d.last_seq) == (4, 400, 5)  # a deposit moves no book
