# cython: language_level=3
"""Per-symbol trade time bars: trades in, closed OHLCV bars out (docs/features.md, "Trade bars").

Why one `cdef class` per (exchange, symbol): the open bar of every duration, the
carried close and the return reference live in C structs, a chunk of trades is one
`nogil` loop over typed memoryviews, and `get_state()`/`set_state()` copy the structs
byte for byte, so N chunks (segments) == 1 chunk.  Rules:

- bars are half-open [k d, (k+1) d) on exchange time; a bar closes once exchange
  time (a trade, or `until`: time the caller knows has passed) reaches its end;
- gaps between trades become empty bars (OHLC = carried close, volumes 0), at most
  MAX_EMPTY_BARS after the last trade's bar (a longer hole emits none, whatever the
  chunking, so the output never depends on where segments were cut);
- a reset (gap/resync/reconnect) clears what needs continuity: the previous trade
  price (realized variance) and the return reference (log_return); the clock stays;
- trades with a non-finite or non-positive price or amount are skipped, trades
  older than the time already processed are dropped as late (both counted).
"""
import numpy as np
from libc.math cimport NAN, isfinite, log, floor
from libc.stdint cimport int64_t, int8_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from trade_agg cimport Agg, agg_add, agg_clear, agg_row, trade_usable

cdef int64_t NO_TIME = -9223372036854775807 - 1

cdef enum:
    TB_FIELDS = 19          # columns of an output row, see fluxforge.features.trade_layout.TRADE_BAR_FIELDS
    MAX_EMPTY_BARS = 86400


cdef struct TBar:
    int64_t k               # open bar index, NO_TIME before the first trade
    int64_t last_trade_k    # bar of the newest trade
    double carry_close      # close carried into empty bars
    double ret_ref          # close the next log_return is measured against (NaN after a reset)
    double prev_px          # previous trade price within the open bar (NaN: none / reset)
    Agg a


cdef struct TState:
    int64_t last_ts
    int64_t n_trades
    int64_t n_late
    int64_t n_invalid
    int64_t n_resets


cdef inline void _open(TBar* b, int64_t k) noexcept nogil:
    b.k = k
    b.prev_px = NAN
    agg_clear(&b.a)


cdef class TradeBarEngine:
    """Open trade bars of one (exchange, symbol) for each duration (milliseconds)."""

    cdef TState st
    cdef int nbar
    cdef int64_t* bar_ms
    cdef TBar* bars
    cdef double** out
    cdef int64_t* out_n
    cdef int64_t* out_cap

    def __cinit__(self, bar_ms):
        cdef int d
        self.nbar = len(bar_ms)
        self.bar_ms = <int64_t*>calloc(max(self.nbar, 1), sizeof(int64_t))
        self.bars = <TBar*>calloc(max(self.nbar, 1), sizeof(TBar))
        self.out = <double**>calloc(max(self.nbar, 1), sizeof(double*))
        self.out_n = <int64_t*>calloc(max(self.nbar, 1), sizeof(int64_t))
        self.out_cap = <int64_t*>calloc(max(self.nbar, 1), sizeof(int64_t))
        if not (self.bar_ms and self.bars and self.out and self.out_n and self.out_cap):
            raise MemoryError()
        for d in range(self.nbar):
            if int(bar_ms[d]) <= 0:
                raise ValueError("bar durations must be positive")
            self.bar_ms[d] = int(bar_ms[d])
            _open(&self.bars[d], NO_TIME)
            self.bars[d].last_trade_k = NO_TIME
            self.bars[d].carry_close = NAN
            self.bars[d].ret_ref = NAN
        self.st.last_ts = NO_TIME

    def __dealloc__(self):
        cdef int d
        if self.out:
            for d in range(self.nbar):
                free(self.out[d])
        free(self.out)
        free(self.out_n)
        free(self.out_cap)
        free(self.bars)
        free(self.bar_ms)

    def stats(self):
        return {"trades": self.st.n_trades, "late_dropped": self.st.n_late,
                "invalid_dropped": self.st.n_invalid, "resets": self.st.n_resets}

    # ------------------------------------------------------------------ bars
    cdef bint _reserve(self, int d) noexcept nogil:
        cdef int64_t cap
        cdef double* buf
        if self.out_n[d] < self.out_cap[d]:
            return 1
        cap = self.out_cap[d] * 2 if self.out_cap[d] else 256
        buf = <double*>calloc(cap * TB_FIELDS, sizeof(double))
        if buf == NULL:
            return 0
        if self.out_n[d]:
            memcpy(buf, self.out[d], self.out_n[d] * TB_FIELDS * sizeof(double))
        free(self.out[d])
        self.out[d] = buf
        self.out_cap[d] = cap
        return 1

    cdef int _emit(self, int d) noexcept nogil:
        cdef TBar* b = &self.bars[d]
        cdef double* o
        if not self._reserve(d):
            return -1
        o = self.out[d] + self.out_n[d] * TB_FIELDS
        self.out_n[d] += 1
        o[0] = <double>(b.k * self.bar_ms[d])
        agg_row(&b.a, o)
        if b.a.n > 0:
            b.carry_close = b.a.close
        else:  # an empty bar carries the previous close
            o[1] = b.carry_close; o[2] = b.carry_close; o[3] = b.carry_close; o[4] = b.carry_close
        o[15] = log(o[4] / b.ret_ref) if isfinite(b.ret_ref) else NAN
        if b.a.n > 0:
            b.ret_ref = b.a.close
        return 0

    cdef int _advance(self, int64_t ts) noexcept nogil:
        """Close every bar that ends at or before ts (with the empty bars in between)."""
        cdef int d
        cdef int64_t k, e, last_empty, dms
        cdef TBar* b
        for d in range(self.nbar):
            b = &self.bars[d]
            if b.k == NO_TIME:
                continue
            dms = self.bar_ms[d]
            k = ts // dms
            if k <= b.k:
                continue
            last_empty = b.last_trade_k + MAX_EMPTY_BARS
            if (b.a.n > 0 or b.k <= last_empty) and self._emit(d) < 0:
                return -1
            e = b.k + 1
            while e < k and e <= last_empty:
                _open(b, e)
                if self._emit(d) < 0:
                    return -1
                e += 1
            _open(b, k)
        if ts > self.st.last_ts:
            self.st.last_ts = ts
        return 0

    cdef void _reset(self) noexcept nogil:
        cdef int d
        self.st.n_resets += 1
        for d in range(self.nbar):
            self.bars[d].prev_px = NAN
            self.bars[d].ret_ref = NAN

    cdef void _trade(self, int64_t ts, double px, double q, int8_t side) noexcept nogil:
        cdef int d
        cdef TBar* b
        self.st.n_trades += 1
        for d in range(self.nbar):
            b = &self.bars[d]
            if b.k == NO_TIME:
                _open(b, ts // self.bar_ms[d])
            b.last_trade_k = b.k
            agg_add(&b.a, px, q, side, log(px / b.prev_px) if isfinite(b.prev_px) else NAN)
            b.prev_px = px

    def process(self, const int64_t[::1] tts, const double[::1] tpx, const double[::1] tamt,
                const int8_t[::1] tside, const int64_t[::1] resets, int64_t until=NO_TIME):
        """Run one chunk (trades and resets each sorted by time), then close bars ending by `until`.

        Returns the closed bars per duration: float64 arrays (bars x TB_FIELDS).
        """
        cdef Py_ssize_t ntr = tts.shape[0], nres = resets.shape[0], j = 0, r = 0
        cdef int64_t ts
        cdef double px, q
        cdef int err = 0
        if tpx.shape[0] != ntr or tamt.shape[0] != ntr or tside.shape[0] != ntr:
            raise ValueError("trade columns differ in length")
        with nogil:
            while j < ntr or r < nres:
                if r < nres and (j >= ntr or resets[r] <= tts[j]):
                    # a reset first closes what ended before it, then breaks continuity
                    if resets[r] >= self.st.last_ts:
                        err = self._advance(resets[r])
                    self._reset()
                    r += 1
                else:
                    ts = tts[j]
                    px = tpx[j]
                    q = tamt[j]
                    j += 1
                    if not (isfinite(px) and isfinite(q) and px > 0.0 and q > 0.0):
                        self.st.n_invalid += 1
                        continue
                    if ts < self.st.last_ts:
                        self.st.n_late += 1
                        continue
                    err = self._advance(ts)
                    self._trade(ts, px, q, tside[j - 1])
                if err:
                    break
            if not err and until != NO_TIME and until >= self.st.last_ts:
                err = self._advance(until)
        if err:
            raise MemoryError()
        return self._take()

    def flush(self):
        """Emit every open bar (end of a batch computation); later trades start fresh bars."""
        cdef int d
        for d in range(self.nbar):
            if self.bars[d].k != NO_TIME and (self.bars[d].a.n > 0 or
                                              self.bars[d].k <= self.bars[d].last_trade_k + MAX_EMPTY_BARS):
                if self._emit(d) < 0:
                    raise MemoryError()
            self.bars[d].k = NO_TIME
        return self._take()

    cdef list _take(self):
        cdef int d
        cdef double[:, ::1] view
        out = []
        for d in range(self.nbar):
            arr = np.empty((self.out_n[d], TB_FIELDS), dtype=np.float64)
            if self.out_n[d] > 0:
                view = arr
                memcpy(&view[0, 0], self.out[d], self.out_n[d] * TB_FIELDS * sizeof(double))
            self.out_n[d] = 0
            out.append(arr)
        return out

    # ----------------------------------------------------------- checkpoints
    def get_state(self):
        """Everything needed to continue exactly (same build and durations)."""
        return {"st": (<char*>&self.st)[:sizeof(TState)],
                "bars": (<char*>self.bars)[:self.nbar * sizeof(TBar)] if self.nbar else b""}

    def set_state(self, dict state):
        cdef const unsigned char[::1] buf
        st, bars = state["st"], state["bars"]
        if len(st) != sizeof(TState) or len(bars) != self.nbar * sizeof(TBar):
            raise ValueError("trade-bar checkpoint has the wrong size")
        buf = st
        memcpy(&self.st, &buf[0], sizeof(TState))
        if self.nbar:
            buf = bars
            memcpy(self.bars, &buf[0], self.nbar * sizeof(TBar))


# ------------------------------------------------------------ information-driven bars
cdef enum:
    IB_FIELDS = 22          # see fluxforge.features.trade_layout.INFO_BAR_FIELDS


cdef struct IBar:
    int64_t thr             # threshold, integer units of 1e-8 (base: volume bars, quote: dollar bars)
    int64_t fill            # units in the open bar
    int64_t start_ts, end_ts
    double ret_ref, prev_px
    Agg a
    int64_t n_trades, n_late, n_invalid, n_resets, last_ts


cdef inline void _ib_clear(IBar* b) noexcept nogil:
    b.fill = 0
    agg_clear(&b.a)


cdef class InfoBarEngine:
    """Volume (dollar=False) or dollar bars (López de Prado, AFML ch. 2) of one symbol.

    Sizes are counted in integer units of 1e-8 (as VPIN does), so a trade that fills
    a bar exactly closes it exactly; a trade larger than the room left is split: the
    bar takes the fraction room/units of its amount, the rest goes to the next bars.
    """

    cdef IBar b
    cdef bint dollar
    cdef double threshold
    cdef double* out
    cdef int64_t out_n, out_cap

    def __cinit__(self, double threshold, bint dollar):
        if not (threshold > 0.0):
            raise ValueError("threshold must be positive")
        self.dollar = dollar
        self.threshold = threshold
        self.b.thr = <int64_t>floor(threshold * 1e8 + 0.5)
        if self.b.thr < 1:
            raise ValueError("threshold below the 1e-8 unit")
        self.b.ret_ref = NAN
        self.b.prev_px = NAN
        self.b.last_ts = NO_TIME
        _ib_clear(&self.b)

    def __dealloc__(self):
        free(self.out)

    def stats(self):
        return {"trades": self.b.n_trades, "late_dropped": self.b.n_late,
                "invalid_dropped": self.b.n_invalid, "resets": self.b.n_resets}

    cdef int _emit(self) noexcept nogil:
        cdef IBar* b = &self.b
        cdef double* o
        cdef double* buf
        cdef int64_t cap
        if self.out_n == self.out_cap:
            cap = self.out_cap * 2 if self.out_cap else 256
            buf = <double*>calloc(cap * IB_FIELDS, sizeof(double))
            if buf == NULL:
                return -1
            if self.out_n:
                memcpy(buf, self.out, self.out_n * IB_FIELDS * sizeof(double))
            free(self.out)
            self.out = buf
            self.out_cap = cap
        o = self.out + self.out_n * IB_FIELDS
        self.out_n += 1
        o[0] = <double>b.end_ts
        agg_row(&b.a, o)
        o[15] = log(b.a.close / b.ret_ref) if isfinite(b.ret_ref) else NAN
        b.ret_ref = b.a.close
        o[19] = <double>b.start_ts
        o[20] = <double>b.end_ts
        o[21] = self.threshold
        _ib_clear(b)
        return 0

    cdef int _trade(self, int64_t ts, double px, double q, int8_t side) noexcept nogil:
        cdef IBar* b = &self.b
        cdef int64_t units, take
        cdef double part, r
        units = <int64_t>floor((px * q if self.dollar else q) * 1e8 + 0.5)
        if units <= 0:
            self.b.n_invalid += 1
            return 0
        b.n_trades += 1
        if isfinite(b.prev_px):
            r = log(px / b.prev_px)
        else:
            r = NAN
        while units > 0:
            take = b.thr - b.fill
            if units < take:
                take = units
            part = q * (<double>take / <double>units)   # this bar's share of what is left of the trade
            q -= part
            units -= take
            if b.a.n == 0:
                b.start_ts = ts
            agg_add(&b.a, px, part, side, r)
            r = NAN                                        # a split's later parts add no return
            b.end_ts = ts
            b.fill += take
            if b.fill == b.thr and self._emit() < 0:
                return -1
        b.prev_px = px
        return 0

    def process(self, const int64_t[::1] tts, const double[::1] tpx, const double[::1] tamt,
                const int8_t[::1] tside, const int64_t[::1] resets):
        """Run one chunk (trades and resets sorted by time); returns the completed bars (bars x IB_FIELDS)."""
        cdef Py_ssize_t ntr = tts.shape[0], nres = resets.shape[0], j = 0, r = 0
        cdef double px, q
        cdef int err = 0
        if tpx.shape[0] != ntr or tamt.shape[0] != ntr or tside.shape[0] != ntr:
            raise ValueError("trade columns differ in length")
        with nogil:
            while (j < ntr or r < nres) and not err:
                if r < nres and (j >= ntr or resets[r] <= tts[j]):
                    self.b.prev_px = NAN
                    self.b.ret_ref = NAN
                    self.b.n_resets += 1
                    if resets[r] > self.b.last_ts:
                        self.b.last_ts = resets[r]
                    r += 1
                    continue
                px = tpx[j]
                q = tamt[j]
                j += 1
                if not trade_usable(tts[j - 1], px, q, &self.b.last_ts, &self.b.n_invalid, &self.b.n_late):
                    continue
                err = self._trade(tts[j - 1], px, q, tside[j - 1])
        if err:
            raise MemoryError()
        arr = np.empty((self.out_n, IB_FIELDS), dtype=np.float64)
        cdef double[:, ::1] view
        if self.out_n:
            view = arr
            memcpy(&view[0, 0], self.out, self.out_n * IB_FIELDS * sizeof(double))
        self.out_n = 0
        return arr

    def get_state(self):
        return {"bar": (<char*>&self.b)[:sizeof(IBar)]}

    def set_state(self, dict state):
        cdef const unsigned char[::1] buf = state["bar"]
        if len(state["bar"]) != sizeof(IBar):
            raise ValueError("information-bar checkpoint has the wrong size")
        memcpy(&self.b, &buf[0], sizeof(IBar))
