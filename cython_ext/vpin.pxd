# cython: language_level=3
"""VPIN volume buckets (Easley, Lopez de Prado, O'Hara 2012) with exact taker sides.

Why integers: volumes are counted in units of 1e-8 base, so a trade that
exactly fills a bucket closes it exactly, and the reference agrees bit for bit.
A trade larger than the room left in a bucket is split across buckets.

Why O(1) per trade: one trade can span billions of buckets (1e10 units of a
meme coin with a bucket of 10).  The open bucket is filled, the k whole
buckets that follow are all one-sided (imbalance = V each), so only the last
min(k, n) of them can still be in the window and they are written directly;
the rest goes into the new open bucket.  Amounts too large for int64 units are
handled in double precision (beyond 2**53 units the input itself is no more
exact than that); NaN, infinite or negative amounts are refused and counted.
"""
from libc.math cimport NAN, floor, fmod, isfinite
from libc.stdint cimport int64_t


cdef inline double _exact_units() noexcept nogil:
    """Largest unit count handled in exact integer arithmetic (2**62: sums stay far from overflow)."""
    return 4611686018427387904.0


cdef struct Vpin:
    int64_t bucket      # V, units per bucket
    int64_t window      # n, buckets in the estimate
    int64_t fill
    int64_t buy
    int64_t sell
    int64_t done        # complete buckets since the last reset (saturates near 2**62)
    int64_t sum         # sum of |S - B| over the last n complete buckets


cdef inline void vpin_reset(Vpin* v) noexcept nogil:
    v.fill = 0
    v.buy = 0
    v.sell = 0
    v.done = 0
    v.sum = 0


cdef inline void _vpin_close(Vpin* v, int64_t* ring, int64_t imb) noexcept nogil:
    """Append one complete bucket of imbalance `imb` to the window."""
    cdef int64_t slot = v.done % v.window
    if v.done >= v.window:
        v.sum -= ring[slot]
    ring[slot] = imb
    v.sum += imb
    v.done += 1


cdef inline int64_t vpin_add(Vpin* v, int64_t* ring, double amount, int side) noexcept nogil:
    """Add a taker trade of `amount` base (side +1 buy / -1 sell); `ring` holds the last n imbalances.

    Returns the number of buckets written to the ring (at most n + 1: the work
    done), or -1 when the amount is impossible (NaN, infinite, negative) and
    was skipped.
    """
    cdef double units_d, rest_d, k_d
    cdef int64_t units, take, imb, k, i, pushes = 0
    if not isfinite(amount) or amount < 0:
        return -1
    units_d = floor(amount * 1e8 + 0.5)
    # 1. fill the open bucket (always exact: the room left is below V)
    take = v.bucket - v.fill
    if units_d < <double>take:
        take = <int64_t>units_d
    if side > 0:
        v.buy += take
    else:
        v.sell += take
    v.fill += take
    if v.fill < v.bucket:
        return 0
    imb = v.buy - v.sell
    _vpin_close(v, ring, imb if imb >= 0 else -imb)
    pushes = 1
    v.fill = 0
    v.buy = 0
    v.sell = 0
    # 2. k whole one-sided buckets, of which at most the window's n are kept
    rest_d = units_d - <double>take
    if rest_d < _exact_units():
        units = <int64_t>rest_d
        k = units // v.bucket
        units -= k * v.bucket
    else:
        k_d = floor(rest_d / <double>v.bucket)
        units = <int64_t>fmod(rest_d, <double>v.bucket)
        k = v.window if k_d >= <double>v.window else <int64_t>k_d
    if k >= v.window:
        for i in range(v.window):
            ring[i] = v.bucket
        v.sum = v.window * v.bucket
        # the window is now uniform, so which slot comes next no longer matters: saturate `done`
        if v.done > <int64_t>_exact_units() - k:
            v.done = v.window + v.done % v.window
        else:
            v.done += k
        pushes += v.window
    else:
        for i in range(k):
            _vpin_close(v, ring, v.bucket)
        pushes += k
    # 3. what is left opens the next bucket
    if side > 0:
        v.buy = units
    else:
        v.sell = units
    v.fill = units
    return pushes


cdef inline double vpin_value(const Vpin* v) noexcept nogil:
    if v.done < v.window:
        return NAN
    return <double>v.sum / (<double>v.window * <double>v.bucket)
