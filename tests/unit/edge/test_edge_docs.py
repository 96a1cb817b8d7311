from pathlib import Path

from edge.errors import markdown_table
from edge.rest import ROUTES

DOC = (Path(__file__).parents[3] / "docs" / "API.md").read_text()


def test_error_table_in_docs_is_the_code_table() -> None:
    assert markdown_table() in DOC


def test_every_route_and_ws_method_is_documented() -> None:
    from edge.ws_trade import METHODS

    for r in ROUTES:
        path = r.template.split("{")[0].rstrip("/") or r.template
        assert r.template in DOC and (f"{r.method} {path}" in DOC or r.tags == ("market",)), r.label
    for m in METHODS:
        assert f"`{m}`" in DOC, m
