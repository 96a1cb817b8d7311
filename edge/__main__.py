"""``python -m edge --inproc``: one edge with the engine in-process (development, demos).

No WAL, no settlement: state lives in memory and is gone when the process stops. Listens on the
configured REST / WS ports (override with ``--rest-port`` / ``--ws-port``); API keys come from the
configured key store (``spotx keys create``). Stops on Ctrl-C / SIGTERM, or after ``--for`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from pipeline import config as config_mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge", description=__doc__)
    ap.add_argument("--inproc", action="store_true", required=True,
                    help="run the engine in this process (the only mode of this entry point)")
    ap.add_argument("--config", default=None)
    ap.add_argument("--rest-port", type=int, default=None)
    ap.add_argument("--ws-port", type=int, default=None)
    ap.add_argument("--for", dest="for_s", type=float, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = config_mod.load(args.config)

    async def run() -> None:
        from edge.app import build_edge
        from edge.inproc import InprocGateway
        from pipeline import heap

        edge = build_edge(cfg, InprocGateway(cfg))
        await edge.start(rest_port=args.rest_port, ws_port=args.ws_port)
        heap.settle()
        logging.getLogger("spotx.edge").info(
            "in-process edge: REST http://%s:%d  WS ws://%s:%d%s", cfg.edge.host, edge.rest_port,
            cfg.edge.host, edge.ws_port, cfg.edge.ws_trade_path)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await asyncio.wait_for(stop.wait(), args.for_s)
        except TimeoutError:
            pass
        await edge.close()

    import uvloop

    uvloop.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
