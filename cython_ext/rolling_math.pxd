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
from libc.math cimport NAN, fma, sqrt
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


cdef inline void dd_add_prod(DD* a, double x, double y) noexcept nogil:
    # Adds x * y exactly: the product's rounding error (fma) goes into the low part.  Needed
    # where sums of products are later centred (dd_centred): an error of 1 ulp per square
    # would otherwise be amplified by the cancellation.
    cdef double p = x * y
    dd_add(a, p)
    a.lo += fma(x, y, -p)


cdef inline double dd_diff(const DD* a, const DD* b) noexcept nogil:
    # (a - b) rounded to double.
    return (a.hi - b.hi) + (a.lo - b.lo)


cdef inline DD dd_sub(const DD* a, const DD* b) noexcept nogil:
    # (a - b) kept in double-double: TwoSum of the high parts, the low parts folded in.
    cdef double s = a.hi - b.hi
    cdef double bb = s - a.hi
    cdef double e = (a.hi - (s - bb)) + (-b.hi - bb) + (a.lo - b.lo)
    cdef DD r
    r.hi = s + e
    r.lo = e - (r.hi - s)
    return r


cdef inline double dd_centred(DD sab, DD sa, DD sb, double n) noexcept nogil:
    # sab - sa * sb / n (a centred sum of products, n * covariance) computed in double-double
    # and rounded once.  In plain doubles the subtraction cancels: for values that vary by
    # 1e-4 of their size the result keeps only ~8 digits; here it keeps ~16 unless the
    # variance is below ~1e-30 of the squares.  Products are exact via fma (TwoProd).
    cdef double p = sa.hi * sb.hi
    cdef double pe = fma(sa.hi, sb.hi, -p) + (sa.hi * sb.lo + sa.lo * sb.hi)
    cdef double ph = p + pe
    cdef double pl = pe - (ph - p)
    # q = (ph, pl) / n: one double quotient plus the remainder's correction
    cdef double q1 = ph / n
    cdef double qe = fma(q1, n, -(q1 * n))
    cdef double q2 = ((ph - q1 * n) - qe + pl) / n
    cdef DD q
    q.hi = q1 + q2
    q.lo = q2 - (q.hi - q1)
    cdef DD r = dd_sub(&sab, &q)
    return r.hi + r.lo


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


cdef inline double win_std(int64_t n, DD s1, DD s2, const Run* run, int64_t base_n) noexcept nogil:
    # Sample standard deviation (n - 1) from the window's sums of values and of exact squares,
    # both double-double: s2 - s1^2/n is centred in double-double (dd_centred) and rounded once.
    # In plain doubles it kept only ~16 - log10(mean^2 / variance) digits (hypothesis found a
    # slope momentum std 2e-9 off the two-pass reference; a depth sigma needed its own bound in
    # the reference tests).  Exactly 0 when all values are equal.
    cdef double m2
    if n < 2:
        return NAN
    if run.start <= base_n:
        return 0.0
    m2 = dd_centred(s2, s1, s1, <double>n)
    if m2 < 0.0:
        m2 = 0.0
    return sqrt(m2 / <double>(n - 1))


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
