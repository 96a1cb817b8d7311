"""Channel names <-> ids."""

from __future__ import annotations

import pytest

from pipeline import config
from pipeline.publisher.channels import (
    DEPTHS,
    FULL_DEPTH,
    INTERVALS,
    ChannelNames,
    Ctype,
    chan_parts,
)
from pipeline.publisher.errors import ChannelError, UnknownSymbol

CFG = config.load(env={})


def test_every_channel_round_trips() -> None:
    names = ChannelNames(CFG)
    for s in CFG.symbols:
        all_names = [f"trades:{s.name}", f"ticker:{s.name}"]
        all_names += [f"book:{s.name}@{d}" for d in DEPTHS]
        all_names += [f"candles:{s.name}@{iv}" for iv in INTERVALS]
        ids = [names.parse(n) for n in all_names]
        assert len(set(ids)) == len(ids)
        assert [names.name(i) for i in ids] == all_names
        for i in ids:
            assert chan_parts(i)[1] == s.symbol_id


def test_book_without_depth_is_the_full_view() -> None:
    names = ChannelNames(CFG)
    cid = names.parse("book:BTC-USDT")
    assert names.name(cid) == f"book:BTC-USDT@{FULL_DEPTH}"
    assert chan_parts(cid)[0] == Ctype.BOOK


@pytest.mark.parametrize("bad", ["book:BTC-USDT@7", "book:BTC-USDT@x", "book:BTC-USDT@", "candles:BTC-USDT",
                                 "candles:BTC-USDT@2m", "trades:BTC-USDT@1", "depth:BTC-USDT",
                                 "trades", "", "x" * 65, "book:BTC-USDT@٢٠"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(ChannelError):
        ChannelNames(CFG).parse(bad)


def test_unknown_symbol_is_its_own_error() -> None:
    with pytest.raises(UnknownSymbol):
        ChannelNames(CFG).parse("trades:DOGE-USDT")
