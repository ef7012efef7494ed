# cython: language_level=3
"""Per-symbol streaming feature state: books + trades in, hf rows and closed bars out.

Why one `cdef class`: every stateful feature (returns, OFI, rolling windows,
spread regime, Kyle's lambda, VPIN, bars) of one (exchange, symbol) lives in C
structs and C arrays owned by a `BookEngine`, so a chunk is processed by one
`nogil` loop over typed memoryviews and the state carries over to the next
chunk exactly (N chunks == 1 chunk).  `fluxforge.features` is the Python face;
docs/features.md defines every column.  Event order: merged by exchange time,
resets first, then trades, then the book snapshot at equal timestamps.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport NAN, INFINITY, isfinite, log, log2, sqrt, floor, ceil, fabs
from libc.stdint cimport int64_t, int32_t, int8_t, uint64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memset, memcpy

from rolling_math cimport (
    CSum, csum_add, csum_remove, csum_value,
    Moments, mom_add, mom_remove, mom_mean, mom_std,
    PairMoments, pair_add, pair_remove, pair_fit,
    fen_add, fen_prefix, fen_kth,
)
from book_struct cimport (
    book_compact, book_structural, N_SCALAR, SC_MID, SC_SPREAD, SC_RELSP, SC_CROSSED,
    SC_BID_SLOPE, SC_ASK_SLOPE, SC_COG_VS_MID,
)

cnp.import_array()

cdef enum:
    F_VALID = 1
    F_RET = 2           # r, ofi, mlofi and kyle x are defined (previous valid snapshot exists)
    F_SLOPE = 4
    F_COG = 8
    REG_TIGHT = 0
    REG_NORMAL = 1
    REG_WIDE = 2
    REG_NONE = 3
    NBINS = 4096        # spread-percentile bins: 64 per octave of relative spread
    BAR_FIELDS = 20
    MAX_EMPTY_BARS = 86400
    N_DYN = 6
    N_ROLL = 8
    N_EXTRA = 12

cdef struct Snap:
    int64_t ts
    double r
    double ofi
    double mlofi
    double spread
    double depth0
    double slope_mom
    double cog_mom
    double kx
    int32_t qbin
    int8_t flags
    int8_t regime

cdef struct Trade:
    int64_t ts
    double amount
    int8_t side

cdef struct HWin:
    int64_t wms
    uint64_t stail
    uint64_t ttail
    Moments ret
    CSum r2
    CSum ofi
    CSum mlofi
    CSum spread
    CSum buy
    CSum sell

cdef struct MomWin:
    int64_t wms
    uint64_t tail
    Moments depth0
    Moments slope
    Moments cog

cdef struct KyleWin:
    int64_t wms
    uint64_t tail
    PairMoments pm

cdef struct RegWin:
    int64_t wms
    uint64_t tail
    int64_t n
    int64_t tight_ms
    int64_t wide_ms
    int8_t has_ev
    int8_t ev_regime

cdef struct Bar:
    int64_t k
    double prev_close
    double open, high, low, close
    double sum_spread, min_spread, max_spread, sum_relsp, sum_imb, sum_ofi, rv
    int64_t count, n_valid, n_crossed, n_trades
    double buy, sell, pq, q

cdef struct State:
    # Every scalar of the engine (serialised verbatim by get_state).
    int64_t last_ts
    int64_t next_emit
    int64_t t0
    int64_t first_snap_ts
    int8_t has_t0
    int8_t has_first_snap
    int8_t has_prev
    int8_t has_prev_vel
    int64_t prev_ts
    double prev_mid
    double prev_vel
    double prev_slope_diff
    double prev_cog
    int8_t has_prev_slope
    int8_t has_prev_cog
    int prev_nb
    int prev_na
    double pend_signed
    double pend_quote
    int64_t pend_n
    uint64_t shead
    uint64_t thead
    int8_t prev_regime
    int64_t prev_snap_ts
    int8_t has_prev_snap
    double last_close
    int64_t vpin_fill
    int64_t vpin_buy
    int64_t vpin_sell
    int64_t vpin_done
    int64_t vpin_sum
    int64_t n_books
    int64_t n_trades
    int64_t n_crossed
    int64_t n_one_sided
    int64_t n_resets


cdef int64_t NO_BAR = -9223372036854775807 - 1


cdef inline bint _warm(const State* st, int64_t t, int64_t wms) noexcept nogil:
    return st.has_t0 and t - st.t0 >= wms


cdef inline int64_t _qty_units(double amount) noexcept nogil:
    # VPIN counts volume in integer units of 1e-8 base so bucket edges are exact.
    return <int64_t>floor(amount * 1e8 + 0.5)


cdef class BookEngine:
    """Streaming feature state of one (exchange, symbol); see fluxforge.features.FeatureEngine."""

    cdef State st
    cdef int nlev, nband, nofi, nh, nbar, ns, ncols
    cdef double* edges
    cdef double* ofi_w
    cdef int64_t emit_ms, mom_ms
    cdef double tight_pct, wide_pct, tight_thr, wide_thr
    cdef bint dynamic_regime, enable_vpin
    cdef int64_t vpin_v, vpin_n
    cdef HWin* hw
    cdef MomWin mw
    cdef KyleWin kw
    cdef RegWin rw
    cdef Bar* bars
    cdef int64_t* bar_ms
    cdef Snap* sring
    cdef uint64_t scap
    cdef Trade* tring
    cdef uint64_t tcap
    cdef int32_t* fen
    cdef int64_t* vpin_ring
    cdef double* lv           # current and previous compacted levels: 8 blocks of nlev
    cdef double* row
    cdef double** bout
    cdef int64_t* bout_n
    cdef int64_t* bout_cap
    cdef object fingerprint

    def __cinit__(self, int max_levels, edges_bps, int ofi_levels, ofi_weights, horizons_ms, bar_ms,
                  int64_t emit_ms, double tight_thr, double wide_thr, bint dynamic_regime, int64_t regime_ms,
                  double tight_pct, double wide_pct, int64_t kyle_ms, bint enable_vpin, double vpin_bucket,
                  int64_t vpin_buckets, int64_t momentum_ms):
        cdef int i
        self.nlev = max_levels
        self.nband = len(edges_bps)
        self.nofi = ofi_levels
        self.nh = len(horizons_ms)
        self.nbar = len(bar_ms)
        self.ns = N_SCALAR + 5 * self.nlev + 3 * self.nband
        self.ncols = self.ns + N_DYN + N_ROLL * self.nh + N_EXTRA
        self.emit_ms = emit_ms
        self.tight_thr = tight_thr
        self.wide_thr = wide_thr
        self.dynamic_regime = dynamic_regime
        self.tight_pct = tight_pct
        self.wide_pct = wide_pct
        self.enable_vpin = enable_vpin
        self.vpin_v = _qty_units(vpin_bucket)
        if self.vpin_v < 1:
            self.vpin_v = 1
        self.vpin_n = vpin_buckets
        self.mom_ms = momentum_ms
        self.edges = <double*>calloc(self.nband + 1, sizeof(double))
        self.ofi_w = <double*>calloc(self.nofi + 1, sizeof(double))
        self.hw = <HWin*>calloc(self.nh + 1, sizeof(HWin))
        self.bars = <Bar*>calloc(self.nbar + 1, sizeof(Bar))
        self.bar_ms = <int64_t*>calloc(self.nbar + 1, sizeof(int64_t))
        self.fen = <int32_t*>calloc(NBINS + 1, sizeof(int32_t))
        self.vpin_ring = <int64_t*>calloc(self.vpin_n + 1, sizeof(int64_t))
        self.lv = <double*>calloc(8 * self.nlev, sizeof(double))
        self.row = <double*>calloc(self.ncols, sizeof(double))
        self.bout = <double**>calloc(self.nbar + 1, sizeof(double*))
        self.bout_n = <int64_t*>calloc(self.nbar + 1, sizeof(int64_t))
        self.bout_cap = <int64_t*>calloc(self.nbar + 1, sizeof(int64_t))
        self.scap = 1024
        self.sring = <Snap*>calloc(self.scap, sizeof(Snap))
        self.tcap = 1024
        self.tring = <Trade*>calloc(self.tcap, sizeof(Trade))
        for i in range(self.nband):
            self.edges[i] = edges_bps[i]
        for i in range(self.nofi):
            self.ofi_w[i] = ofi_weights[i]
        for i in range(self.nh):
            self.hw[i].wms = horizons_ms[i]
        for i in range(self.nbar):
            self.bar_ms[i] = bar_ms[i]
            self.bars[i].k = NO_BAR
        self.mw.wms = momentum_ms
        self.kw.wms = kyle_ms
        self.rw.wms = regime_ms
        self.st.next_emit = NO_BAR
        self.st.last_ts = NO_BAR
        self.fingerprint = (max_levels, tuple(edges_bps), ofi_levels, tuple(ofi_weights), tuple(horizons_ms),
                            tuple(bar_ms), emit_ms, tight_thr, wide_thr, dynamic_regime, regime_ms, tight_pct,
                            wide_pct, kyle_ms, enable_vpin, vpin_bucket, vpin_buckets, momentum_ms)
        self._reset()
        self.st.n_resets = 0

    def __dealloc__(self):
        cdef int i
        if self.bout != NULL:
            for i in range(self.nbar):
                free(self.bout[i])
        free(self.edges); free(self.ofi_w); free(self.hw); free(self.bars); free(self.bar_ms)
        free(self.fen); free(self.vpin_ring); free(self.lv); free(self.row); free(self.bout)
        free(self.bout_n); free(self.bout_cap); free(self.sring); free(self.tring)

    # ------------------------------------------------------------------ state
    cdef void _reset(self) noexcept nogil:
        """Forget everything stateful (gap/resync): features are NaN until warm again."""
        cdef int i
        cdef int64_t w
        self.st.has_t0 = 0
        self.st.has_first_snap = 0
        self.st.has_prev = 0
        self.st.has_prev_vel = 0
        self.st.has_prev_slope = 0
        self.st.has_prev_cog = 0
        self.st.has_prev_snap = 0
        self.st.pend_signed = 0.0
        self.st.pend_quote = 0.0
        self.st.vpin_fill = 0
        self.st.vpin_buy = 0
        self.st.vpin_sell = 0
        self.st.vpin_done = 0
        self.st.vpin_sum = 0
        self.st.n_resets += 1
        for i in range(self.nh):
            w = self.hw[i].wms
            memset(&self.hw[i], 0, sizeof(HWin))
            self.hw[i].wms = w
            self.hw[i].stail = self.st.shead
            self.hw[i].ttail = self.st.thead
        w = self.mw.wms
        memset(&self.mw, 0, sizeof(MomWin))
        self.mw.wms = w
        self.mw.tail = self.st.shead
        w = self.kw.wms
        memset(&self.kw, 0, sizeof(KyleWin))
        self.kw.wms = w
        self.kw.tail = self.st.shead
        w = self.rw.wms
        memset(&self.rw, 0, sizeof(RegWin))
        self.rw.wms = w
        self.rw.tail = self.st.shead
        memset(self.fen, 0, (NBINS + 1) * sizeof(int32_t))
        for i in range(self.nbar):
            self.bars[i].prev_close = NAN

    def reset(self):
        self._reset()

    @property
    def last_ts(self):
        return None if self.st.last_ts == NO_BAR else self.st.last_ts

    @property
    def fingerprint(self):
        return self.fingerprint

    @property
    def ncols(self):
        return self.ncols

    def stats(self):
        return {"books": self.st.n_books, "trades": self.st.n_trades, "crossed": self.st.n_crossed,
                "one_sided": self.st.n_one_sided, "resets": self.st.n_resets}

    # ------------------------------------------------------------ ring buffers
    cdef uint64_t _min_stail(self) noexcept nogil:
        cdef uint64_t m = self.mw.tail
        cdef int i
        if self.kw.tail < m:
            m = self.kw.tail
        if self.rw.tail < m:
            m = self.rw.tail
        for i in range(self.nh):
            if self.hw[i].stail < m:
                m = self.hw[i].stail
        return m

    cdef uint64_t _min_ttail(self) noexcept nogil:
        cdef uint64_t m = self.st.thead
        cdef int i
        for i in range(self.nh):
            if self.hw[i].ttail < m:
                m = self.hw[i].ttail
        return m

    cdef Snap* _snap_push(self) noexcept nogil:
        cdef uint64_t lo = self._min_stail(), pos, cap
        cdef Snap* fresh
        if self.st.shead - lo >= self.scap:
            cap = self.scap * 2
            fresh = <Snap*>malloc(cap * sizeof(Snap))
            pos = lo
            while pos < self.st.shead:
                fresh[pos & (cap - 1)] = self.sring[pos & (self.scap - 1)]
                pos += 1
            free(self.sring)
            self.sring = fresh
            self.scap = cap
        pos = self.st.shead
        self.st.shead += 1
        return &self.sring[pos & (self.scap - 1)]

    cdef inline Snap* _snap(self, uint64_t pos) noexcept nogil:
        return &self.sring[pos & (self.scap - 1)]

    cdef void _trade_push(self, int64_t ts, double amount, int8_t side) noexcept nogil:
        cdef uint64_t lo = self._min_ttail(), pos, cap
        cdef Trade* fresh
        if self.st.thead - lo >= self.tcap:
            cap = self.tcap * 2
            fresh = <Trade*>malloc(cap * sizeof(Trade))
            pos = lo
            while pos < self.st.thead:
                fresh[pos & (cap - 1)] = self.tring[pos & (self.tcap - 1)]
                pos += 1
            free(self.tring)
            self.tring = fresh
            self.tcap = cap
        pos = self.st.thead
        self.st.thead += 1
        self.tring[pos & (self.tcap - 1)].ts = ts
        self.tring[pos & (self.tcap - 1)].amount = amount
        self.tring[pos & (self.tcap - 1)].side = side

    # -------------------------------------------------------------------- bars
    cdef void _bar_start(self, Bar* b, int64_t k) noexcept nogil:
        cdef double prev = b.prev_close
        memset(b, 0, sizeof(Bar))
        b.k = k
        b.prev_close = prev
        b.open = NAN
        b.high = NAN
        b.low = NAN
        b.close = NAN
        b.min_spread = NAN
        b.max_spread = NAN

    cdef void _bar_emit(self, int d, Bar* b) noexcept nogil:
        cdef double* o
        cdef int64_t cap
        cdef double nv = <double>b.n_valid
        if self.bout_n[d] >= self.bout_cap[d]:
            cap = 64 if self.bout_cap[d] == 0 else self.bout_cap[d] * 2
            self.bout[d] = <double*>realloc(self.bout[d], cap * BAR_FIELDS * sizeof(double))
            self.bout_cap[d] = cap
        o = &self.bout[d][self.bout_n[d] * BAR_FIELDS]
        self.bout_n[d] += 1
        o[0] = <double>(b.k * self.bar_ms[d])
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

    cdef void _bars_advance(self, int64_t ts) noexcept nogil:
        cdef int d
        cdef int64_t k, e
        cdef Bar* b
        for d in range(self.nbar):
            b = &self.bars[d]
            k = ts // self.bar_ms[d]
            if b.k == NO_BAR:
                self._bar_start(b, k)
            elif k > b.k:
                self._bar_emit(d, b)
                e = b.k + 1
                if k - e <= MAX_EMPTY_BARS:
                    while e < k:
                        self._bar_start(b, e)
                        self._bar_emit(d, b)
                        e += 1
                self._bar_start(b, k)

    def flush_bars(self):
        """Emit every open bar (end of stream); later events would start fresh bars."""
        cdef int d
        for d in range(self.nbar):
            if self.bars[d].k != NO_BAR:
                self._bar_emit(d, &self.bars[d])
                self.bars[d].k = NO_BAR
        return self._take_bars()

    cdef list _take_bars(self):
        cdef int d
        cdef double[:, ::1] view
        out = []
        for d in range(self.nbar):
            arr = np.empty((self.bout_n[d], BAR_FIELDS), dtype=np.float64)
            if self.bout_n[d] > 0:
                view = arr
                memcpy(&view[0, 0], self.bout[d], self.bout_n[d] * BAR_FIELDS * sizeof(double))
            self.bout_n[d] = 0
            out.append(arr)
        return out

    # ------------------------------------------------------------------ trades
    cdef void _event_time(self, int64_t ts) noexcept nogil:
        if not self.st.has_t0:
            self.st.has_t0 = 1
            self.st.t0 = ts
        self._bars_advance(ts)
        self.st.last_ts = ts

    cdef void _on_trade(self, int64_t ts, double price, double amount, int8_t side) noexcept nogil:
        cdef int d
        cdef Bar* b
        cdef int64_t units, take, imb
        self.st.n_trades += 1
        for d in range(self.nbar):
            b = &self.bars[d]
            b.n_trades += 1
            b.pq += price * amount
            b.q += amount
            if side > 0:
                b.buy += amount
            elif side < 0:
                b.sell += amount
        self.st.pend_quote += price * amount
        if side == 0:
            return
        self.st.pend_signed += side * amount
        self._trade_push(ts, amount, side)
        for d in range(self.nh):
            if side > 0:
                csum_add(&self.hw[d].buy, amount)
            else:
                csum_add(&self.hw[d].sell, amount)
        if not self.enable_vpin:
            return
        units = _qty_units(amount)
        while units > 0:
            take = self.vpin_v - self.st.vpin_fill
            if units < take:
                take = units
            if side > 0:
                self.st.vpin_buy += take
            else:
                self.st.vpin_sell += take
            self.st.vpin_fill += take
            units -= take
            if self.st.vpin_fill == self.vpin_v:
                imb = self.st.vpin_buy - self.st.vpin_sell
                if imb < 0:
                    imb = -imb
                d = <int>(self.st.vpin_done % self.vpin_n)
                if self.st.vpin_done >= self.vpin_n:
                    self.st.vpin_sum -= self.vpin_ring[d]
                self.vpin_ring[d] = imb
                self.st.vpin_sum += imb
                self.st.vpin_done += 1
                self.st.vpin_fill = 0
                self.st.vpin_buy = 0
                self.st.vpin_sell = 0

    # ------------------------------------------------------------------- books
    cdef void _evict(self, int64_t t) noexcept nogil:
        cdef int i
        cdef HWin* h
        cdef Snap* s
        cdef Snap* nxt
        cdef Trade* tr
        cdef int64_t seg
        for i in range(self.nh):
            h = &self.hw[i]
            while h.stail < self.st.shead and self._snap(h.stail).ts <= t - h.wms:
                s = self._snap(h.stail)
                if s.flags & F_VALID:
                    csum_remove(&h.spread, s.spread)
                if s.flags & F_RET:
                    mom_remove(&h.ret, s.r)
                    csum_remove(&h.r2, s.r * s.r)
                    csum_remove(&h.ofi, s.ofi)
                    csum_remove(&h.mlofi, s.mlofi)
                h.stail += 1
            while h.ttail < self.st.thead and self.tring[h.ttail & (self.tcap - 1)].ts <= t - h.wms:
                tr = &self.tring[h.ttail & (self.tcap - 1)]
                if tr.side > 0:
                    csum_remove(&h.buy, tr.amount)
                else:
                    csum_remove(&h.sell, tr.amount)
                h.ttail += 1
        while self.mw.tail < self.st.shead and self._snap(self.mw.tail).ts <= t - self.mw.wms:
            s = self._snap(self.mw.tail)
            if s.flags & F_VALID:
                mom_remove(&self.mw.depth0, s.depth0)
            if s.flags & F_SLOPE:
                mom_remove(&self.mw.slope, s.slope_mom)
            if s.flags & F_COG:
                mom_remove(&self.mw.cog, s.cog_mom)
            self.mw.tail += 1
        while self.kw.tail < self.st.shead and self._snap(self.kw.tail).ts <= t - self.kw.wms:
            s = self._snap(self.kw.tail)
            if s.flags & F_RET:
                pair_remove(&self.kw.pm, s.kx, s.r)
            self.kw.tail += 1
        while self.rw.tail < self.st.shead and self._snap(self.rw.tail).ts <= t - self.rw.wms:
            s = self._snap(self.rw.tail)
            nxt = self._snap(self.rw.tail + 1)
            seg = nxt.ts - s.ts
            if s.regime == REG_TIGHT:
                self.rw.tight_ms -= seg
            elif s.regime == REG_WIDE:
                self.rw.wide_ms -= seg
            if s.flags & F_VALID:
                fen_add(self.fen, NBINS, s.qbin, -1)
                self.rw.n -= 1
            self.rw.has_ev = 1
            self.rw.ev_regime = s.regime
            self.rw.tail += 1

    cdef void _ofi(self, const double* bp, const double* bq, int nb, const double* ap, const double* aq,
                   int na, double* ofi, double* mlofi) noexcept nogil:
        cdef const double* pbp = self.lv + 4 * self.nlev
        cdef const double* pbq = self.lv + 5 * self.nlev
        cdef const double* pap = self.lv + 6 * self.nlev
        cdef const double* paq = self.lv + 7 * self.nlev
        cdef int m, pnb = self.st.prev_nb, pna = self.st.prev_na
        cdef double b, q, b0, q0, a, qa, a0, qa0, e, inf = INFINITY, total = 0.0
        for m in range(self.nofi):
            if m < nb:
                b = bp[m]; q = bq[m]
            else:
                b = -inf; q = 0.0
            if m < pnb:
                b0 = pbp[m]; q0 = pbq[m]
            else:
                b0 = -inf; q0 = 0.0
            if m < na:
                a = ap[m]; qa = aq[m]
            else:
                a = inf; qa = 0.0
            if m < pna:
                a0 = pap[m]; qa0 = paq[m]
            else:
                a0 = inf; qa0 = 0.0
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
            total += self.ofi_w[m] * e
        mlofi[0] = total

    cdef void _on_book(self, int64_t ts, int nb, int na, bint emit, double* col, Py_ssize_t stride) noexcept nogil:
        cdef double* f = self.row
        cdef double* bp = self.lv
        cdef double* bq = self.lv + self.nlev
        cdef double* ap = self.lv + 2 * self.nlev
        cdef double* aq = self.lv + 3 * self.nlev
        cdef bint valid = book_structural(bp, bq, nb, ap, aq, na, self.nlev, self.edges, self.nband, f)
        cdef bint crossed = f[SC_CROSSED] != 0.0
        cdef double mid = f[SC_MID], r = NAN, ofi = NAN, mlofi = NAN, vel = NAN, accel = NAN, amihud = NAN
        cdef double dt, slope_diff, cog, depth0 = 0.0
        cdef int i, d, q = -1, ib = N_SCALAR + 5 * self.nlev
        cdef int8_t flags = 0, regime = REG_NONE
        cdef int64_t k, kt, kwd, n
        cdef Bar* b
        cdef Snap* s
        cdef HWin* h
        self.st.n_books += 1
        if crossed:
            self.st.n_crossed += 1
        elif not valid:
            self.st.n_one_sided += 1
        if valid:
            flags = F_VALID
            depth0 = f[ib] + f[ib + self.nband]
            if self.st.has_prev:
                flags |= F_RET
                r = log(mid / self.st.prev_mid)
                self._ofi(bp, bq, nb, ap, aq, na, &ofi, &mlofi)
                dt = (ts - self.st.prev_ts) / 1000.0
                if dt > 0.0:
                    vel = (mid - self.st.prev_mid) / dt
                    if self.st.has_prev_vel:
                        accel = (vel - self.st.prev_vel) / dt
                if self.st.pend_quote > 0.0:
                    amihud = fabs(r) / self.st.pend_quote
        # bars
        for d in range(self.nbar):
            b = &self.bars[d]
            b.count += 1
            if crossed:
                b.n_crossed += 1
            if valid:
                if b.n_valid == 0:
                    b.open = mid; b.high = mid; b.low = mid
                    b.min_spread = f[SC_SPREAD]; b.max_spread = f[SC_SPREAD]
                if mid > b.high:
                    b.high = mid
                if mid < b.low:
                    b.low = mid
                b.close = mid
                if f[SC_SPREAD] < b.min_spread:
                    b.min_spread = f[SC_SPREAD]
                if f[SC_SPREAD] > b.max_spread:
                    b.max_spread = f[SC_SPREAD]
                b.sum_spread += f[SC_SPREAD]
                b.sum_relsp += f[SC_RELSP]
                b.sum_imb += f[N_SCALAR + 4 * self.nlev]
                b.n_valid += 1
                if flags & F_RET:
                    b.sum_ofi += ofi
                    b.rv += r * r
        # close the previous regime segment, then append this snapshot
        if self.st.has_prev_snap:
            if self.st.prev_regime == REG_TIGHT:
                self.rw.tight_ms += ts - self.st.prev_snap_ts
            elif self.st.prev_regime == REG_WIDE:
                self.rw.wide_ms += ts - self.st.prev_snap_ts
        if not self.st.has_first_snap:
            self.st.has_first_snap = 1
            self.st.first_snap_ts = ts
        s = self._snap_push()
        s.ts = ts
        s.r = r
        s.ofi = ofi
        s.mlofi = mlofi
        s.spread = f[SC_SPREAD]
        s.depth0 = depth0
        s.kx = self.st.pend_signed
        s.slope_mom = NAN
        s.cog_mom = NAN
        s.qbin = -1
        if valid:
            slope_diff = f[SC_BID_SLOPE] - f[SC_ASK_SLOPE]
            if isfinite(slope_diff) and self.st.has_prev_slope:
                s.slope_mom = slope_diff - self.st.prev_slope_diff
                flags |= F_SLOPE
            cog = f[SC_COG_VS_MID]
            if self.st.has_prev_cog:
                s.cog_mom = cog - self.st.prev_cog
                flags |= F_COG
            if f[SC_RELSP] > 0.0:
                q = <int>floor((log2(f[SC_RELSP]) + 48.0) * 64.0)
                if q < 0:
                    q = 0
                elif q >= NBINS:
                    q = NBINS - 1
            else:
                q = 0
            s.qbin = q
        s.flags = flags
        for i in range(self.nh):
            h = &self.hw[i]
            if valid:
                csum_add(&h.spread, s.spread)
            if flags & F_RET:
                mom_add(&h.ret, r)
                csum_add(&h.r2, r * r)
                csum_add(&h.ofi, ofi)
                csum_add(&h.mlofi, mlofi)
        if valid:
            mom_add(&self.mw.depth0, depth0)
            if flags & F_SLOPE:
                mom_add(&self.mw.slope, s.slope_mom)
            if flags & F_COG:
                mom_add(&self.mw.cog, s.cog_mom)
            if flags & F_RET:
                pair_add(&self.kw.pm, s.kx, r)
            fen_add(self.fen, NBINS, q, 1)
            self.rw.n += 1
        self._evict(ts)
        # spread regime of this snapshot (window includes it)
        if valid:
            if self.dynamic_regime:
                n = self.rw.n
                kt = <int64_t>ceil(self.tight_pct * n / 100.0)
                kwd = <int64_t>ceil(self.wide_pct * n / 100.0)
                if kt < 1:
                    kt = 1
                if kwd < 1:
                    kwd = 1
                if q <= fen_kth(self.fen, NBINS, kt):
                    regime = REG_TIGHT
                elif q >= fen_kth(self.fen, NBINS, kwd):
                    regime = REG_WIDE
                else:
                    regime = REG_NORMAL
            else:
                if f[SC_RELSP] <= self.tight_thr:
                    regime = REG_TIGHT
                elif f[SC_RELSP] >= self.wide_thr:
                    regime = REG_WIDE
                else:
                    regime = REG_NORMAL
        s.regime = regime
        self.st.prev_regime = regime
        self.st.prev_snap_ts = ts
        self.st.has_prev_snap = 1
        if emit:
            self._emit_row(ts, valid, q, regime, r, vel, accel, ofi, mlofi, amihud, col, stride)
        if valid:
            self.st.has_prev = 1
            self.st.prev_mid = mid
            self.st.prev_ts = ts
            self.st.prev_nb = nb
            self.st.prev_na = na
            memcpy(self.lv + 4 * self.nlev, self.lv, 4 * self.nlev * sizeof(double))
            self.st.has_prev_vel = isfinite(vel)
            self.st.prev_vel = vel
            slope_diff = f[SC_BID_SLOPE] - f[SC_ASK_SLOPE]
            self.st.has_prev_slope = isfinite(slope_diff)
            self.st.prev_slope_diff = slope_diff
            self.st.has_prev_cog = 1
            self.st.prev_cog = f[SC_COG_VS_MID]
            self.st.pend_signed = 0.0
            self.st.pend_quote = 0.0

    cdef void _emit_row(self, int64_t t, bint valid, int q, int8_t regime, double r, double vel, double accel,
                        double ofi, double mlofi, double amihud, double* col, Py_ssize_t stride) noexcept nogil:
        cdef double* f = self.row
        cdef int i, c = self.ns
        cdef HWin* h
        cdef double buy, sell, part, denom, lo, tight, wide, lam, r2, p_lo
        cdef int64_t n
        cdef Snap* first
        f[c] = r; f[c + 1] = vel; f[c + 2] = accel; f[c + 3] = ofi; f[c + 4] = mlofi; f[c + 5] = amihud
        c += N_DYN
        for i in range(self.nh):
            h = &self.hw[i]
            if _warm(&self.st, t, h.wms):
                f[c] = sqrt(csum_value(&h.r2))
                f[c + 1] = mom_std(&h.ret)
                f[c + 2] = mom_mean(&h.ret)
                f[c + 3] = csum_value(&h.ofi)
                f[c + 4] = csum_value(&h.mlofi)
                buy = csum_value(&h.buy)
                sell = csum_value(&h.sell)
                f[c + 5] = (buy - sell) / (buy + sell) if buy + sell > 0.0 else NAN
                f[c + 6] = buy + sell
                f[c + 7] = csum_value(&h.spread) / <double>h.spread.n if h.spread.n > 0 else NAN
            else:
                for n in range(N_ROLL):
                    f[c + n] = NAN
            c += N_ROLL
        for n in range(N_EXTRA):
            f[c + n] = NAN
        if _warm(&self.st, t, self.mw.wms):
            f[c] = mom_std(&self.mw.depth0)
            f[c + 8] = mom_mean(&self.mw.slope)
            f[c + 9] = mom_std(&self.mw.slope)
            f[c + 10] = mom_mean(&self.mw.cog)
            f[c + 11] = mom_std(&self.mw.cog)
        if _warm(&self.st, t, self.rw.wms):
            if regime != REG_NONE:
                f[c + 1] = <double>regime
            tight = <double>self.rw.tight_ms
            wide = <double>self.rw.wide_ms
            if self.rw.has_ev:
                first = self._snap(self.rw.tail)
                part = <double>(first.ts - (t - self.rw.wms))
                if self.rw.ev_regime == REG_TIGHT:
                    tight += part
                elif self.rw.ev_regime == REG_WIDE:
                    wide += part
            lo = <double>(t - self.rw.wms)
            if <double>self.st.first_snap_ts > lo:
                lo = <double>self.st.first_snap_ts
            denom = <double>t - lo
            if denom > 0.0:
                f[c + 2] = tight / denom
                f[c + 3] = wide / denom
            if valid and self.rw.n > 0:
                p_lo = <double>fen_prefix(self.fen, q - 1)
                f[c + 4] = 100.0 * (p_lo + 0.5 * (<double>fen_prefix(self.fen, q) - p_lo)) / <double>self.rw.n
        if _warm(&self.st, t, self.kw.wms):
            pair_fit(&self.kw.pm, &lam, &r2)
            f[c + 5] = lam
            f[c + 6] = r2
        if self.enable_vpin and self.st.vpin_done >= self.vpin_n:
            f[c + 7] = <double>self.st.vpin_sum / (<double>self.vpin_n * <double>self.vpin_v)
        for i in range(self.ncols):
            col[i * stride] = f[i]

    # ------------------------------------------------------------ the loop
    def count_emits(self, const int64_t[::1] bts):
        """Rows `process` will emit for these snapshot times (no state change)."""
        cdef Py_ssize_t i, n = 0
        cdef int64_t nxt = self.st.next_emit
        with nogil:
            for i in range(bts.shape[0]):
                if self.emit_ms == 0:
                    n += 1
                elif bts[i] >= nxt:
                    n += 1
                    nxt = (bts[i] // self.emit_ms + 1) * self.emit_ms
        return n

    def process(self, const int64_t[::1] bts, const double[:, ::1] bpx, const double[:, ::1] bsz,
                const double[:, ::1] apx, const double[:, ::1] asz, const int64_t[::1] tts,
                const double[::1] tpx, const double[::1] tamt, const int8_t[::1] tside,
                const int64_t[::1] resets):
        """Run one chunk (books and trades each sorted by time).

        Returns (out[ncols, n_emit], emitted snapshot indices, resets consumed, bars per duration).
        """
        cdef Py_ssize_t nbk = bts.shape[0], ntr = tts.shape[0], nres = resets.shape[0]
        cdef Py_ssize_t i = 0, j = 0, r = 0, e = 0, n_emit = self.count_emits(bts)
        cdef int64_t ts
        cdef bint is_trade, do_reset, emit
        cdef int nb, na
        cdef double amount, price
        out = np.empty((self.ncols, n_emit), dtype=np.float64)
        idx = np.empty(n_emit, dtype=np.int64)
        cdef double[:, ::1] ov = out
        cdef int64_t[::1] iv = idx
        if bpx.shape[1] != bsz.shape[1] or apx.shape[1] != asz.shape[1]:
            raise ValueError("price and size level arrays differ in width")
        if bpx.shape[0] != nbk or bsz.shape[0] != nbk or apx.shape[0] != nbk or asz.shape[0] != nbk:
            raise ValueError("level arrays and timestamps differ in length")
        if tpx.shape[0] != ntr or tamt.shape[0] != ntr or tside.shape[0] != ntr:
            raise ValueError("trade columns differ in length")
        with nogil:
            while i < nbk or j < ntr:
                if j < ntr and (i >= nbk or tts[j] <= bts[i]):
                    ts = tts[j]
                    is_trade = 1
                    price = tpx[j]
                    amount = tamt[j]
                    if not (isfinite(price) and isfinite(amount) and price > 0.0 and amount > 0.0):
                        j += 1
                        continue
                else:
                    ts = bts[i]
                    is_trade = 0
                do_reset = 0
                while r < nres and resets[r] <= ts:
                    do_reset = 1
                    r += 1
                if do_reset:
                    self._reset()
                self._event_time(ts)
                if is_trade:
                    self._on_trade(ts, price, amount, tside[j])
                    j += 1
                else:
                    emit = self.emit_ms == 0 or ts >= self.st.next_emit
                    if emit and self.emit_ms > 0:
                        self.st.next_emit = (ts // self.emit_ms + 1) * self.emit_ms
                    nb = book_compact(bpx, bsz, i, self.nlev, self.lv, self.lv + self.nlev)
                    na = book_compact(apx, asz, i, self.nlev, self.lv + 2 * self.nlev, self.lv + 3 * self.nlev)
                    if emit:
                        self._on_book(ts, nb, na, 1, &ov[0, e], n_emit)
                        iv[e] = i
                        e += 1
                    else:
                        self._on_book(ts, nb, na, 0, NULL, 0)
                    i += 1
        return out, idx, r, self._take_bars()

    def apply_pending_reset(self):
        """A reset whose time is already past: applies before the next event."""
        self._reset()

    # ----------------------------------------------------------- checkpoints
    def get_state(self):
        """Everything needed to continue exactly: bytes for pickle (same build and options)."""
        cdef uint64_t lo = self._min_stail(), tlo = self._min_ttail(), pos
        snaps = bytearray((self.st.shead - lo) * sizeof(Snap))
        trades = bytearray((self.st.thead - tlo) * sizeof(Trade))
        cdef char* sp = snaps
        cdef char* tp = trades
        pos = lo
        while pos < self.st.shead:
            memcpy(sp + (pos - lo) * sizeof(Snap), self._snap(pos), sizeof(Snap))
            pos += 1
        pos = tlo
        while pos < self.st.thead:
            memcpy(tp + (pos - tlo) * sizeof(Trade), &self.tring[pos & (self.tcap - 1)], sizeof(Trade))
            pos += 1
        return {
            "fingerprint": self.fingerprint,
            "st": (<char*>&self.st)[:sizeof(State)],
            "hw": (<char*>self.hw)[:self.nh * sizeof(HWin)],
            "mw": (<char*>&self.mw)[:sizeof(MomWin)],
            "kw": (<char*>&self.kw)[:sizeof(KyleWin)],
            "rw": (<char*>&self.rw)[:sizeof(RegWin)],
            "bars": (<char*>self.bars)[:self.nbar * sizeof(Bar)],
            "fen": (<char*>self.fen)[:(NBINS + 1) * sizeof(int32_t)],
            "vpin": (<char*>self.vpin_ring)[:self.vpin_n * sizeof(int64_t)],
            "lv": (<char*>self.lv)[:8 * self.nlev * sizeof(double)],
            "snap_lo": lo, "snaps": bytes(snaps), "trade_lo": tlo, "trades": bytes(trades),
        }

    def set_state(self, dict state):
        cdef const unsigned char[::1] buf
        cdef uint64_t lo, n, pos, cap
        cdef Py_ssize_t k
        if state["fingerprint"] != self.fingerprint:
            raise ValueError("checkpoint was written with different feature options")
        for name, ptr, size in (("st", <size_t>&self.st, sizeof(State)),
                                ("hw", <size_t>self.hw, self.nh * sizeof(HWin)),
                                ("mw", <size_t>&self.mw, sizeof(MomWin)),
                                ("kw", <size_t>&self.kw, sizeof(KyleWin)),
                                ("rw", <size_t>&self.rw, sizeof(RegWin)),
                                ("bars", <size_t>self.bars, self.nbar * sizeof(Bar)),
                                ("fen", <size_t>self.fen, (NBINS + 1) * sizeof(int32_t)),
                                ("vpin", <size_t>self.vpin_ring, self.vpin_n * sizeof(int64_t)),
                                ("lv", <size_t>self.lv, 8 * self.nlev * sizeof(double))):
            data = state[name]
            if len(data) != size:
                raise ValueError(f"checkpoint field {name} has the wrong size")
            if size:
                buf = data
                memcpy(<void*>ptr, &buf[0], size)
        for kind in ("snaps", "trades"):
            data = state[kind]
            lo = state["snap_lo" if kind == "snaps" else "trade_lo"]
            n = len(data) // (sizeof(Snap) if kind == "snaps" else sizeof(Trade))
            cap = 1024
            while cap < 2 * n:
                cap *= 2
            if kind == "snaps":
                free(self.sring)
                self.sring = <Snap*>calloc(cap, sizeof(Snap))
                self.scap = cap
            else:
                free(self.tring)
                self.tring = <Trade*>calloc(cap, sizeof(Trade))
                self.tcap = cap
            if n:
                buf = data
                for pos in range(n):
                    if kind == "snaps":
                        memcpy(&self.sring[(lo + pos) & (cap - 1)], &buf[pos * sizeof(Snap)], sizeof(Snap))
                    else:
                        memcpy(&self.tring[(lo + pos) & (cap - 1)], &buf[pos * sizeof(Trade)], sizeof(Trade))
