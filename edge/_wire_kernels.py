# mypy: ignore-errors
"""numba kernel of ``edge.wire_fast``: one WS request's bytes -> a COMMAND record, for the common
order shapes only, or 0 ("not mine": the caller runs the general path, which answers or errors).

Accepted (anything else returns 0, including valid JSON this does not bother with): one JSON object
with exactly the members ``id`` (an integer of at most 18 digits, or a string of at most 64
printable ASCII chars without escapes), ``method`` (``"order.place"`` / ``"order.cancel"``) and
``params``; ``params`` an object whose members are strings without escapes, integers (``orderId``)
or ``true`` / ``false`` (``postOnly``), each at most once; JSON whitespace anywhere it may be.
Semantics are ``edge.fast_orders`` exactly (its header is the contract); decimals are
``edge.convert.parse_units``'s plain ``digits[.digits]`` with at most 18 digits.

Tables (``tab``, int64, built by ``wire_fast.table``): [0] symbols, then per symbol ``SYM_STRIDE``
words: name length, up to ``NAME_MAX`` name bytes (one per word), symbol id, quote scale, base
scale, tick_minor, max_price_ticks, lot_minor, min_qty_lots, max_qty_lots, K, min_notional_minor.
Output: the 64 record bytes in ``cmd`` (conn / req 0); returns (kind: 0, 1 place, 2 cancel; the id
as an integer; the id string's start and end in ``b``, or -1 for an integer id).
"""

from __future__ import annotations

import numba as nb
import numpy as np

# enum values (pipeline.records; wire_fast asserts them at import)
BUY, SELL, LIMIT, GTC, IOC, FOK = 1, 2, 1, 1, 2, 3
STP_CODES = (1, 2, 3, 4)  # EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH, NONE
NEW_ORDER, CANCEL, POST_ONLY, BY_CID = 1, 2, 1, 4
NAME_MAX = 32
SYM_STRIDE = 1 + NAME_MAX + 10
CID_MAX = 36
RID_MAX = 64

# key tables: names as one padded uint8 matrix, lengths apart
TOP_KEYS = (b"id", b"method", b"params")
PARAM_KEYS = (b"symbol", b"side", b"type", b"price", b"quantity", b"timeInForce", b"stp",
              b"postOnly", b"clientOrderId", b"orderId")
P_SYMBOL, P_SIDE, P_TYPE, P_PRICE, P_QTY, P_TIF, P_STP, P_POST, P_CID, P_OID = range(10)
WORDS = (b"order.place", b"order.cancel", b"BUY", b"SELL", b"LIMIT", b"GTC", b"IOC", b"FOK",
         b"EXPIRE_TAKER", b"EXPIRE_MAKER", b"EXPIRE_BOTH", b"NONE")
W_PLACE, W_CANCEL, W_BUY, W_SELL, W_LIMIT, W_GTC, W_IOC, W_FOK, W_STP0 = range(9)
CID_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def _matrix(words):
    m = np.zeros((len(words), max(len(w) for w in words)), np.uint8)
    for i, w in enumerate(words):
        m[i, :len(w)] = np.frombuffer(w, np.uint8)
    return m, np.array([len(w) for w in words], np.int64)


_TOP, _TOP_LEN = _matrix(TOP_KEYS)
_PAR, _PAR_LEN = _matrix(PARAM_KEYS)
_WRD, _WRD_LEN = _matrix(WORDS)
_CID_SYM = np.full(256, -1, np.int64)
_CID_SYM[np.frombuffer(CID_ALPHABET, np.uint8)] = np.arange(64)
_POW10 = np.array([10**i for i in range(19)], np.int64)
_I64_MAX = np.iinfo(np.int64).max


@nb.njit(cache=True, nogil=True, inline="always")
def _ws(b, i, n):
    while i < n:
        c = b[i]
        if c != 32 and c != 9 and c != 10 and c != 13:
            return i
        i += 1
    return i


@nb.njit(cache=True, nogil=True, inline="always")
def _value_at(b, e, n):
    """The index of a member's value, its name's closing quote at ``e`` (then ``:``), or -1."""
    i = _ws(b, e + 1, n)
    if i >= n or b[i] != 58:
        return -1
    i = _ws(b, i + 1, n)
    return i if i < n else -1


@nb.njit(cache=True, nogil=True)
def _string(b, i, n):
    """The string at ``b[i]``: (content start, content end) or (-1, -1) if not a plain one."""
    if i >= n or b[i] != 34:
        return -1, -1
    j = i + 1
    while j < n:
        c = b[j]
        if c == 34:
            return i + 1, j
        if c == 92 or c < 32 or c > 126:  # escapes, controls and non-ASCII: not mine
            return -1, -1
        j += 1
    return -1, -1


@nb.njit(cache=True, nogil=True, inline="always")
def _same(b, s, n, row, off):
    """``b[s:s+n]`` equals ``row[off:off+n]``."""
    for j in range(n):
        if b[s + j] != row[off + j]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _which(b, s, e, names, lens):
    """Index of ``b[s:e]`` in the name matrix, or -1."""
    n = e - s
    for k in range(names.shape[0]):
        if lens[k] == n and _same(b, s, n, names[k], 0):
            return k
    return -1


@nb.njit(cache=True, nogil=True)
def _integer(b, i, n):
    """The JSON integer at ``b[i]``: (value, end) or (0, -1) if not one of <= 18 digits."""
    j = i
    neg = j < n and b[j] == 45
    if neg:
        j += 1
    s = j
    v = 0
    while j < n and 48 <= b[j] <= 57:
        v = v * 10 + (b[j] - 48)
        j += 1
    d = j - s
    if d == 0 or d > 18 or (d > 1 and b[s] == 48):
        return 0, -1
    if j < n and (b[j] == 46 or b[j] == 101 or b[j] == 69):  # a fraction or exponent: a float
        return 0, -1
    return (-v if neg else v), j


@nb.njit(cache=True, nogil=True)
def _units(b, s, e, scale):
    """``parse_units`` of the plain decimal ``b[s:e]``: its count of 10**-scale, or -1."""
    v = 0
    digits = 0
    frac = -1
    for j in range(s, e):
        c = b[j]
        if c == 46:
            if frac >= 0 or j == s or j == e - 1:
                return -1
            frac = 0
            continue
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
        digits += 1
        if frac >= 0:
            frac += 1
        if digits > 18:
            return -1
    if digits == 0:
        return -1
    nf = frac if frac > 0 else 0
    if nf > scale or scale - nf > 18:
        return -1
    m = _POW10[scale - nf]
    if v > _I64_MAX // m:
        return -1
    return v * m


@nb.njit(cache=True, nogil=True)
def _pack_cid(b, s, e, cmd, off):
    """Pack the clientOrderId ``b[s:e]`` (pipeline.cid: length symbol, then 6 bits a char, MSB
    first) into ``cmd[off:off+28]``; False if it is not 1..36 chars of the alphabet."""
    n = e - s
    if n < 1 or n > CID_MAX:
        return False
    for j in range(28):
        cmd[off + j] = 0
    for k in range(n + 1):
        v = n if k == 0 else _CID_SYM[b[s + k - 1]]
        if v < 0:
            return False
        bit = 6 * k
        byte, sh = bit >> 3, bit & 7
        # 6 bits at bit offset `bit`, MSB first: they span this byte and maybe the next
        w = v << (10 - sh)  # left-aligned in 16 bits at shift sh
        cmd[off + byte] |= (w >> 8) & 0xFF
        if sh > 2:
            cmd[off + byte + 1] |= w & 0xFF
    return True


@nb.njit(cache=True, nogil=True, inline="always")
def _put(cmd, off, v, nbytes):
    for j in range(nbytes):
        cmd[off + j] = (v >> (8 * j)) & 0xFF


@nb.njit(cache=True, nogil=True)
def parse(b, account, tab, cmd, sc):
    """See the module header; ``sc`` is scratch (>= 3 * len(PARAM_KEYS) int64)."""
    n = len(b)
    np_ = _PAR.shape[0]
    for k in range(np_):
        sc[k] = 0  # value kind per param: 0 absent, 1 string, 2 integer, 3 true, 4 false
    i = _ws(b, 0, n)
    if i >= n or b[i] != 123:
        return 0, 0, -1, -1
    i += 1
    seen = 0
    method = -1
    rid, rs, re = 0, -1, -1
    ps = -1
    while True:
        i = _ws(b, i, n)
        s, e = _string(b, i, n)
        if s < 0:
            return 0, 0, -1, -1
        key = _which(b, s, e, _TOP, _TOP_LEN)
        if key < 0 or seen & (1 << key):
            return 0, 0, -1, -1
        seen |= 1 << key
        i = _value_at(b, e, n)
        if i < 0:
            return 0, 0, -1, -1
        if key == 0:  # id
            if b[i] == 34:
                rs, re = _string(b, i, n)
                if rs < 0 or re - rs > RID_MAX:
                    return 0, 0, -1, -1
                i = re + 1
            else:
                rid, i = _integer(b, i, n)
                if i < 0:
                    return 0, 0, -1, -1
        elif key == 1:  # method
            s, e = _string(b, i, n)
            if s < 0:
                return 0, 0, -1, -1
            method = _which(b, s, e, _WRD, _WRD_LEN)
            if method != W_PLACE and method != W_CANCEL:
                return 0, 0, -1, -1
            i = e + 1
        else:  # params: an object of plain members, each kept as (kind, a, b) in sc
            if b[i] != 123:
                return 0, 0, -1, -1
            ps = i
            i = _ws(b, i + 1, n)
            if i < n and b[i] == 125:
                i += 1
            else:
                while True:
                    s, e = _string(b, i, n)
                    if s < 0:
                        return 0, 0, -1, -1
                    p = _which(b, s, e, _PAR, _PAR_LEN)
                    if p < 0 or sc[p] != 0:
                        return 0, 0, -1, -1
                    i = _value_at(b, e, n)
                    if i < 0:
                        return 0, 0, -1, -1
                    c = b[i]
                    if c == 34:
                        s, e = _string(b, i, n)
                        if s < 0:
                            return 0, 0, -1, -1
                        sc[p], sc[np_ + p], sc[2 * np_ + p] = 1, s, e
                        i = e + 1
                    elif c == 116 and i + 4 <= n and b[i + 1] == 114 and b[i + 2] == 117 \
                            and b[i + 3] == 101:
                        sc[p] = 3
                        i += 4
                    elif c == 102 and i + 5 <= n and b[i + 1] == 97 and b[i + 2] == 108 \
                            and b[i + 3] == 115 and b[i + 4] == 101:
                        sc[p] = 4
                        i += 5
                    else:
                        v, j = _integer(b, i, n)
                        if j < 0:
                            return 0, 0, -1, -1
                        sc[p], sc[np_ + p] = 2, v
                        i = j
                    i = _ws(b, i, n)
                    if i < n and b[i] == 44:
                        i = _ws(b, i + 1, n)
                        continue
                    if i < n and b[i] == 125:
                        i += 1
                        break
                    return 0, 0, -1, -1
        i = _ws(b, i, n)
        if i < n and b[i] == 44:
            i += 1
            continue
        if i < n and b[i] == 125:
            break
        return 0, 0, -1, -1
    if _ws(b, i + 1, n) != n or seen != 7 or ps < 0:
        return 0, 0, -1, -1
    if method == W_PLACE:
        ok = _place(b, account, tab, cmd, sc, np_)
        kind = 1
    else:
        ok = _cancel(b, account, tab, cmd, sc, np_)
        kind = 2
    if not ok:
        return 0, 0, -1, -1
    return kind, rid, rs, re


@nb.njit(cache=True, nogil=True)
def _symbol(b, s, e, tab):
    """Base index of the symbol named ``b[s:e]`` in ``tab``, or -1."""
    n = e - s
    for k in range(tab[0]):
        base = 1 + k * SYM_STRIDE
        if tab[base] == n and _same(b, s, n, tab, base + 1):
            return base
    return -1


@nb.njit(cache=True, nogil=True)
def _word(b, sc, np_, p):
    """The WORDS index of string param ``p``, or -1 (absent, not a string, unknown)."""
    if sc[p] != 1:
        return -1
    return _which(b, sc[np_ + p], sc[2 * np_ + p], _WRD, _WRD_LEN)


@nb.njit(cache=True, nogil=True)
def _record(cmd, a, q, account, symbol_id, kind, flags, side, otype, tif, stp):
    _put(cmd, 0, a, 8)
    _put(cmd, 8, q, 8)
    _put(cmd, 16, account, 4)
    _put(cmd, 20, 0, 8)  # conn, req: stamped by the gateway
    _put(cmd, 28, symbol_id, 2)
    cmd[30], cmd[31], cmd[32], cmd[33], cmd[34], cmd[35] = kind, flags, side, otype, tif, stp


@nb.njit(cache=True, nogil=True)
def _place(b, account, tab, cmd, sc, np_):
    if sc[P_OID] != 0:
        return False
    for p in (P_SYMBOL, P_SIDE, P_TYPE, P_PRICE, P_QTY):
        if sc[p] != 1:
            return False
    base = _symbol(b, sc[np_ + P_SYMBOL], sc[2 * np_ + P_SYMBOL], tab)
    if base < 0:
        return False
    w = _word(b, sc, np_, P_SIDE)
    if w != W_BUY and w != W_SELL:
        return False
    side = BUY if w == W_BUY else SELL
    if _word(b, sc, np_, P_TYPE) != W_LIMIT:
        return False
    tif = GTC
    if sc[P_TIF] != 0:
        w = _word(b, sc, np_, P_TIF)
        if w < W_GTC or w > W_FOK:
            return False
        tif = (GTC, IOC, FOK)[w - W_GTC]
    stp = STP_CODES[0]
    if sc[P_STP] != 0:
        w = _word(b, sc, np_, P_STP)
        if w < W_STP0 or w > W_STP0 + 3:
            return False
        stp = STP_CODES[w - W_STP0]
    p = base + 1 + NAME_MAX  # symbol id, quote scale, base scale, tick, max ticks, lot, min, max, K, min notional
    units = _units(b, sc[np_ + P_PRICE], sc[2 * np_ + P_PRICE], tab[p + 1])
    if units < 0 or units % tab[p + 3] != 0:
        return False
    price = units // tab[p + 3]
    if price < 1 or price > tab[p + 4]:
        return False
    units = _units(b, sc[np_ + P_QTY], sc[2 * np_ + P_QTY], tab[p + 2])
    if units < 0 or units % tab[p + 5] != 0:
        return False
    qty = units // tab[p + 5]
    if qty < tab[p + 6] or qty > tab[p + 7]:
        return False
    if price * qty * tab[p + 8] < tab[p + 9]:  # fits int64: config checks max ticks x max lots x K
        return False
    flags = 0
    if sc[P_POST] != 0:
        if sc[P_POST] != 3 and sc[P_POST] != 4:
            return False
        if sc[P_POST] == 3:
            if tif != GTC:
                return False
            flags = POST_ONLY
    if sc[P_CID] != 0:
        if sc[P_CID] != 1 or not _pack_cid(b, sc[np_ + P_CID], sc[2 * np_ + P_CID], cmd, 36):
            return False
    else:
        for j in range(36, 64):
            cmd[j] = 0
    _record(cmd, price, qty, account, tab[p], NEW_ORDER, flags, side, LIMIT, tif, stp)
    return True


@nb.njit(cache=True, nogil=True)
def _cancel(b, account, tab, cmd, sc, np_):
    for p in (P_SIDE, P_TYPE, P_PRICE, P_QTY, P_TIF, P_STP, P_POST):
        if sc[p] != 0:
            return False
    symbol_id = 0
    if sc[P_SYMBOL] != 0:
        if sc[P_SYMBOL] != 1:
            return False
        base = _symbol(b, sc[np_ + P_SYMBOL], sc[2 * np_ + P_SYMBOL], tab)
        if base < 0:
            return False
        symbol_id = tab[base + 1 + NAME_MAX]
    if sc[P_OID] != 0:
        oid = sc[np_ + P_OID]
        if sc[P_OID] != 2 or sc[P_CID] != 0 or oid < 1:
            return False
        for j in range(36, 64):
            cmd[j] = 0
        _record(cmd, oid, 0, account, symbol_id, CANCEL, 0, 0, 0, 0, 0)
        return True
    if sc[P_CID] != 1 or symbol_id == 0:
        return False
    if not _pack_cid(b, sc[np_ + P_CID], sc[2 * np_ + P_CID], cmd, 36):
        return False
    _record(cmd, 0, 0, account, symbol_id, CANCEL, BY_CID, 0, 0, 0, 0)
    return True


_ALPHA = np.frombuffer(CID_ALPHABET, np.uint8).copy()


@nb.njit(cache=True, nogil=True)
def cid_texts(rec, kind_off, cid_off, cid_kinds, out, span):
    """The clientOrderIds of a batch of EVENT records ``rec`` (uint8, one row per record) in one
    pass: for each record whose kind is marked in ``cid_kinds`` its chars are appended to ``out``
    and ``span[i]`` = (start, length); length -1 when it carries none (all zero) or the field is
    corrupt (a length symbol outside 1..36), which ``pipeline.cid.cid_unpack`` refuses too.
    Returns the chars written (``out`` needs 36 per record)."""
    pos = 0
    for i in range(rec.shape[0]):
        span[i, 0] = pos
        span[i, 1] = -1
        if cid_kinds[rec[i, kind_off]] == 0:
            continue
        n = rec[i, cid_off] >> 2
        if n < 1 or n > CID_MAX:
            continue
        for k in range(1, n + 1):
            bit = 6 * k
            byte, sh = bit >> 3, bit & 7
            w = (rec[i, cid_off + byte] << 8) | (rec[i, cid_off + byte + 1] if byte + 1 < 28 else 0)
            out[pos + k - 1] = _ALPHA[(w >> (10 - sh)) & 63]
        span[i, 1] = n
        pos += n
    return pos
