# cython: language_level=3
"""The OHLCV aggregate every trade bar shares (time, volume and dollar bars).

Why separate: trade time bars (TradeBarEngine) and information-driven bars
(InfoBarEngine) differ only in when a bar closes; what a trade adds to a bar and
the bar's output columns 1-14 and 16-18 (fluxforge.features.trade_layout
TRADE_BAR_FIELDS order) are these inline functions.
"""
from libc.math cimport NAN, isfinite
from libc.stdint cimport int64_t, int8_t


cdef struct Agg:
    double open, high, low, close, vol, dq, buy, sell, rv, maxq
    int64_t n, nbuy, nsell


cdef inline void agg_clear(Agg* a) noexcept nogil:
    a.open = NAN
    a.high = NAN
    a.low = NAN
    a.close = NAN
    a.vol = 0.0
    a.dq = 0.0
    a.buy = 0.0
    a.sell = 0.0
    a.rv = 0.0
    a.maxq = 0.0
    a.n = 0
    a.nbuy = 0
    a.nsell = 0


cdef inline void agg_add(Agg* a, double px, double q, int8_t side, double r) noexcept nogil:
    """Add `q` base at `px`; `r` is the log return from the previous trade (NaN: none)."""
    if a.n == 0:
        a.open = px
        a.high = px
        a.low = px
    else:
        if px > a.high:
            a.high = px
        if px < a.low:
            a.low = px
        if isfinite(r):
            a.rv += r * r
    a.close = px
    a.vol += q
    a.dq += px * q
    if q > a.maxq:
        a.maxq = q
    a.n += 1
    if side > 0:
        a.buy += q
        a.nbuy += 1
    elif side < 0:
        a.sell += q
        a.nsell += 1


cdef inline void agg_row(const Agg* a, double* o) noexcept nogil:
    """Columns 1-14 and 16-18 of the output row (0 = timestamp and 15 = log_return are the caller's)."""
    cdef double tot = a.buy + a.sell
    o[1] = a.open; o[2] = a.high; o[3] = a.low; o[4] = a.close
    o[5] = a.vol
    o[6] = a.dq
    o[7] = a.dq / a.vol if a.vol > 0.0 else NAN
    o[8] = <double>a.n
    o[9] = a.buy
    o[10] = a.sell
    o[11] = <double>a.nbuy
    o[12] = <double>a.nsell
    o[13] = (a.buy - a.sell) / tot if tot > 0.0 else NAN
    o[14] = a.rv
    o[16] = a.maxq
    o[17] = 1.0 if a.n == 0 else 0.0
    o[18] = <double>(a.n - a.nbuy - a.nsell)


cdef inline bint trade_usable(int64_t ts, double px, double q, int64_t* last_ts,
                              int64_t* n_invalid, int64_t* n_late) noexcept nogil:
    """The trade kernels' input rule: a non-finite or non-positive price or amount is invalid, a
    trade older than the time already processed is late (both counted, not used); else time moves on."""
    if not (isfinite(px) and isfinite(q) and px > 0.0 and q > 0.0):
        n_invalid[0] += 1
        return 0
    if ts < last_ts[0]:
        n_late[0] += 1
        return 0
    last_ts[0] = ts
    return 1
