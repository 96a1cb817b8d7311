"""The open-addressing id maps (engine/_maps.py, backward-shift deletion) against a dict, on a
tiny table so probe chains wrap around and collide constantly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._maps import cid_find, id_find, map_delete, map_insert
from engine.layout import ORDER

SLOTS = 8  # pool of 8 orders in a table of 16


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 40)), max_size=120))
def test_id_map_matches_a_dict(ops: list[tuple[bool, int]]) -> None:
    orders = np.zeros(SLOTS, ORDER)
    tab = np.full(2 * SLOTS, -1, np.int32)
    live: dict[int, int] = {}  # order id -> slot
    free = list(range(SLOTS))
    for insert, oid in ops:
        if insert and oid not in live and free:
            s = free.pop()
            orders[s]["id"] = oid
            map_insert(orders, tab, s, False)
            live[oid] = s
        elif not insert and oid in live:
            s = live.pop(oid)
            map_delete(orders, tab, s, False)
            free.append(s)
        for k in range(1, 41):
            assert id_find(orders, tab, k) == live.get(k, -1)
        assert int((tab >= 0).sum()) == len(live)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 3), st.integers(0, 5)), max_size=80))
def test_cid_map_matches_a_dict(ops: list[tuple[bool, int, int]]) -> None:
    orders = np.zeros(SLOTS, ORDER)
    tab = np.full(2 * SLOTS, -1, np.int32)
    live: dict[tuple[int, int], int] = {}
    free = list(range(SLOTS))
    for insert, account, c in ops:
        key = (account, c)
        if insert and key not in live and free:
            s = free.pop()
            orders[s]["account"], orders[s]["c0"], orders[s]["c3"] = account, c, 7
            map_insert(orders, tab, s, True)
            live[key] = s
        elif not insert and key in live:
            s = live.pop(key)
            map_delete(orders, tab, s, True)
            free.append(s)
        for a in range(1, 4):
            for k in range(6):
                assert cid_find(orders, tab, a, k, 0, 0, 7) == live.get((a, k), -1)
