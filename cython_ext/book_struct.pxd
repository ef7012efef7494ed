# cython: language_level=3
"""Structural (single-snapshot) book features as inline nogil C.

Why separate: these functions see one snapshot only (no state), so they are the
part of the kernel that is easiest to check against the reference; the engine
in book_engine.pyx calls them once per snapshot.  Layout of the output vector
`f` (N_SCALAR scalars, then 5 blocks of `nlev` level columns, then 3 blocks of
`nband` band columns) must match `kernel_names()` in fluxforge/features/layout.py.
Depth aggregates come precomputed over the full rebuilt book (book_rebuild.pyx) in
the `agg` vector: per side AG_BANDS sums then `nband` band sums, bids first.
"""
from libc.math cimport NAN, INFINITY, isfinite

cdef enum:
    SC_BEST_BID = 0
    SC_BEST_ASK = 1
    SC_MID = 2
    SC_SPREAD = 3
    SC_RELSP = 4
    SC_MICRO = 5
    SC_MICRO_MINUS_MID = 6
    SC_WMID = 7
    SC_TOTAL_IMB = 8
    SC_TOTAL_BID = 9
    SC_TOTAL_ASK = 10
    SC_BID_SLOPE = 11
    SC_ASK_SLOPE = 12
    SC_BID_CONC = 13
    SC_ASK_CONC = 14
    SC_COG = 15
    SC_COG_VS_MID = 16
    SC_SMART_BID = 17
    SC_SMART_ASK = 18
    SC_SMART_IMB = 19
    SC_VWAP_BID5 = 20
    SC_VWAP_ASK5 = 21
    SC_VWAP_SPREAD = 22
    SC_PRESSURE = 23
    SC_LAMBDA = 24
    SC_BOOK_DEPTH = 25
    SC_BID_LEVELS = 26
    SC_ASK_LEVELS = 27
    SC_CROSSED = 28
    SC_LOCKED = 29
    SC_IMB_TOP3 = 30
    SC_IMB_TOP5 = 31
    SC_IMB_TOP10 = 32
    SC_BID_DSLOPE = 33
    SC_ASK_DSLOPE = 34
    SC_DSLOPE_ASYM = 35
    SC_BID_DECAY5 = 36
    SC_ASK_DECAY5 = 37
    SC_BID_HALF = 38
    SC_ASK_HALF = 39
    SC_CONVEXITY = 40
    N_SCALAR = 41
    MAX_TOP_LEVELS = 64   # FeatureOptions.max_levels <= 50


cdef inline int book_compact(const double[:, :] px, const double[:, :] sz, Py_ssize_t row,
                             int maxl, double* opx, double* osz) noexcept nogil:
    """Copy the first `maxl` usable levels (finite price > 0, finite size > 0) of one side."""
    cdef Py_ssize_t j, ncol = px.shape[1]
    cdef int n = 0
    cdef double p, q
    for j in range(ncol):
        if n >= maxl:
            break
        p = px[row, j]
        q = sz[row, j]
        if isfinite(p) and isfinite(q) and p > 0.0 and q > 0.0:
            opx[n] = p
            osz[n] = q
            n += 1
    return n


cdef inline double _ratio_diff(double a, double b) noexcept nogil:
    # (a - b) / (a + b), NaN when both are zero.
    if a + b == 0.0:
        return NAN
    return (a - b) / (a + b)


cdef inline double _top_imbalance(const double* bq, int nb, const double* aq, int na, int k, int nlev) noexcept nogil:
    # (sum of the first k bid sizes - ask sizes) / their total; NaN when fewer than k levels are read.
    cdef int i
    cdef double sb = 0.0, sa = 0.0
    if k > nlev:
        return NAN
    for i in range(nb if nb < k else k):
        sb += bq[i]
    for i in range(na if na < k else k):
        sa += aq[i]
    return _ratio_diff(sb, sa)


cdef inline double _depth_slope(const double* p, const double* q, int n, double mid, bint bid) noexcept nogil:
    # OLS slope (with intercept) of cumulative size on distance from mid in bps, over n top levels.
    cdef double d[MAX_TOP_LEVELS]
    cdef double cq[MAX_TOP_LEVELS]
    cdef double cum = 0.0, sd = 0.0, sq = 0.0, md, mq, sxx = 0.0, sxy = 0.0, lo, hi
    cdef int i
    if n < 2 or n > MAX_TOP_LEVELS:
        return NAN
    for i in range(n):
        d[i] = (mid - p[i]) / mid * 10000.0 if bid else (p[i] - mid) / mid * 10000.0
        cum += q[i]
        cq[i] = cum
        sd += d[i]
        sq += cum
    lo = d[0]
    hi = d[0]
    for i in range(n):
        lo = d[i] if d[i] < lo else lo
        hi = d[i] if d[i] > hi else hi
    if lo == hi:
        return NAN
    md = sd / n
    mq = sq / n
    for i in range(n):
        sxx += (d[i] - md) * (d[i] - md)
        sxy += (d[i] - md) * (cq[i] - mq)
    return sxy / sxx


cdef inline double _half_depth_level(const double* q, int n) noexcept nogil:
    # First 0-based level at which the cumulative size reaches half the side's size (sequential sums).
    cdef int i
    cdef double total = 0.0, cum = 0.0
    if n == 0:
        return NAN
    for i in range(n):
        total += q[i]
    for i in range(n):
        cum += q[i]
        if cum >= 0.5 * total:
            return i
    return n - 1


cdef struct Core:
    # What the stateful features need from every snapshot (the rest only on emitted rows).
    bint valid
    bint crossed
    double mid, spread, relsp, imb0, depth0, bid_slope, ask_slope, cog_vs_mid, tb, ta


cdef enum:
    # per-side block of the aggregate vector the rebuild kernel emits (book_rebuild.pyx)
    AG_TOTAL = 0
    AG_PQ = 1
    AG_DQ = 2
    AG_Q2 = 3
    AG_SMART = 4
    AG_W = 5
    AG_DEEP = 6
    AG_BANDS = 7


cdef inline bint book_core(const double* bp, const double* bq, int nb, const double* ap, const double* aq,
                           int na, const double* agg, int nband, Core* c) noexcept nogil:
    """Core values: best levels from the top levels, depth sums from the full book (`agg`)."""
    cdef double mid
    cdef const double* gb = agg
    cdef const double* ga = agg + AG_BANDS + nband
    c.crossed = nb > 0 and na > 0 and bp[0] > ap[0]
    c.valid = nb > 0 and na > 0 and not c.crossed
    if not c.valid:
        c.mid = NAN
        c.spread = NAN
        c.relsp = NAN
        return 0
    mid = 0.5 * (bp[0] + ap[0])
    c.mid = mid
    c.spread = ap[0] - bp[0]
    c.relsp = (ap[0] - bp[0]) / mid
    c.imb0 = (bq[0] - aq[0]) / (bq[0] + aq[0])
    c.depth0 = gb[AG_BANDS] + ga[AG_BANDS]
    c.tb = gb[AG_TOTAL]
    c.ta = ga[AG_TOTAL]
    c.bid_slope = c.tb / (mid - gb[AG_DEEP]) if mid - gb[AG_DEEP] > 0.0 else NAN
    c.ask_slope = c.ta / (ga[AG_DEEP] - mid) if ga[AG_DEEP] - mid > 0.0 else NAN
    c.cog_vs_mid = (gb[AG_DQ] + ga[AG_DQ]) / (c.tb + c.ta) / mid
    return 1


cdef inline int book_structural(const double* bp, const double* bq, int nb,
                                const double* ap, const double* aq, int na,
                                int nlev, const double* agg, int nband, double* f) noexcept nogil:
    """Fill f with the structural features; returns 1 if the book is valid (two sides, not crossed).

    Level features (L{i}, first-5 VWAPs) read the top levels; depth aggregates (totals,
    slopes, concentration, centre of gravity, smart depth, pressure, bands) read `agg`,
    the rebuild kernel's sums over the full book up to the widest band."""
    cdef int i, j, nv = N_SCALAR + 5 * nlev + 3 * nband
    cdef int lv = N_SCALAR, lb = N_SCALAR + 5 * nlev
    cdef double mid, tb, ta, qb, qa, inband = 0.0
    cdef double q5b = 0.0, q5a = 0.0, pq5b = 0.0, pq5a = 0.0, d5b = 0.0, d5a = 0.0
    cdef const double* gb = agg
    cdef const double* ga = agg + AG_BANDS + nband
    for i in range(nv):
        f[i] = NAN
    f[SC_BEST_BID] = bp[0] if nb > 0 else NAN
    f[SC_BEST_ASK] = ap[0] if na > 0 else NAN
    f[SC_BOOK_DEPTH] = nb if nb < na else na
    f[SC_BID_LEVELS] = nb
    f[SC_ASK_LEVELS] = na
    f[SC_CROSSED] = 1.0 if (nb > 0 and na > 0 and bp[0] > ap[0]) else 0.0
    f[SC_LOCKED] = 1.0 if (nb > 0 and na > 0 and bp[0] == ap[0]) else 0.0
    for i in range(nb):
        f[lv + i] = bp[i]
        f[lv + nlev + i] = bq[i]
    for i in range(na):
        f[lv + 2 * nlev + i] = ap[i]
        f[lv + 3 * nlev + i] = aq[i]
    if nb == 0 or na == 0 or f[SC_CROSSED] != 0.0:
        return 0

    mid = 0.5 * (bp[0] + ap[0])
    f[SC_MID] = mid
    f[SC_SPREAD] = ap[0] - bp[0]
    f[SC_RELSP] = (ap[0] - bp[0]) / mid
    f[SC_MICRO] = (bq[0] * ap[0] + aq[0] * bp[0]) / (bq[0] + aq[0])
    f[SC_MICRO_MINUS_MID] = (bq[0] * (ap[0] - mid) + aq[0] * (bp[0] - mid)) / (bq[0] + aq[0])
    f[SC_WMID] = (bq[0] * bp[0] + aq[0] * ap[0]) / (bq[0] + aq[0])
    for i in range(nb if nb < 5 else 5):
        q5b += bq[i]
        pq5b += bp[i] * bq[i]
        d5b += (mid - bp[i]) * bq[i]
    for i in range(na if na < 5 else 5):
        q5a += aq[i]
        pq5a += ap[i] * aq[i]
        d5a += (ap[i] - mid) * aq[i]
    tb = gb[AG_TOTAL]
    ta = ga[AG_TOTAL]
    f[SC_TOTAL_BID] = tb
    f[SC_TOTAL_ASK] = ta
    f[SC_TOTAL_IMB] = (tb - ta) / (tb + ta)
    f[SC_BID_SLOPE] = tb / (mid - gb[AG_DEEP]) if mid - gb[AG_DEEP] > 0.0 else NAN
    f[SC_ASK_SLOPE] = ta / (ga[AG_DEEP] - mid) if ga[AG_DEEP] - mid > 0.0 else NAN
    f[SC_BID_CONC] = gb[AG_Q2] / (tb * tb)
    f[SC_ASK_CONC] = ga[AG_Q2] / (ta * ta)
    f[SC_COG] = (gb[AG_PQ] + ga[AG_PQ]) / (tb + ta)
    f[SC_COG_VS_MID] = (gb[AG_DQ] + ga[AG_DQ]) / (tb + ta) / mid
    f[SC_SMART_BID] = gb[AG_SMART]
    f[SC_SMART_ASK] = ga[AG_SMART]
    f[SC_SMART_IMB] = (gb[AG_SMART] - ga[AG_SMART]) / (gb[AG_SMART] + ga[AG_SMART])
    f[SC_VWAP_BID5] = pq5b / q5b
    f[SC_VWAP_ASK5] = pq5a / q5a
    f[SC_VWAP_SPREAD] = d5a / q5a + d5b / q5b
    f[SC_PRESSURE] = (gb[AG_W] - ga[AG_W]) / (gb[AG_W] + ga[AG_W])
    f[SC_LAMBDA] = f[SC_VWAP_SPREAD] / (q5b + q5a)
    for i in range(nlev):
        qb = bq[i] if i < nb else 0.0
        qa = aq[i] if i < na else 0.0
        f[lv + 4 * nlev + i] = _ratio_diff(qb, qa)
    for j in range(nband):
        f[lb + j] = gb[AG_BANDS + j]
        f[lb + nband + j] = ga[AG_BANDS + j]
        f[lb + 2 * nband + j] = _ratio_diff(f[lb + j], f[lb + nband + j])
    # Shape of the top levels (Daedalus's shape columns, defined over the `max_levels` levels read)
    f[SC_IMB_TOP3] = _top_imbalance(bq, nb, aq, na, 3, nlev)
    f[SC_IMB_TOP5] = _top_imbalance(bq, nb, aq, na, 5, nlev)
    f[SC_IMB_TOP10] = _top_imbalance(bq, nb, aq, na, 10, nlev)
    f[SC_BID_DSLOPE] = _depth_slope(bp, bq, nb, mid, 1)
    f[SC_ASK_DSLOPE] = _depth_slope(ap, aq, na, mid, 0)
    f[SC_DSLOPE_ASYM] = _ratio_diff(f[SC_BID_DSLOPE], f[SC_ASK_DSLOPE])
    f[SC_BID_DECAY5] = bq[4] / bq[0] if nb >= 5 else NAN
    f[SC_ASK_DECAY5] = aq[4] / aq[0] if na >= 5 else NAN
    f[SC_BID_HALF] = _half_depth_level(bq, nb)
    f[SC_ASK_HALF] = _half_depth_level(aq, na)
    # share of the depth within the widest band that lies in the first band
    for j in range(nband):
        inband += gb[AG_BANDS + j] + ga[AG_BANDS + j]
    f[SC_CONVEXITY] = (gb[AG_BANDS] + ga[AG_BANDS]) / inband if inband > 0.0 else NAN
    return 1


cdef inline void order_flow(const double* cur, const double* prev, int nlev, int nb, int na, int pnb, int pna,
                            int nofi, const double* weights, double* ofi, double* mlofi) noexcept nogil:
    """Cont-Kukanov-Stoikov OFI of level 0 and the weighted multi-level OFI (Xu-Gould-Howison).

    `cur`/`prev` hold 4 blocks of `nlev`: bid prices, bid sizes, ask prices, ask sizes.
    A missing level is a bid at -inf / an ask at +inf with size 0.
    """
    cdef int m
    cdef double b, q, b0, q0, a, qa, a0, qa0, e, total = 0.0
    for m in range(nofi):
        if m < nb:
            b = cur[m]; q = cur[nlev + m]
        else:
            b = -INFINITY; q = 0.0
        if m < pnb:
            b0 = prev[m]; q0 = prev[nlev + m]
        else:
            b0 = -INFINITY; q0 = 0.0
        if m < na:
            a = cur[2 * nlev + m]; qa = cur[3 * nlev + m]
        else:
            a = INFINITY; qa = 0.0
        if m < pna:
            a0 = prev[2 * nlev + m]; qa0 = prev[3 * nlev + m]
        else:
            a0 = INFINITY; qa0 = 0.0
        e = 0.0
        if b >= b0:
            e += q
        if b <= b0:
            e -= q0
        if a <= a0:
            e -= qa
        if a >= a0:
            e += qa0
        if m == 0:
            ofi[0] = e
        total += weights[m] * e
    mlofi[0] = total
