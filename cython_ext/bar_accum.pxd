# cython: language_level=3
"""Time-bar accumulators: one open bar per duration, half-open [k d, (k+1) d).

Why separate: bars are plain aggregates of the event stream (no windows), so
their update and their output row are small inline functions the engine calls
per event; `BAR_FIELDS` and the row order match feature_layout.BAR_FIELDS.
"""
from libc.math cimport NAN
from libc.stdint cimport int64_t
from libc.string cimport memset

cdef enum:
    BAR_FIELDS = 20


cdef struct Bar:
    int64_t k
    int64_t end_ms
    double prev_close
    double open, high, low, close
    double sum_spread, min_spread, max_spread, sum_relsp, sum_imb, sum_ofi, rv
    int64_t count, n_valid, n_crossed, n_trades
    double buy, sell, pq, q


cdef inline void bar_start(Bar* b, int64_t k, int64_t dms) noexcept nogil:
    cdef double prev = b.prev_close
    memset(b, 0, sizeof(Bar))
    b.k = k
    b.end_ms = (k + 1) * dms
    b.prev_close = prev
    b.open = NAN
    b.high = NAN
    b.low = NAN
    b.close = NAN
    b.min_spread = NAN
    b.max_spread = NAN


cdef inline void bar_add_book(Bar* b, bint crossed, bint valid, bint has_ret, double mid, double spread,
                              double relsp, double imb0, double ofi, double r) noexcept nogil:
    b.count += 1
    if crossed:
        b.n_crossed += 1
    if not valid:
        return
    if b.n_valid == 0:
        b.open = mid
        b.high = mid
        b.low = mid
        b.min_spread = spread
        b.max_spread = spread
    if mid > b.high:
        b.high = mid
    if mid < b.low:
        b.low = mid
    b.close = mid
    if spread < b.min_spread:
        b.min_spread = spread
    if spread > b.max_spread:
        b.max_spread = spread
    b.sum_spread += spread
    b.sum_relsp += relsp
    b.sum_imb += imb0
    b.n_valid += 1
    if has_ret:
        b.sum_ofi += ofi
        b.rv += r * r


cdef inline void bar_add_trade(Bar* b, double price, double amount, int side) noexcept nogil:
    b.n_trades += 1
    b.pq += price * amount
    b.q += amount
    if side > 0:
        b.buy += amount
    elif side < 0:
        b.sell += amount


cdef inline void bar_row(Bar* b, int64_t dms, double* o) noexcept nogil:
    """Write the closed bar's output row; an empty bar carries the previous close."""
    cdef double nv = <double>b.n_valid
    o[0] = <double>(b.k * dms)
    if b.n_valid > 0:
        o[1] = b.open; o[2] = b.high; o[3] = b.low; o[4] = b.close
        o[5] = b.sum_spread / nv; o[6] = b.min_spread; o[7] = b.max_spread
        o[8] = b.sum_relsp / nv; o[9] = b.sum_imb / nv
        b.prev_close = b.close
    else:
        o[1] = b.prev_close; o[2] = b.prev_close; o[3] = b.prev_close; o[4] = b.prev_close
        o[5] = NAN; o[6] = NAN; o[7] = NAN; o[8] = NAN; o[9] = NAN
    o[10] = b.sum_ofi
    o[11] = b.rv
    o[12] = <double>b.count
    o[13] = <double>b.n_valid
    o[14] = <double>b.n_crossed
    o[15] = b.buy
    o[16] = b.sell
    o[17] = b.pq / b.q if b.q > 0.0 else NAN
    o[18] = <double>b.n_trades
    o[19] = 1.0 if b.n_valid == 0 else 0.0
