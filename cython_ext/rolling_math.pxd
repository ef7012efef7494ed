# cython: language_level=3
"""Exact-enough running sums for time windows, as prefix sums in double-double.

Why prefix sums: with several horizons over the same events, adding every value
to every window (and removing it later) costs O(horizons) per event.  Instead
each event stores the cumulative sums through it (`Cum`), and a window's sum is
`cum(now) - cum(just before its oldest event)`, computed only when a row is
emitted.  The cumulative sums are double-double (about 32 significant digits),
so that difference is the correctly rounded window sum unless the window holds
less than ~1e-16 of the stream's total magnitude.  For variances, a run counter
detects windows whose values are all equal, whose variance is then exactly 0
(as a two-pass formula would give).  All helpers are inline, noexcept, nogil.
"""
from libc.math cimport NAN, sqrt
from libc.stdint cimport int64_t, int32_t


cdef struct DD:
    double hi
    double lo


cdef inline void dd_add(DD* a, double x) noexcept nogil:
    # Knuth's TwoSum of a.hi + x, error folded into a.lo, renormalised (no FMA needed).
    cdef double s = a.hi + x
    cdef double bb = s - a.hi
    cdef double e = (a.hi - (s - bb)) + (x - bb)
    cdef double lo = a.lo + e
    cdef double hi = s + lo
    a.lo = lo - (hi - s)
    a.hi = hi


cdef inline double dd_diff(const DD* a, const DD* b) noexcept nogil:
    # (a - b) rounded to double.
    return (a.hi - b.hi) + (a.lo - b.lo)


cdef struct Run:
    # Start (as a count index) of the latest run of equal values, and that value.
    int64_t start
    double last


cdef inline void run_add(Run* r, int64_t count_before, double x) noexcept nogil:
    if count_before == 0 or x != r.last:
        r.start = count_before
        r.last = x


cdef inline double win_mean(int64_t n, double s1, const Run* run, int64_t base_n) noexcept nogil:
    if n <= 0:
        return NAN
    if run.start <= base_n:
        return run.last
    return s1 / <double>n


cdef inline double win_var(int64_t n, double s1, double s2, const Run* run, int64_t base_n) noexcept nogil:
    # Sample variance (n - 1) from window sums; exactly 0 when all values are equal.
    cdef double m2
    if n < 2:
        return NAN
    if run.start <= base_n:
        return 0.0
    m2 = s2 - s1 * s1 / <double>n
    if m2 < 0.0:
        m2 = 0.0
    return m2 / <double>(n - 1)


cdef inline double win_std(int64_t n, double s1, double s2, const Run* run, int64_t base_n) noexcept nogil:
    return sqrt(win_var(n, s1, s2, run, base_n))


# Fenwick tree of counts over spread bins (nbins a power of two): rank and
# percentile queries in log time.  `tree` has nbins + 1 entries (1-based).

cdef inline void fen_add(int32_t* tree, int nbins, int idx, int32_t delta) noexcept nogil:
    cdef int i = idx + 1
    while i <= nbins:
        tree[i] += delta
        i += i & (-i)


cdef inline int64_t fen_prefix(const int32_t* tree, int idx) noexcept nogil:
    # Count of values in bins 0..idx (idx may be -1).
    cdef int64_t total = 0
    cdef int i = idx + 1
    while i > 0:
        total += tree[i]
        i -= i & (-i)
    return total


cdef inline int fen_kth(const int32_t* tree, int nbins, int64_t k) noexcept nogil:
    # Smallest bin b with count(bins <= b) >= k (k >= 1).
    cdef int pos = 0
    cdef int step = nbins
    while step > 0:
        if pos + step <= nbins and tree[pos + step] < k:
            pos += step
            k -= tree[pos]
        step >>= 1
    return pos
