# cython: language_level=3
"""Per-symbol ticker features: one row per ticker, rolling means over time windows
(docs/features.md, "Ticker features").

Why a kernel with prefix sums: every ticker row reports, for each horizon h, the mean
and standard deviation of the mid price and the means of spread and volume imbalance
over (t - h, t].  Each ticker stores the double-double cumulative sums through it
(rolling_math.pxd), a window's sum is the difference of two of them, so a row costs
O(horizons) whatever the window holds.  The cumulative sums, the per-horizon window
starts and the tickers still inside the longest window are the state: `get_state()`
copies them byte for byte, so N chunks (segments) == 1 chunk, bit for bit.

Rules (the same words as docs/features.md):
- a quote is valid when bid and ask are finite, > 0 and bid <= ask; otherwise
  (missing side, crossed) mid / spread / relative_spread are NaN and the ticker does
  not enter the mid and spread windows (crossed ones are counted);
- volume_imbalance needs finite, non-negative sizes with a positive sum, else NaN and
  outside the imbalance window;
- a ticker identical to the previous one (same time and every input value) is a
  redelivery: dropped and counted; a different ticker at the same time is a new row;
- a ticker older than the newest time processed is late: dropped and counted;
- a reset (gap/resync/reconnect) empties the windows; the next rows start afresh.
"""
import numpy as np
from libc.math cimport NAN, isfinite, isnan, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from rolling_math cimport DD, Run, dd_add, dd_add_prod, dd_sub, dd_centred, run_add, win_mean

cdef int64_t NO_TIME = -9223372036854775807 - 1

cdef enum:
    TK_BASE = 11            # fluxforge.features.ticker_layout.TICKER_FIELDS
    TK_PER_H = 4            # mid_mean, mid_std, spread_mean, vol_imbalance_mean
    TK_INPUTS = 8           # bid, ask, bid_size, ask_size, last, vwap, base_volume, quote_volume


cdef struct Cum:
    # cumulative sums through one ticker (since the last reset)
    int64_t ts
    int64_t n_mid
    int64_t n_imb
    DD s_mid
    DD s_mid2
    DD s_spr
    DD s_imb


cdef struct KState:
    int64_t last_ts
    int64_t seq             # tickers in the windows since the last reset
    int64_t lo              # oldest seq still kept (the base of the longest window)
    int64_t n_rows, n_late, n_dup, n_crossed, n_resets
    bint have_prev
    int64_t prev_ts
    double prev[TK_INPUTS]
    Cum cur
    Run run_mid


cdef inline bint _same(double a, double b) noexcept nogil:
    return a == b or (isnan(a) and isnan(b))


cdef class TickerEngine:
    """Rolling ticker features of one (exchange, symbol) for each horizon (milliseconds)."""

    cdef KState st
    cdef int nh
    cdef int64_t* h_ms
    cdef int64_t* ptr       # per horizon: tickers with time <= t - h (absolute seq)
    cdef Cum* ring
    cdef int64_t cap        # power of two
    cdef double* out
    cdef int64_t out_n, out_cap
    cdef int nfields

    def __cinit__(self, horizons_ms):
        cdef int i
        self.nh = len(horizons_ms)
        self.nfields = TK_BASE + TK_PER_H * self.nh
        self.h_ms = <int64_t*>calloc(max(self.nh, 1), sizeof(int64_t))
        self.ptr = <int64_t*>calloc(max(self.nh, 1), sizeof(int64_t))
        self.cap = 64
        self.ring = <Cum*>calloc(self.cap, sizeof(Cum))
        if not (self.h_ms and self.ptr and self.ring):
            raise MemoryError()
        for i in range(self.nh):
            if int(horizons_ms[i]) <= 0:
                raise ValueError("ticker horizons must be positive")
            self.h_ms[i] = int(horizons_ms[i])
        self.st.last_ts = NO_TIME
        self._clear()

    def __dealloc__(self):
        free(self.h_ms)
        free(self.ptr)
        free(self.ring)
        free(self.out)

    def stats(self):
        return {"tickers": self.st.n_rows, "late_dropped": self.st.n_late, "duplicates": self.st.n_dup,
                "crossed": self.st.n_crossed, "resets": self.st.n_resets}

    cdef void _clear(self) noexcept nogil:
        cdef int i
        self.st.seq = 0
        self.st.lo = 0
        memset(&self.st.cur, 0, sizeof(Cum))
        self.st.run_mid.start = 0
        self.st.run_mid.last = NAN
        for i in range(self.nh):
            self.ptr[i] = 0

    cdef bint _grow(self) noexcept nogil:
        cdef int64_t ncap = self.cap * 2, s
        cdef Cum* buf = <Cum*>calloc(ncap, sizeof(Cum))
        if buf == NULL:
            return 0
        s = self.st.lo
        while s < self.st.seq:
            buf[s & (ncap - 1)] = self.ring[s & (self.cap - 1)]
            s += 1
        free(self.ring)
        self.ring = buf
        self.cap = ncap
        return 1

    cdef bint _reserve_out(self) noexcept nogil:
        cdef int64_t cap
        cdef double* buf
        if self.out_n < self.out_cap:
            return 1
        cap = self.out_cap * 2 if self.out_cap else 256
        buf = <double*>calloc(cap * self.nfields, sizeof(double))
        if buf == NULL:
            return 0
        if self.out_n:
            memcpy(buf, self.out, self.out_n * self.nfields * sizeof(double))
        free(self.out)
        self.out = buf
        self.out_cap = cap
        return 1

    cdef bint _duplicate(self, int64_t ts, const double* v) noexcept nogil:
        cdef int i
        if not self.st.have_prev or ts != self.st.prev_ts:
            return 0
        for i in range(TK_INPUTS):
            if not _same(v[i], self.st.prev[i]):
                return 0
        return 1

    cdef int _ticker(self, int64_t ts, const double* v) noexcept nogil:
        """v: bid, ask, bid_size, ask_size, last, vwap, base_volume, quote_volume."""
        cdef double bid = v[0], ask = v[1], bsz = v[2], asz = v[3]
        cdef double mid = NAN, spr = NAN, rel = NAN, imb = NAN
        cdef Cum* c = &self.st.cur
        cdef Cum base
        cdef DD w1, w2
        cdef double* o
        cdef int i
        cdef int64_t n, s, lo
        if not self._reserve_out():
            return -1
        if self.st.seq - self.st.lo >= self.cap and not self._grow():
            return -1
        self.st.have_prev = 1
        self.st.prev_ts = ts
        memcpy(self.st.prev, v, TK_INPUTS * sizeof(double))
        self.st.n_rows += 1
        if isfinite(bid) and isfinite(ask) and bid > 0.0 and ask > 0.0:
            if bid <= ask:
                mid = 0.5 * (bid + ask)
                spr = ask - bid
                rel = spr / mid
            else:
                self.st.n_crossed += 1
        if isfinite(bsz) and isfinite(asz) and bsz >= 0.0 and asz >= 0.0 and bsz + asz > 0.0:
            imb = (bsz - asz) / (bsz + asz)
        c.ts = ts
        if not isnan(mid):
            run_add(&self.st.run_mid, c.n_mid, mid)
            c.n_mid += 1
            dd_add(&c.s_mid, mid)
            dd_add_prod(&c.s_mid2, mid, mid)
            dd_add(&c.s_spr, spr)
        if not isnan(imb):
            c.n_imb += 1
            dd_add(&c.s_imb, imb)
        self.ring[self.st.seq & (self.cap - 1)] = c[0]
        self.st.seq += 1
        o = self.out + self.out_n * self.nfields
        self.out_n += 1
        o[0] = <double>ts
        o[1] = bid; o[2] = ask; o[3] = mid; o[4] = spr; o[5] = rel; o[6] = imb
        o[7] = v[4]; o[8] = v[5]; o[9] = v[6]; o[10] = v[7]
        lo = self.st.seq
        for i in range(self.nh):
            s = self.ptr[i]
            while s < self.st.seq and self.ring[s & (self.cap - 1)].ts <= ts - self.h_ms[i]:
                s += 1
            self.ptr[i] = s
            if s > 0:
                base = self.ring[(s - 1) & (self.cap - 1)]
            else:
                memset(&base, 0, sizeof(Cum))
            if s - 1 < lo:
                lo = s - 1
            n = c.n_mid - base.n_mid
            w1 = dd_sub(&c.s_mid, &base.s_mid)
            w2 = dd_sub(&c.s_mid2, &base.s_mid2)
            o[TK_BASE + TK_PER_H * i] = win_mean(n, w1.hi + w1.lo, &self.st.run_mid, base.n_mid)
            o[TK_BASE + TK_PER_H * i + 1] = self._std(n, w1, w2, base.n_mid)
            w1 = dd_sub(&c.s_spr, &base.s_spr)
            o[TK_BASE + TK_PER_H * i + 2] = (w1.hi + w1.lo) / <double>n if n > 0 else NAN
            n = c.n_imb - base.n_imb
            w1 = dd_sub(&c.s_imb, &base.s_imb)
            o[TK_BASE + TK_PER_H * i + 3] = (w1.hi + w1.lo) / <double>n if n > 0 else NAN
        if lo < 0:
            lo = 0
        if lo > self.st.lo:
            self.st.lo = lo
        return 0

    cdef double _std(self, int64_t n, DD w1, DD w2, int64_t base_n) noexcept nogil:
        # sample standard deviation; exactly 0 for a window of equal mids
        cdef double m2
        if n < 2:
            return NAN
        if self.st.run_mid.start <= base_n:
            return 0.0
        m2 = dd_centred(w2, w1, w1, <double>n)
        if m2 < 0.0:
            m2 = 0.0
        return sqrt(m2 / <double>(n - 1))

    def process(self, const int64_t[::1] ts, const double[:, ::1] values, const int64_t[::1] resets):
        """Run one chunk: tickers (time-sorted; `values` is tickers x 8 inputs, NaN for null) and
        resets (sorted), a reset first at equal times.  Returns rows x fields float64."""
        cdef Py_ssize_t n = ts.shape[0], nres = resets.shape[0], j = 0, r = 0
        cdef int err = 0
        if values.shape[0] != n or (n and values.shape[1] != TK_INPUTS):
            raise ValueError(f"ticker values must be ({n}, {TK_INPUTS})")
        with nogil:
            while (j < n or r < nres) and not err:
                if r < nres and (j >= n or resets[r] <= ts[j]):
                    self.st.n_resets += 1
                    self._clear()
                    if resets[r] > self.st.last_ts:
                        self.st.last_ts = resets[r]
                    r += 1
                    continue
                j += 1
                if ts[j - 1] < self.st.last_ts:
                    self.st.n_late += 1
                    continue
                if self._duplicate(ts[j - 1], &values[j - 1, 0]):
                    self.st.n_dup += 1
                    continue
                self.st.last_ts = ts[j - 1]
                err = self._ticker(ts[j - 1], &values[j - 1, 0])
        if err:
            raise MemoryError()
        arr = np.empty((self.out_n, self.nfields), dtype=np.float64)
        cdef double[:, ::1] view
        if self.out_n:
            view = arr
            memcpy(&view[0, 0], self.out, self.out_n * self.nfields * sizeof(double))
        self.out_n = 0
        return arr

    # ----------------------------------------------------------- checkpoints
    def get_state(self):
        """Everything needed to continue exactly (same build and horizons)."""
        cdef int64_t s
        live = bytearray()
        s = self.st.lo
        while s < self.st.seq:
            live += (<char*>&self.ring[s & (self.cap - 1)])[:sizeof(Cum)]
            s += 1
        return {"st": (<char*>&self.st)[:sizeof(KState)],
                "ptr": (<char*>self.ptr)[:self.nh * sizeof(int64_t)] if self.nh else b"",
                "ring": bytes(live)}

    def set_state(self, dict state):
        cdef const unsigned char[::1] buf
        cdef KState st
        cdef int64_t live, s
        cdef Cum* ring
        if len(state["st"]) != sizeof(KState) or len(state["ptr"]) != self.nh * sizeof(int64_t) \
                or len(state["ring"]) % sizeof(Cum):
            raise ValueError("ticker checkpoint has the wrong size")
        buf = state["st"]
        memcpy(&st, &buf[0], sizeof(KState))
        live = len(state["ring"]) // sizeof(Cum)
        if live != st.seq - st.lo:
            raise ValueError("ticker checkpoint is inconsistent")
        cap = 64
        while cap < live + 1:
            cap *= 2
        ring = <Cum*>calloc(cap, sizeof(Cum))
        if ring == NULL:
            raise MemoryError()
        if live:
            buf = state["ring"]
            for s in range(live):
                memcpy(&ring[(st.lo + s) & (cap - 1)], &buf[s * sizeof(Cum)], sizeof(Cum))
        free(self.ring)
        self.ring = ring
        self.cap = cap
        self.st = st
        if self.nh:
            buf = state["ptr"]
            memcpy(self.ptr, &buf[0], self.nh * sizeof(int64_t))
