# cython: language_level=3
"""VPIN volume buckets (Easley, Lopez de Prado, O'Hara 2012) with exact taker sides.

Why integers: volumes are counted in units of 1e-8 base, so a trade that
exactly fills a bucket closes it exactly, and the reference agrees bit for bit.
A trade larger than the room left in a bucket is split across buckets.
"""
from libc.math cimport NAN
from libc.stdint cimport int64_t


cdef struct Vpin:
    int64_t bucket      # V, units per bucket
    int64_t window      # n, buckets in the estimate
    int64_t fill
    int64_t buy
    int64_t sell
    int64_t done        # complete buckets since the last reset
    int64_t sum         # sum of |S - B| over the last n complete buckets


cdef inline void vpin_reset(Vpin* v) noexcept nogil:
    v.fill = 0
    v.buy = 0
    v.sell = 0
    v.done = 0
    v.sum = 0


cdef inline void vpin_add(Vpin* v, int64_t* ring, int64_t units, int side) noexcept nogil:
    """Add a taker trade of `units` (side +1 buy / -1 sell); `ring` holds the last n imbalances."""
    cdef int64_t take, imb, slot
    while units > 0:
        take = v.bucket - v.fill
        if units < take:
            take = units
        if side > 0:
            v.buy += take
        else:
            v.sell += take
        v.fill += take
        units -= take
        if v.fill == v.bucket:
            imb = v.buy - v.sell
            if imb < 0:
                imb = -imb
            slot = v.done % v.window
            if v.done >= v.window:
                v.sum -= ring[slot]
            ring[slot] = imb
            v.sum += imb
            v.done += 1
            v.fill = 0
            v.buy = 0
            v.sell = 0


cdef inline double vpin_value(const Vpin* v) noexcept nogil:
    if v.done < v.window:
        return NAN
    return <double>v.sum / (<double>v.window * <double>v.bucket)
