"""Errors of the market-data publisher: one base, each subclass also the builtin it refines."""

from __future__ import annotations


class PublisherError(Exception):
    """Base of every error raised by ``pipeline.publisher``."""


class BookInconsistency(PublisherError, ValueError):
    """The event stream does not fit the derived book (a level would go negative, an unknown
    resting order was filled, ...): the events are not what the engine produces, or were skipped."""

    def __init__(self, symbol: int, seq: int, why: str) -> None:
        super().__init__(f"symbol {symbol} at seq {seq}: {why}")
        self.symbol = symbol
        self.seq = seq
        self.why = why


class MessageTooLarge(PublisherError, ValueError):
    """A market-data message exceeds the largest message the md ring carries."""


class ChannelError(PublisherError, ValueError):
    """A channel name or id that does not parse or names an unknown symbol / depth / interval."""


class UnknownSymbol(ChannelError):
    """A channel names a symbol the config does not have."""


class WalStartError(PublisherError, ValueError):
    """The WAL does not start at seq 1: derived books would miss orders resting from before."""

    def __init__(self, where: str, first_seq: int) -> None:
        super().__init__(f"the WAL in {where} starts at seq {first_seq}: market data needs every "
                         "event from seq 1")
        self.first_seq = first_seq
