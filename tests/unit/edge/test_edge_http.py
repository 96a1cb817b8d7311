"""edge.http over real sockets: pipelining order, body limit, malformed input, keep-alive."""

import asyncio
from collections.abc import Awaitable

import orjson
import pytest

from edge.errors import ApiError
from edge.http import HttpServerState, Request, Response, serve_http


def handler(req: Request) -> Response | Awaitable[Response]:
    if req.path == "/slow":
        async def later() -> Response:
            await asyncio.sleep(0.05)
            return Response.json({"path": "slow", "q": req.query})
        return later()
    if req.path == "/boom":
        raise RuntimeError("handler bug")
    if req.path == "/fail":
        async def fail() -> Response:
            raise ApiError("UNKNOWN_ORDER")
        return fail()
    return Response.json({"path": req.path, "q": req.query, "len": len(req.body),
                          "m": req.method}, headers=[("X-Test", "1")])


async def with_server(fn, max_body: int = 1000, **kw):  # type: ignore[no-untyped-def]
    state = HttpServerState(handler, max_body_bytes=max_body, **kw)
    server, sweeper = await serve_http(state, "127.0.0.1", 0, sweep_s=0.05)
    port = server.sockets[0].getsockname()[1]
    try:
        return await fn(port, state)
    finally:
        sweeper.cancel()
        server.close()
        for c in list(state.conns):
            if c.transport:
                c.transport.close()
        await server.wait_closed()


async def read_responses(reader: asyncio.StreamReader, n: int) -> list[tuple[int, dict, bytes]]:
    out = []
    for _ in range(n):
        status_line = await asyncio.wait_for(reader.readline(), 5)
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            k, v = line.decode().split(":", 1)
            headers[k.lower()] = v.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        out.append((status, headers, body))
    return out


def test_pipelined_responses_keep_request_order(aio) -> None:
    async def run(port: int, state: HttpServerState) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /slow?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        res = await read_responses(r, 6)
        bodies = [orjson.loads(b) for _, _, b in res]
        assert bodies[0] == {"path": "slow", "q": "a=1"}
        assert bodies[1]["path"] == "/fast" and res[1][1]["x-test"] == "1"
        assert bodies[2] == {"path": "/body", "q": "", "len": 5, "m": "POST"}
        assert res[3][0] == 404 and bodies[3]["error"] == "UNKNOWN_ORDER"
        assert res[4][0] == 500 and bodies[4]["error"] == "INTERNAL"
        assert bodies[5]["path"] == "/last" and res[5][1]["connection"] == "close"
        assert res[0][1]["connection"] == "keep-alive"
        assert await asyncio.wait_for(r.read(), 5) == b""  # closed after Connection: close
        w.close()
    aio(lambda: with_server(run))


@pytest.mark.parametrize("how", ["content-length", "chunked"])
def test_body_over_the_limit_is_413_and_closes(aio, how: str) -> None:
    async def run(port: int, state: HttpServerState) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        if how == "content-length":
            w.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"a" * 5000)
        else:
            w.write(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"".join(b"%x\r\n%s\r\n" % (300, b"b" * 300) for _ in range(5)) + b"0\r\n\r\n")
        res = await read_responses(r, 2)
        assert res[0][0] == 200
        assert res[1][0] == 413 and orjson.loads(res[1][2])["error"] == "PAYLOAD_TOO_LARGE"
        assert await asyncio.wait_for(r.read(), 5) == b""
        w.close()
    aio(lambda: with_server(run))


@pytest.mark.parametrize("raw", [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                                 b"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"])
def test_malformed_http_is_400_and_server_stays_up(aio, raw: bytes) -> None:
    async def run(port: int, state: HttpServerState) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(raw)
        (status, _, body), = await read_responses(r, 1)
        assert status == 400 and orjson.loads(body)["error"] == "BAD_REQUEST"
        w.close()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_responses(r, 1))[0][0] == 200
        w.close()
    aio(lambda: with_server(run))


def test_idle_and_slow_requests_are_closed(aio) -> None:
    async def run(port: int, state: HttpServerState) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_responses(r, 1)
        assert await asyncio.wait_for(r.read(), 5) == b""  # idle keep-alive closed
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(b"GET /a HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        (status, _, _), = await read_responses(r2, 1)
        assert status == 400
        w.close()
        w2.close()
    aio(lambda: with_server(run, keepalive_s=0.2, request_timeout_s=0.2))


def test_pipeline_cap_pauses_reading_but_answers_everything(aio) -> None:
    async def run(port: int, state: HttpServerState) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"".join(b"GET /slow?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(12)))
        res = await read_responses(r, 12)
        assert [orjson.loads(b)["q"] for _, _, b in res] == [f"i={i}" for i in range(12)]
        w.close()
    aio(lambda: with_server(run, max_pipeline=4))
