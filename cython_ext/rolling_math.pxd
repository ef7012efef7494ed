# cython: language_level=3
"""Numerically careful running statistics for time windows (add and remove).

Why this file: every rolling feature adds a value when it enters its window and
removes it when it leaves.  Plain running sums drift (a large value that left
the window leaves rounding error behind), so sums here are Neumaier-compensated
and reset to an exact zero whenever their window empties.  Variances use the
"shifted data" formula on compensated sums, plus pandas' trick: when the last n
added values are all equal the variance is exactly 0.  All helpers are `inline`,
`noexcept` and `nogil` so the kernel loop never touches Python.
"""
from libc.math cimport fabs, NAN, sqrt
from libc.stdint cimport int64_t, int32_t, uint64_t


cdef struct CSum:
    # Neumaier-compensated sum of the values currently in a window.
    int64_t n
    double s
    double c


cdef inline void csum_add(CSum* k, double x) noexcept nogil:
    cdef double t = k.s + x
    if fabs(k.s) >= fabs(x):
        k.c += (k.s - t) + x
    else:
        k.c += (x - t) + k.s
    k.s = t
    k.n += 1


cdef inline void csum_remove(CSum* k, double x) noexcept nogil:
    k.n -= 1
    if k.n <= 0:
        k.n = 0
        k.s = 0.0
        k.c = 0.0
        return
    cdef double t = k.s - x
    if fabs(k.s) >= fabs(x):
        k.c += (k.s - t) - x
    else:
        k.c += (-x - t) + k.s
    k.s = t


cdef inline double csum_value(const CSum* k) noexcept nogil:
    if k.n == 0:
        return 0.0
    return k.s + k.c


cdef struct Moments:
    # Count, shifted compensated first and second moments, run of equal values.
    int64_t n
    double shift
    CSum s1
    CSum s2
    double last
    int64_t run


cdef inline void mom_add(Moments* m, double x) noexcept nogil:
    cdef double d
    if m.n == 0:
        m.shift = x
    d = x - m.shift
    csum_add(&m.s1, d)
    csum_add(&m.s2, d * d)
    m.n += 1
    if m.run > 0 and x == m.last:
        m.run += 1
    else:
        m.run = 1
        m.last = x


cdef inline void mom_remove(Moments* m, double x) noexcept nogil:
    cdef double d = x - m.shift
    m.n -= 1
    if m.n <= 0:
        m.n = 0
        m.s1.n = 0; m.s1.s = 0.0; m.s1.c = 0.0
        m.s2.n = 0; m.s2.s = 0.0; m.s2.c = 0.0
        m.run = 0
        return
    csum_remove(&m.s1, d)
    csum_remove(&m.s2, d * d)


cdef inline double mom_mean(const Moments* m) noexcept nogil:
    if m.n == 0:
        return NAN
    if m.run >= m.n:
        return m.last
    return m.shift + csum_value(&m.s1) / <double>m.n


cdef inline double mom_var(const Moments* m) noexcept nogil:
    # Sample variance (n - 1 denominator); NaN below two values.
    cdef double s1, m2
    if m.n < 2:
        return NAN
    if m.run >= m.n:
        return 0.0
    s1 = csum_value(&m.s1)
    m2 = csum_value(&m.s2) - s1 * s1 / <double>m.n
    if m2 < 0.0:
        m2 = 0.0
    return m2 / <double>(m.n - 1)


cdef inline double mom_std(const Moments* m) noexcept nogil:
    return sqrt(mom_var(m))


cdef struct PairMoments:
    # Running sums for a least-squares fit y = a + b x over a window.
    int64_t n
    double kx
    double ky
    CSum sx
    CSum sy
    CSum sxx
    CSum syy
    CSum sxy
    double lastx
    int64_t runx
    double lasty
    int64_t runy


cdef inline void pair_add(PairMoments* p, double x, double y) noexcept nogil:
    cdef double dx, dy
    if p.n == 0:
        p.kx = x
        p.ky = y
    dx = x - p.kx
    dy = y - p.ky
    csum_add(&p.sx, dx)
    csum_add(&p.sy, dy)
    csum_add(&p.sxx, dx * dx)
    csum_add(&p.syy, dy * dy)
    csum_add(&p.sxy, dx * dy)
    p.n += 1
    if p.runx > 0 and x == p.lastx:
        p.runx += 1
    else:
        p.runx = 1
        p.lastx = x
    if p.runy > 0 and y == p.lasty:
        p.runy += 1
    else:
        p.runy = 1
        p.lasty = y


cdef inline void pair_remove(PairMoments* p, double x, double y) noexcept nogil:
    cdef double dx = x - p.kx
    cdef double dy = y - p.ky
    p.n -= 1
    if p.n <= 0:
        p.n = 0
        p.sx.n = 0; p.sx.s = 0.0; p.sx.c = 0.0
        p.sy.n = 0; p.sy.s = 0.0; p.sy.c = 0.0
        p.sxx.n = 0; p.sxx.s = 0.0; p.sxx.c = 0.0
        p.syy.n = 0; p.syy.s = 0.0; p.syy.c = 0.0
        p.sxy.n = 0; p.sxy.s = 0.0; p.sxy.c = 0.0
        p.runx = 0
        p.runy = 0
        return
    csum_remove(&p.sx, dx)
    csum_remove(&p.sy, dy)
    csum_remove(&p.sxx, dx * dx)
    csum_remove(&p.syy, dy * dy)
    csum_remove(&p.sxy, dx * dy)


cdef inline void pair_fit(const PairMoments* p, double* slope, double* r2) noexcept nogil:
    # OLS slope of y on x (with intercept) and its R^2; NaN when undefined.
    cdef double n, sx, sy, cxx, cyy, cxy
    slope[0] = NAN
    r2[0] = NAN
    if p.n < 3 or p.runx >= p.n:
        return
    n = <double>p.n
    sx = csum_value(&p.sx)
    sy = csum_value(&p.sy)
    cxx = csum_value(&p.sxx) - sx * sx / n
    cxy = csum_value(&p.sxy) - sx * sy / n
    if cxx <= 0.0:
        return
    slope[0] = cxy / cxx
    if p.runy >= p.n:
        return
    cyy = csum_value(&p.syy) - sy * sy / n
    if cyy <= 0.0:
        return
    r2[0] = (cxy * cxy) / (cxx * cyy)


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
