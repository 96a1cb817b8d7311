import re

import pytest

from edge.errors import (
    BY_CODE,
    ERRORS,
    REJECT_AS_EXPIRED,
    REJECT_TO_ERROR,
    ApiError,
    from_reject,
)
from pipeline.records import RejectReason

API_MD_NAMES = """BAD_REQUEST UNKNOWN_SYMBOL INVALID_PRICE INVALID_QUANTITY MIN_NOTIONAL
INSUFFICIENT_BALANCE WOULD_TAKE UNKNOWN_ORDER DUPLICATE_CLIENT_ORDER_ID SYMBOL_CANCEL_ONLY
SYMBOL_HALTED MARKET_HALTED WITHDRAWALS_HALTED AUTH_MISSING AUTH_BAD_SIGNATURE AUTH_TIMESTAMP
AUTH_REPLAY FORBIDDEN RATE_LIMITED CAPACITY_EXHAUSTED NOT_LEADER FENCING_TOKEN
ENGINE_UNAVAILABLE""".split()


def test_no_duplicate_codes_or_names() -> None:
    from edge.errors import _ROWS

    names = [r[0] for r in _ROWS]
    codes = [r[1] for r in _ROWS]
    assert len(set(names)) == len(names)
    assert len(set(codes)) == len(codes)
    assert len(BY_CODE) == len(ERRORS) == len(_ROWS)


def test_every_api_md_name_is_in_the_table() -> None:
    assert set(API_MD_NAMES) <= set(ERRORS)


@pytest.mark.parametrize("spec", list(ERRORS.values()), ids=lambda s: s.name)
def test_status_matches_the_code_family(spec) -> None:  # type: ignore[no-untyped-def]
    family = spec.code // 1000
    allowed = {1: {400, 403, 404, 405, 409, 413}, 2: {401, 403}, 3: {429}, 4: {500, 503}}[family]
    assert spec.status in allowed
    assert re.fullmatch(r"[A-Z][A-Z_]+", spec.name)
    assert spec.message


def test_outcome_unknown_errors_are_5xx_and_known_refusals_are_not() -> None:
    for name in ("NOT_LEADER", "FENCING_TOKEN", "ENGINE_UNAVAILABLE", "INTERNAL"):
        assert ERRORS[name].status >= 500
    for r in REJECT_TO_ERROR.values():
        if r.name != "FENCING_TOKEN":
            assert r.status < 500, r.name


def test_every_reject_reason_maps() -> None:
    for r in RejectReason:
        assert (r in REJECT_TO_ERROR) != (r in REJECT_AS_EXPIRED), r
    assert from_reject(RejectReason.WOULD_TAKE).name == "WOULD_TAKE"
    assert from_reject(250).name == "INTERNAL"


def test_api_error_body_and_fields() -> None:
    e = ApiError("RATE_LIMITED", retry_after_s=3)
    assert e.body() == {"code": 3000, "error": "RATE_LIMITED", "message": "rate limit exceeded"}
    assert e.status == 429 and e.fields["retry_after_s"] == 3
    assert ApiError("BAD_REQUEST", "x").body()["message"] == "x"
    with pytest.raises(KeyError):
        ApiError("NO_SUCH_ERROR")


def test_every_api_error_raised_in_the_repo_is_in_the_table() -> None:
    from pathlib import Path

    root = Path(__file__).parents[3]
    used: dict[str, str] = {}
    for pkg in ("edge", "pipeline", "settle", "engine"):
        for f in (root / pkg).rglob("*.py"):
            for name in re.findall(r'ApiError\(\s*"([A-Z_]+)"', f.read_text()):
                used.setdefault(name, str(f.relative_to(root)))
    unknown = {n: f for n, f in used.items() if n not in ERRORS}
    assert not unknown, f"ApiError names missing from edge/errors.py: {unknown}"
