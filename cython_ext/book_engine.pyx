# cython: language_level=3
"""Per-symbol streaming feature state: books + trades in, hf rows and closed bars out.

Why one `cdef class`: every stateful feature (returns, OFI, rolling windows,
spread regime, Kyle's lambda, VPIN, bars) of one (exchange, symbol) lives in C
structs and ring buffers owned by a `BookEngine`, so a chunk is processed by one
`nogil` loop over typed memoryviews and the state carries over to the next
chunk exactly (N chunks == 1 chunk).  `fluxforge.features` is the Python face;
docs/features.md defines every column.  Event order: merged by exchange time;
resets first, then trades, then the book snapshot at equal timestamps.

Cost model: per snapshot only the "core" book values, OFI, bars, the spread
regime and one append of cumulative sums; windows are evaluated (and their
tails advanced) only on emitted rows, from prefix sums (rolling_math.pxd).
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport NAN, INFINITY, isfinite, log, log2, sqrt, floor, ceil, fabs
from libc.stdint cimport int64_t, int32_t, int8_t, uint64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memset, memcpy

from rolling_math cimport DD, dd_add, dd_add_prod, dd_diff, dd_sub, dd_centred, Run, run_add, win_mean, win_std, fen_add, fen_prefix, fen_kth
from book_struct cimport Core, book_compact, book_core, book_structural, order_flow, N_SCALAR, AG_BANDS
from bar_accum cimport Bar, BAR_FIELDS, bar_start, bar_add_book, bar_add_trade, bar_row
from engine_types cimport (
    F_VALID, F_RET, F_SLOPE, REG_TIGHT, REG_NORMAL, REG_WIDE, REG_NONE, NBINS, MAX_EMPTY_BARS, N_DYN, N_ROLL,
    N_EXTRA, TILE, Cum, Snap, TCum, Win, RegWin, State,
)
from vpin cimport vpin_reset, vpin_add, vpin_value

cnp.import_array()

cdef int64_t NO_TIME = -9223372036854775807 - 1


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
    cdef int64_t emit_ms
    cdef double tight_pct, wide_pct, tight_thr, wide_thr
    cdef bint dynamic_regime, enable_vpin
    cdef int64_t vpin_n
    cdef int64_t trades_invalid   # trades skipped for a NaN/inf/non-positive price or amount
    cdef int64_t vpin_work        # buckets written to the VPIN ring (bounded per trade by the window)
    cdef Win* win             # nh horizons, then momentum (nh), then kyle (nh + 1)
    cdef RegWin rw
    cdef Bar* bars
    cdef int64_t* bar_ms
    cdef Snap* sring
    cdef uint64_t scap
    cdef TCum* tring
    cdef uint64_t tcap
    cdef int32_t* fen
    cdef int64_t* vpin_ring
    cdef double* lv           # current and previous compacted levels: 8 blocks of nlev
    cdef double* row          # TILE emitted rows, row-major, transposed into the output in blocks
    cdef int tile_n
    cdef double** bout
    cdef int64_t* bout_n
    cdef int64_t* bout_cap
    cdef object _fingerprint

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
        self.vpin_n = vpin_buckets
        self.st.vpin.bucket = max(1, _qty_units(vpin_bucket))
        self.st.vpin.window = vpin_buckets
        self.edges = <double*>calloc(self.nband + 1, sizeof(double))
        self.ofi_w = <double*>calloc(self.nofi + 1, sizeof(double))
        self.win = <Win*>calloc(self.nh + 2, sizeof(Win))
        self.bars = <Bar*>calloc(self.nbar + 1, sizeof(Bar))
        self.bar_ms = <int64_t*>calloc(self.nbar + 1, sizeof(int64_t))
        self.fen = <int32_t*>calloc(NBINS + 1, sizeof(int32_t))
        self.vpin_ring = <int64_t*>calloc(self.vpin_n + 1, sizeof(int64_t))
        self.lv = <double*>calloc(8 * self.nlev, sizeof(double))
        self.row = <double*>calloc(TILE * self.ncols, sizeof(double))
        self.bout = <double**>calloc(self.nbar + 1, sizeof(double*))
        self.bout_n = <int64_t*>calloc(self.nbar + 1, sizeof(int64_t))
        self.bout_cap = <int64_t*>calloc(self.nbar + 1, sizeof(int64_t))
        self.scap = 1024
        self.sring = <Snap*>calloc(self.scap, sizeof(Snap))
        self.tcap = 1024
        self.tring = <TCum*>calloc(self.tcap, sizeof(TCum))
        for i in range(self.nband):
            self.edges[i] = edges_bps[i]
        for i in range(self.nofi):
            self.ofi_w[i] = ofi_weights[i]
        for i in range(self.nh):
            self.win[i].wms = horizons_ms[i]
        self.win[self.nh].wms = momentum_ms
        self.win[self.nh + 1].wms = kyle_ms
        self.rw.wms = regime_ms
        for i in range(self.nbar):
            self.bar_ms[i] = bar_ms[i]
            self.bars[i].k = NO_TIME
        self.st.next_emit = NO_TIME
        self.st.last_ts = NO_TIME
        self._fingerprint = (max_levels, tuple(edges_bps), ofi_levels, tuple(ofi_weights), tuple(horizons_ms),
                             tuple(bar_ms), emit_ms, tight_thr, wide_thr, dynamic_regime, regime_ms, tight_pct,
                             wide_pct, kyle_ms, enable_vpin, vpin_bucket, vpin_buckets, momentum_ms)
        self._reset()
        self.st.n_resets = 0

    def __dealloc__(self):
        cdef int i
        if self.bout != NULL:
            for i in range(self.nbar):
                free(self.bout[i])
        free(self.edges); free(self.ofi_w); free(self.win); free(self.bars); free(self.bar_ms)
        free(self.fen); free(self.vpin_ring); free(self.lv); free(self.row); free(self.bout)
        free(self.bout_n); free(self.bout_cap); free(self.sring); free(self.tring)

    @property
    def fingerprint(self):
        return self._fingerprint

    @property
    def last_ts(self):
        return None if self.st.last_ts == NO_TIME else self.st.last_ts

    def stats(self):
        return {"books": self.st.n_books, "trades": self.st.n_trades, "crossed": self.st.n_crossed,
                "one_sided": self.st.n_one_sided, "resets": self.st.n_resets,
                "trades_invalid": self.trades_invalid, "vpin_work": self.vpin_work}

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
        self.st.has_prev_snap = 0
        self.st.pend_signed = 0.0
        self.st.pend_quote = 0.0
        vpin_reset(&self.st.vpin)
        self.st.n_resets += 1
        for i in range(self.nh + 2):
            self.win[i].tail = self.st.shead
            self.win[i].ttail = self.st.thead
            self.win[i].base = self.st.cum
            self.win[i].tbase = self.st.tcum
        w = self.rw.wms
        memset(&self.rw, 0, sizeof(RegWin))
        self.rw.wms = w
        self.rw.tail = self.st.shead
        memset(self.fen, 0, (NBINS + 1) * sizeof(int32_t))
        for i in range(self.nbar):
            self.bars[i].prev_close = NAN

    def reset(self):
        self._reset()

    def apply_pending_reset(self):
        """A reset whose time is already past: applies before the next event."""
        self._reset()

    # ------------------------------------------------------------ ring buffers
    cdef uint64_t _min_stail(self) noexcept nogil:
        cdef uint64_t m = self.rw.tail
        cdef int i
        for i in range(self.nh + 2):
            if self.win[i].tail < m:
                m = self.win[i].tail
        return m

    cdef uint64_t _min_ttail(self) noexcept nogil:
        cdef uint64_t m = self.st.thead
        cdef int i
        for i in range(self.nh):
            if self.win[i].ttail < m:
                m = self.win[i].ttail
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

    cdef void _trade_push(self) noexcept nogil:
        cdef uint64_t lo = self._min_ttail(), pos, cap
        cdef TCum* fresh
        if self.st.thead - lo >= self.tcap:
            cap = self.tcap * 2
            fresh = <TCum*>malloc(cap * sizeof(TCum))
            pos = lo
            while pos < self.st.thead:
                fresh[pos & (cap - 1)] = self.tring[pos & (self.tcap - 1)]
                pos += 1
            free(self.tring)
            self.tring = fresh
            self.tcap = cap
        pos = self.st.thead
        self.st.thead += 1
        self.tring[pos & (self.tcap - 1)] = self.st.tcum

    # -------------------------------------------------------------------- bars
    cdef void _bar_emit(self, int d) noexcept nogil:
        cdef int64_t cap
        if self.bout_n[d] >= self.bout_cap[d]:
            cap = 64 if self.bout_cap[d] == 0 else self.bout_cap[d] * 2
            self.bout[d] = <double*>realloc(self.bout[d], cap * BAR_FIELDS * sizeof(double))
            self.bout_cap[d] = cap
        bar_row(&self.bars[d], self.bar_ms[d], &self.bout[d][self.bout_n[d] * BAR_FIELDS])
        self.bout_n[d] += 1

    cdef void _bars_advance(self, int64_t ts) noexcept nogil:
        cdef int d
        cdef int64_t k, e, dms
        cdef Bar* b
        for d in range(self.nbar):
            b = &self.bars[d]
            if ts < b.end_ms:
                continue
            dms = self.bar_ms[d]
            k = ts // dms
            if b.k != NO_TIME:
                self._bar_emit(d)
                e = b.k + 1
                if k - e <= MAX_EMPTY_BARS:
                    while e < k:
                        bar_start(b, e, dms)
                        self._bar_emit(d)
                        e += 1
            bar_start(b, k, dms)

    def flush_bars(self):
        """Emit every open bar (end of stream); later events would start fresh bars."""
        cdef int d
        for d in range(self.nbar):
            if self.bars[d].k != NO_TIME:
                self._bar_emit(d)
                self.bars[d].k = NO_TIME
                self.bars[d].end_ms = NO_TIME
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
        cdef int64_t pushed
        self.st.n_trades += 1
        for d in range(self.nbar):
            bar_add_trade(&self.bars[d], price, amount, side)
        self.st.pend_quote += price * amount
        if side == 0:
            return
        self.st.pend_signed += side * amount
        if side > 0:
            dd_add(&self.st.tcum.buy, amount)
        else:
            dd_add(&self.st.tcum.sell, amount)
        self.st.tcum.ts = ts
        self._trade_push()
        if self.enable_vpin:
            pushed = vpin_add(&self.st.vpin, self.vpin_ring, amount, side)
            if pushed < 0:
                self.trades_invalid += 1
            else:
                self.vpin_work += pushed

    # ------------------------------------------------------------------- books
    cdef int8_t _regime(self, int q, double relsp) noexcept nogil:
        cdef int64_t n = self.rw.n, kt, kw
        if not self.dynamic_regime:
            if relsp <= self.tight_thr:
                return REG_TIGHT
            if relsp >= self.wide_thr:
                return REG_WIDE
            return REG_NORMAL
        kt = <int64_t>ceil(self.tight_pct * n / 100.0)
        kw = <int64_t>ceil(self.wide_pct * n / 100.0)
        if kt < 1:
            kt = 1
        if kw < 1:
            kw = 1
        if q <= fen_kth(self.fen, NBINS, kt):
            return REG_TIGHT
        if q >= fen_kth(self.fen, NBINS, kw):
            return REG_WIDE
        return REG_NORMAL

    cdef void _regime_evict(self, int64_t t) noexcept nogil:
        cdef Snap* s
        cdef int64_t seg
        while self.rw.tail < self.st.shead and self._snap(self.rw.tail).ts <= t - self.rw.wms:
            s = self._snap(self.rw.tail)
            seg = self._snap(self.rw.tail + 1).ts - s.ts
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

    cdef void _on_book(self, int64_t ts, int nb, int na, const double* agg, bint emit) noexcept nogil:
        cdef Core c
        cdef bint valid = book_core(self.lv, self.lv + self.nlev, nb, self.lv + 2 * self.nlev,
                                    self.lv + 3 * self.nlev, na, agg, self.nband, &c)
        cdef double r = NAN, ofi = NAN, mlofi = NAN, vel = NAN, accel = NAN, amihud = NAN
        cdef double dt, slope_diff = NAN, x = 0.0, sm = NAN, cm = NAN
        cdef int d, q = -1
        cdef int8_t flags = 0, regime = REG_NONE
        cdef Snap* s
        cdef Cum* cum = &self.st.cum
        self.st.n_books += 1
        if c.crossed:
            self.st.n_crossed += 1
        elif not valid:
            self.st.n_one_sided += 1
        if valid:
            flags = F_VALID
            slope_diff = c.bid_slope - c.ask_slope
            if self.st.has_prev:
                flags |= F_RET
                r = log(c.mid / self.st.prev_mid)
                order_flow(self.lv, self.lv + 4 * self.nlev, self.nlev, nb, na, self.st.prev_nb, self.st.prev_na,
                           self.nofi, self.ofi_w, &ofi, &mlofi)
                dt = (ts - self.st.prev_ts) / 1000.0
                if dt > 0.0:
                    vel = (c.mid - self.st.prev_mid) / dt
                    if self.st.has_prev_vel:
                        accel = (vel - self.st.prev_vel) / dt
                if self.st.pend_quote > 0.0:
                    amihud = fabs(r) / self.st.pend_quote
                x = self.st.pend_signed
                cm = c.cog_vs_mid - self.st.prev_cog
                if isfinite(slope_diff) and self.st.has_prev_slope:
                    sm = slope_diff - self.st.prev_slope_diff
                    flags |= F_SLOPE
            if c.relsp > 0.0:
                q = <int>floor((log2(c.relsp) + 48.0) * 64.0)
                if q < 0:
                    q = 0
                elif q >= NBINS:
                    q = NBINS - 1
            else:
                q = 0
        for d in range(self.nbar):
            bar_add_book(&self.bars[d], c.crossed, valid, flags & F_RET, c.mid, c.spread, c.relsp, c.imb0, ofi, r)
        # cumulative sums through this snapshot
        if valid:
            run_add(&cum.run_d0, cum.n_valid, c.depth0)
            dd_add(&cum.d0, c.depth0)
            dd_add_prod(&cum.d0sq, c.depth0, c.depth0)
            dd_add(&cum.spread, c.spread)
            cum.n_valid += 1
        if flags & F_RET:
            run_add(&cum.run_r, cum.n_ret, r)
            run_add(&cum.run_cog, cum.n_ret, cm)
            run_add(&cum.run_x, cum.n_ret, x)
            dd_add(&cum.r, r)
            dd_add_prod(&cum.r2, r, r)
            dd_add(&cum.ofi, ofi)
            dd_add(&cum.mlofi, mlofi)
            dd_add(&cum.cog, cm)
            dd_add_prod(&cum.cog2, cm, cm)
            dd_add(&cum.x, x)
            dd_add_prod(&cum.x2, x, x)
            dd_add_prod(&cum.xy, x, r)
            cum.n_ret += 1
        if flags & F_SLOPE:
            run_add(&cum.run_slope, cum.n_slope, sm)
            dd_add(&cum.slope, sm)
            dd_add_prod(&cum.slope2, sm, sm)
            cum.n_slope += 1
        # spread regime: close the previous snapshot's segment, append this one, classify it
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
        s.qbin = q
        s.flags = flags
        s.cum = cum[0]
        if valid:
            fen_add(self.fen, NBINS, q, 1)
            self.rw.n += 1
        self._regime_evict(ts)
        if valid:
            regime = self._regime(q, c.relsp)
        s.regime = regime
        self.st.prev_regime = regime
        self.st.prev_snap_ts = ts
        self.st.has_prev_snap = 1
        if emit:
            book_structural(self.lv, self.lv + self.nlev, nb, self.lv + 2 * self.nlev, self.lv + 3 * self.nlev,
                            na, self.nlev, agg, self.nband, self.row + self.tile_n * self.ncols)
            self._emit_row(ts, valid, q, regime, r, vel, accel, ofi, mlofi, amihud)
        if valid:
            self.st.has_prev = 1
            self.st.prev_mid = c.mid
            self.st.prev_ts = ts
            self.st.prev_nb = nb
            self.st.prev_na = na
            memcpy(self.lv + 4 * self.nlev, self.lv, 4 * self.nlev * sizeof(double))
            self.st.has_prev_vel = isfinite(vel)
            self.st.prev_vel = vel
            self.st.has_prev_slope = isfinite(slope_diff)
            self.st.prev_slope_diff = slope_diff
            self.st.prev_cog = c.cog_vs_mid
            self.st.pend_signed = 0.0
            self.st.pend_quote = 0.0

    cdef void _advance(self, Win* w, int64_t t, bint trades) noexcept nogil:
        # Move the window's tail past events at or before t - wms; its base becomes the
        # cumulative sums of the last event it passed (copied once).
        cdef uint64_t tail = w.tail
        cdef int64_t edge = t - w.wms
        while tail < self.st.shead and self._snap(tail).ts <= edge:
            tail += 1
        if tail != w.tail:
            w.base = self._snap(tail - 1).cum
            w.tail = tail
        if trades:
            tail = w.ttail
            while tail < self.st.thead and self.tring[tail & (self.tcap - 1)].ts <= edge:
                tail += 1
            if tail != w.ttail:
                w.tbase = self.tring[(tail - 1) & (self.tcap - 1)]
                w.ttail = tail

    cdef void _emit_row(self, int64_t t, bint valid, int q, int8_t regime, double r, double vel, double accel,
                        double ofi, double mlofi, double amihud) noexcept nogil:
        cdef double* f = self.row + self.tile_n * self.ncols
        cdef int i, j, c = self.ns
        cdef Win* w
        cdef const Cum* cum = &self.st.cum
        cdef const Cum* b
        cdef double buy, sell, part, lo, tight, wide, p_lo, s1, s2, cxx, cxy, cyy, nn
        cdef DD dx, dy
        cdef int64_t n
        f[c] = r; f[c + 1] = vel; f[c + 2] = accel; f[c + 3] = ofi; f[c + 4] = mlofi; f[c + 5] = amihud
        c += N_DYN
        for i in range(self.nh):
            w = &self.win[i]
            if _warm(&self.st, t, w.wms):
                self._advance(w, t, 1)
                b = &w.base
                n = cum.n_ret - b.n_ret
                s1 = dd_diff(&cum.r, &b.r)
                s2 = dd_diff(&cum.r2, &b.r2)
                f[c] = sqrt(s2) if s2 > 0.0 else 0.0
                f[c + 1] = win_std(n, dd_sub(&cum.r, &b.r), dd_sub(&cum.r2, &b.r2), &cum.run_r, b.n_ret)
                f[c + 2] = win_mean(n, s1, &cum.run_r, b.n_ret)
                f[c + 3] = dd_diff(&cum.ofi, &b.ofi)
                f[c + 4] = dd_diff(&cum.mlofi, &b.mlofi)
                buy = dd_diff(&self.st.tcum.buy, &w.tbase.buy)
                sell = dd_diff(&self.st.tcum.sell, &w.tbase.sell)
                f[c + 5] = (buy - sell) / (buy + sell) if buy + sell > 0.0 else NAN
                f[c + 6] = buy + sell
                n = cum.n_valid - b.n_valid
                f[c + 7] = dd_diff(&cum.spread, &b.spread) / <double>n if n > 0 else NAN
            else:
                for j in range(N_ROLL):
                    f[c + j] = NAN
            c += N_ROLL
        for j in range(N_EXTRA):
            f[c + j] = NAN
        w = &self.win[self.nh]
        if _warm(&self.st, t, w.wms):
            self._advance(w, t, 0)
            b = &w.base
            n = cum.n_valid - b.n_valid
            f[c] = win_std(n, dd_sub(&cum.d0, &b.d0), dd_sub(&cum.d0sq, &b.d0sq), &cum.run_d0, b.n_valid)
            n = cum.n_slope - b.n_slope
            s1 = dd_diff(&cum.slope, &b.slope)
            f[c + 8] = win_mean(n, s1, &cum.run_slope, b.n_slope)
            f[c + 9] = win_std(n, dd_sub(&cum.slope, &b.slope), dd_sub(&cum.slope2, &b.slope2),
                               &cum.run_slope, b.n_slope)
            n = cum.n_ret - b.n_ret
            s1 = dd_diff(&cum.cog, &b.cog)
            f[c + 10] = win_mean(n, s1, &cum.run_cog, b.n_ret)
            f[c + 11] = win_std(n, dd_sub(&cum.cog, &b.cog), dd_sub(&cum.cog2, &b.cog2), &cum.run_cog, b.n_ret)
        if _warm(&self.st, t, self.rw.wms):
            if regime != REG_NONE:
                f[c + 1] = <double>regime
            tight = <double>self.rw.tight_ms
            wide = <double>self.rw.wide_ms
            if self.rw.has_ev:
                part = <double>(self._snap(self.rw.tail).ts - (t - self.rw.wms))
                if self.rw.ev_regime == REG_TIGHT:
                    tight += part
                elif self.rw.ev_regime == REG_WIDE:
                    wide += part
            lo = <double>(t - self.rw.wms)
            if <double>self.st.first_snap_ts > lo:
                lo = <double>self.st.first_snap_ts
            if <double>t - lo > 0.0:
                f[c + 2] = tight / (<double>t - lo)
                f[c + 3] = wide / (<double>t - lo)
            if valid and self.rw.n > 0:
                p_lo = <double>fen_prefix(self.fen, q - 1)
                f[c + 4] = 100.0 * (p_lo + 0.5 * (<double>fen_prefix(self.fen, q) - p_lo)) / <double>self.rw.n
        w = &self.win[self.nh + 1]
        if _warm(&self.st, t, w.wms):
            self._advance(w, t, 0)
            b = &w.base
            n = cum.n_ret - b.n_ret
            if n >= 3 and cum.run_x.start > b.n_ret:
                nn = <double>n
                dx = dd_sub(&cum.x, &b.x)
                dy = dd_sub(&cum.r, &b.r)
                cxx = dd_centred(dd_sub(&cum.x2, &b.x2), dx, dx, nn)
                cxy = dd_centred(dd_sub(&cum.xy, &b.xy), dx, dy, nn)
                if cxx > 0.0:
                    f[c + 5] = cxy / cxx
                    cyy = dd_centred(dd_sub(&cum.r2, &b.r2), dy, dy, nn)
                    if cum.run_r.start > b.n_ret and cyy > 0.0:
                        f[c + 6] = (cxy * cxy) / (cxx * cyy)
        if self.enable_vpin:
            f[c + 7] = vpin_value(&self.st.vpin)
        self.tile_n += 1

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

    def process(self, const int64_t[::1] bts, const double[:, :] bpx, const double[:, :] bsz,
                const double[:, :] apx, const double[:, :] asz, const double[:, ::1] agg, const int64_t[::1] tts,
                const double[::1] tpx, const double[::1] tamt, const int8_t[::1] tside,
                const int64_t[::1] resets):
        """Run one chunk (books and trades each sorted by time; level arrays may be strided views).

        `agg` holds, per book, the depth sums of the full rebuilt book (book_rebuild.pyx).

        Returns (out[ncols, n_emit], emitted snapshot indices, resets consumed, closed bars per duration).
        """
        cdef Py_ssize_t nbk = bts.shape[0], ntr = tts.shape[0], nres = resets.shape[0]
        cdef Py_ssize_t i = 0, j = 0, r = 0, e = 0, n_emit = self.count_emits(bts)
        cdef int64_t ts
        cdef bint is_trade, do_reset, emit
        cdef int nb, na
        cdef double amount = 0.0, price = 0.0
        if bpx.shape[1] != bsz.shape[1] or apx.shape[1] != asz.shape[1]:
            raise ValueError("price and size level arrays differ in width")
        if agg.shape[1] != 2 * (AG_BANDS + self.nband):
            raise ValueError("aggregate depth array has the wrong width")
        if (bpx.shape[0] != nbk or bsz.shape[0] != nbk or apx.shape[0] != nbk or asz.shape[0] != nbk
                or agg.shape[0] != nbk):
            raise ValueError("level arrays and timestamps differ in length")
        if tpx.shape[0] != ntr or tamt.shape[0] != ntr or tside.shape[0] != ntr:
            raise ValueError("trade columns differ in length")
        out = np.empty((self.ncols, n_emit), dtype=np.float64)
        idx = np.empty(n_emit, dtype=np.int64)
        cdef double[:, ::1] ov = out
        cdef int64_t[::1] iv = idx
        with nogil:
            while i < nbk or j < ntr:
                if j < ntr and (i >= nbk or tts[j] <= bts[i]):
                    ts = tts[j]
                    is_trade = 1
                    price = tpx[j]
                    amount = tamt[j]
                    if not (isfinite(price) and isfinite(amount) and price > 0.0 and amount > 0.0):
                        self.trades_invalid += 1
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
                    continue
                emit = self.emit_ms == 0 or ts >= self.st.next_emit
                if emit and self.emit_ms > 0:
                    self.st.next_emit = (ts // self.emit_ms + 1) * self.emit_ms
                nb = book_compact(bpx, bsz, i, self.nlev, self.lv, self.lv + self.nlev)
                na = book_compact(apx, asz, i, self.nlev, self.lv + 2 * self.nlev, self.lv + 3 * self.nlev)
                if emit:
                    self._on_book(ts, nb, na, &agg[i, 0], 1)
                    iv[e] = i
                    e += 1
                    if self.tile_n == TILE:
                        self._flush_tile(&ov[0, 0], n_emit, e)
                else:
                    self._on_book(ts, nb, na, &agg[i, 0], 0)
                i += 1
            if self.tile_n:
                self._flush_tile(&ov[0, 0], n_emit, e)
        return out, idx, r, self._take_bars()

    cdef void _flush_tile(self, double* out, Py_ssize_t n_emit, Py_ssize_t e_end) noexcept nogil:
        # Rows e_end - tile_n .. e_end - 1 of out[ncols, n_emit] from the row-major tile.
        cdef Py_ssize_t c, k, e0 = e_end - self.tile_n
        cdef double* dst
        for c in range(self.ncols):
            dst = out + c * n_emit + e0
            for k in range(self.tile_n):
                dst[k] = self.row[k * self.ncols + c]
        self.tile_n = 0

    # ----------------------------------------------------------- checkpoints
    cdef list _blocks(self):
        # (name, address, size) of every fixed-size piece of state.
        return [("st", <size_t>&self.st, sizeof(State)),
                ("win", <size_t>self.win, (self.nh + 2) * sizeof(Win)),
                ("rw", <size_t>&self.rw, sizeof(RegWin)),
                ("bars", <size_t>self.bars, self.nbar * sizeof(Bar)),
                ("fen", <size_t>self.fen, (NBINS + 1) * sizeof(int32_t)),
                ("vpin", <size_t>self.vpin_ring, self.vpin_n * sizeof(int64_t)),
                ("lv", <size_t>self.lv, 8 * self.nlev * sizeof(double))]

    def get_state(self):
        """Everything needed to continue exactly (same build and options): a dict of bytes and ints."""
        cdef uint64_t lo = self._min_stail(), tlo = self._min_ttail(), pos
        snaps = bytearray((self.st.shead - lo) * sizeof(Snap))
        trades = bytearray((self.st.thead - tlo) * sizeof(TCum))
        cdef char* sp = snaps
        cdef char* tp = trades
        pos = lo
        while pos < self.st.shead:
            memcpy(sp + (pos - lo) * sizeof(Snap), self._snap(pos), sizeof(Snap))
            pos += 1
        pos = tlo
        while pos < self.st.thead:
            memcpy(tp + (pos - tlo) * sizeof(TCum), &self.tring[pos & (self.tcap - 1)], sizeof(TCum))
            pos += 1
        state = {name: (<char*><size_t>addr)[:size] for name, addr, size in self._blocks()}
        state.update(snap_lo=lo, snaps=bytes(snaps), trade_lo=tlo, trades=bytes(trades))
        return state

    def set_state(self, dict state):
        cdef const unsigned char[::1] buf
        cdef uint64_t lo, n, pos, cap
        cdef size_t addr, size
        for name, addr, size in self._blocks():
            data = state[name]
            if len(data) != size:
                raise ValueError(f"checkpoint field {name} has the wrong size")
            if size:
                buf = data
                memcpy(<void*>addr, &buf[0], size)
        for kind, item in (("snaps", sizeof(Snap)), ("trades", sizeof(TCum))):
            data = state[kind]
            lo = state["snap_lo" if kind == "snaps" else "trade_lo"]
            n = len(data) // item
            cap = 1024
            while cap < 2 * n:
                cap *= 2
            if kind == "snaps":
                free(self.sring)
                self.sring = <Snap*>calloc(cap, sizeof(Snap))
                self.scap = cap
            else:
                free(self.tring)
                self.tring = <TCum*>calloc(cap, sizeof(TCum))
                self.tcap = cap
            if n:
                buf = data
                for pos in range(n):
                    if kind == "snaps":
                        memcpy(&self.sring[(lo + pos) & (cap - 1)], &buf[pos * item], item)
                    else:
                        memcpy(&self.tring[(lo + pos) & (cap - 1)], &buf[pos * item], item)
