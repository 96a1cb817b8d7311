"""Market-data publisher: derives L2 books (seq + checksum), trades, candles and 24 h tickers from
the durable WAL events and publishes them, serialised once, on the md broadcast ring.

Library: channels (names/ids), record (md ring slot), units (exact decimals), checksum, book
(L2 derivation), views (depth channels), candles, ticker, derive (MarketDeriver), synth (reference
matcher for tests/benches), process (the loop). Process entry: ``main(cfg, index, ready_conn)``.
See docs/MARKET_DATA.md.
"""

from __future__ import annotations

import logging
import signal
from multiprocessing.connection import Connection
from typing import Any

from pipeline.config import Config
from pipeline.cpu import place
from pipeline.native import activate as _activate

_activate(__name__, __path__)  # the compiled order book when var/native matches (pipeline.native)

log = logging.getLogger("spotx.publisher")


def main(cfg: Config, index: int, ready_conn: Connection) -> None:
    """Supervisor entry: rebuild from the WAL, report ready, publish until SIGTERM."""
    from pipeline.publisher.process import Publisher

    stop = {"flag": False}

    def on_term(_sig: int, _frame: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    place(cfg.market.core, cfg.market.nice)
    pub = Publisher(cfg)
    ready = False
    try:
        pub.start()
        from pipeline import heap

        heap.settle()  # the rebuilt state is long-lived: keep it out of every later collection
        ready_conn.send({"ready": True, **pub.info()})
        ready = True
        pub.run(lambda: stop["flag"])
    except BaseException as e:
        if not ready:
            try:
                ready_conn.send({"error": f"{type(e).__name__}: {e}"})
            except OSError:
                pass
        raise
    finally:
        pub.close(unlink=stop["flag"], final_snapshot=stop["flag"] and ready)
        log.info("publisher stopped at seq %d", pub.deriver.seq)
