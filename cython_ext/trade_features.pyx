# cython: language_level=3
"""Per-trade features of one (exchange, symbol): one output row per trade (docs/features.md, "Per-trade features").

Why a kernel of its own: the trade bars (trade_bars.pyx) emit a row per closed bar; here
every trade is a row with its own rolling windows (t - h, t] over several horizons.
Adding each trade to every window (and removing it later) would cost O(horizons) of
floating-point updates per trade and accumulate rounding; instead the kernel keeps
running totals since the last reset in double-double (rolling_math.pxd) and, per trade
still inside the longest horizon, the totals *before* it (`Cum`).  A window starting at
trade s is `totals - before[s]`: O(1) per horizon and row, rounded once.  The start of
each horizon's window only moves forward (times never decrease), so finding it is O(1)
amortised.

Rules (the reference, tests/reference/per_trade_reference.py, is written from them):
- the window of trade i over horizon h holds the trades j <= i (input order) with
  t_j > t_i - h and no reset in (t_j, t_i]; it always holds trade i itself;
- log_return = ln(p_i / p_(i-1)) against the previous trade, NaN for the first trade
  and the first after a reset; realized_var sums the squared returns of consecutive
  trades both inside the window;
- a trade without a side (side 0) counts in volume, dollar volume, VWAP and the trade
  count, never in buy/sell volume, buy_ratio, tfi or signed_volume (NaN);
- trades with a non-finite or non-positive price or amount are skipped, trades older
  than the time already processed are dropped as late (both counted, no row);
- at equal times resets come before trades.
State (scalars + the retained `Cum` entries) is copied byte for byte by get_state(),
so N chunks (segments) == 1 chunk, bit for bit.
"""
import numpy as np
from libc.math cimport NAN, isfinite, log
from libc.stdint cimport int64_t, int8_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from rolling_math cimport DD, dd_add, dd_add_prod, dd_diff
from trade_agg cimport trade_usable

cdef int64_t NO_TIME = -9223372036854775807 - 1

cdef enum:
    PT_BASE = 6    # timestamp, price, amount, dollar_volume, signed_volume, log_return
    PT_ROLL = 7    # per horizon: vwap, volume, dollar_volume, trade_count, buy_ratio, realized_var, tfi
    # see fluxforge.features.trade_layout.PER_TRADE_FIELDS / per_trade_fields()


cdef struct Cum:
    # Totals since the last reset.  As a retained entry: the totals *before* its trade, except
    # `rv`, which includes the trade's own squared return (that term pairs it with the trade
    # before it, which is outside every window that starts at this trade).
    int64_t ts
    int64_t n
    DD vol, dq, buy, sell, rv


cdef struct PState:
    int64_t last_ts
    double prev_px          # previous trade's price (NaN: none since start / the last reset)
    int64_t n_trades, n_late, n_invalid, n_resets
    int64_t base            # absolute index of ring[0]
    int64_t end             # absolute index after the newest entry
    Cum tot                 # totals through the newest trade


cdef class TradeFeatureEngine:
    """Per-trade rows of one symbol for each horizon (milliseconds)."""

    cdef PState st
    cdef int nh
    cdef int64_t* h_ms
    cdef int64_t* start     # per horizon: absolute index of the window's first trade
    cdef Cum* ring
    cdef int64_t cap

    def __cinit__(self, horizons_ms):
        cdef int k
        self.nh = len(horizons_ms)
        self.h_ms = <int64_t*>calloc(max(self.nh, 1), sizeof(int64_t))
        self.start = <int64_t*>calloc(max(self.nh, 1), sizeof(int64_t))
        if not (self.h_ms and self.start):
            raise MemoryError()
        for k in range(self.nh):
            if int(horizons_ms[k]) <= 0 or (k and int(horizons_ms[k]) <= self.h_ms[k - 1]):
                raise ValueError("horizons must be positive and increasing")
            self.h_ms[k] = int(horizons_ms[k])
        self.st.last_ts = NO_TIME
        self.st.prev_px = NAN

    def __dealloc__(self):
        free(self.ring)
        free(self.start)
        free(self.h_ms)

    @property
    def fields(self):
        return PT_BASE + PT_ROLL * self.nh

    def stats(self):
        return {"trades": self.st.n_trades, "late_dropped": self.st.n_late,
                "invalid_dropped": self.st.n_invalid, "resets": self.st.n_resets}

    cdef void _reset(self) noexcept nogil:
        cdef int k
        self.st.n_resets += 1
        self.st.prev_px = NAN
        memset(&self.st.tot, 0, sizeof(Cum))
        self.st.base = self.st.end = 0     # no entry survives a reset
        for k in range(self.nh):
            self.start[k] = 0

    cdef int _append(self, int64_t ts) noexcept nogil:
        """Room for one more entry: drop the entries before every window, grow if still full."""
        cdef int64_t keep = self.start[self.nh - 1] if self.nh else self.st.end
        cdef int64_t n, cap
        cdef Cum* buf
        if self.st.end - self.st.base < self.cap:
            return 0
        n = self.st.end - keep
        cap = self.cap
        if n >= cap // 2:
            cap = cap * 2 if cap else 1024
        buf = <Cum*>calloc(cap, sizeof(Cum))
        if buf == NULL:
            return -1
        if n:
            memcpy(buf, self.ring + (keep - self.st.base), n * sizeof(Cum))
        free(self.ring)
        self.ring = buf
        self.cap = cap
        self.st.base = keep
        return 0

    cdef int _trade(self, int64_t ts, double px, double q, int8_t side, double* o) noexcept nogil:
        cdef Cum* e
        cdef Cum* b
        cdef Cum* t = &self.st.tot
        cdef double r, vol, dq, buy, sell, sided
        cdef int k
        cdef int64_t s
        if self._append(ts) < 0:
            return -1
        r = log(px / self.st.prev_px) if isfinite(self.st.prev_px) else NAN
        e = &self.ring[self.st.end - self.st.base]
        e[0] = t[0]
        e.ts = ts
        t.ts = ts
        t.n += 1
        dd_add(&t.vol, q)
        dd_add_prod(&t.dq, px, q)
        if side > 0:
            dd_add(&t.buy, q)
        elif side < 0:
            dd_add(&t.sell, q)
        if isfinite(r):
            dd_add_prod(&t.rv, r, r)
        e.rv = t.rv
        self.st.end += 1
        self.st.prev_px = px
        self.st.n_trades += 1
        o[0] = <double>ts
        o[1] = px
        o[2] = q
        o[3] = px * q
        o[4] = q if side > 0 else (-q if side < 0 else NAN)
        o[5] = r
        for k in range(self.nh):
            s = self.start[k]
            while self.ring[s - self.st.base].ts <= ts - self.h_ms[k]:
                s += 1                          # never passes the newest entry: its ts > ts - h
            self.start[k] = s
            b = &self.ring[s - self.st.base]
            vol = dd_diff(&t.vol, &b.vol)
            dq = dd_diff(&t.dq, &b.dq)
            buy = dd_diff(&t.buy, &b.buy)
            sell = dd_diff(&t.sell, &b.sell)
            sided = buy + sell
            o += PT_ROLL if k else PT_BASE
            o[0] = dq / vol if vol > 0.0 else NAN
            o[1] = vol
            o[2] = dq
            o[3] = <double>(t.n - b.n)
            o[4] = buy / sided if sided > 0.0 else NAN
            o[5] = dd_diff(&t.rv, &b.rv)
            o[6] = (buy - sell) / sided if sided > 0.0 else NAN
        return 0

    def process(self, const int64_t[::1] tts, const double[::1] tpx, const double[::1] tamt,
                const int8_t[::1] tside, const int64_t[::1] resets):
        """Run one chunk (trades and resets each sorted by time).

        Returns (rows, index): a float64 block (trades x fields) and, per row, the index
        of its input trade (invalid and late trades have no row)."""
        cdef Py_ssize_t ntr = tts.shape[0], nres = resets.shape[0], j = 0, r = 0, m = 0
        cdef int err = 0
        cdef int nf = PT_BASE + PT_ROLL * self.nh
        if tpx.shape[0] != ntr or tamt.shape[0] != ntr or tside.shape[0] != ntr:
            raise ValueError("trade columns differ in length")
        rows = np.empty((ntr, nf), dtype=np.float64)
        index = np.empty(ntr, dtype=np.int64)
        cdef double[:, ::1] out = rows
        cdef int64_t[::1] idx = index
        with nogil:
            while (j < ntr or r < nres) and not err:
                if r < nres and (j >= ntr or resets[r] <= tts[j]):
                    self._reset()
                    if resets[r] > self.st.last_ts:
                        self.st.last_ts = resets[r]
                    r += 1
                    continue
                j += 1
                if not trade_usable(tts[j - 1], tpx[j - 1], tamt[j - 1], &self.st.last_ts,
                                    &self.st.n_invalid, &self.st.n_late):
                    continue
                err = self._trade(tts[j - 1], tpx[j - 1], tamt[j - 1], tside[j - 1], &out[m, 0])
                idx[m] = j - 1
                m += 1
        if err:
            raise MemoryError()
        return rows[:m], index[:m]

    # ----------------------------------------------------------- checkpoints
    def get_state(self):
        """Everything needed to continue exactly (same build and horizons): the scalars, the
        window starts and the entries from the longest window's start on."""
        cdef int64_t keep = self.start[self.nh - 1] if self.nh else self.st.end
        cdef int64_t n = self.st.end - keep
        return {"st": (<char*>&self.st)[:sizeof(PState)],
                "start": (<char*>self.start)[:self.nh * sizeof(int64_t)] if self.nh else b"",
                "ring": (<char*>(self.ring + (keep - self.st.base)))[:n * sizeof(Cum)] if n else b""}

    def set_state(self, dict state):
        cdef const unsigned char[::1] buf
        cdef PState st
        cdef int64_t n, keep
        cdef int k
        if len(state["st"]) != sizeof(PState) or len(state["start"]) != self.nh * sizeof(int64_t) \
                or len(state["ring"]) % sizeof(Cum):
            raise ValueError("per-trade checkpoint has the wrong size")
        buf = state["st"]
        memcpy(&st, &buf[0], sizeof(PState))
        n = len(state["ring"]) // sizeof(Cum)
        if self.nh:
            buf = state["start"]
            memcpy(self.start, &buf[0], self.nh * sizeof(int64_t))
        keep = st.end - n
        for k in range(self.nh):
            if not (keep <= self.start[k] <= st.end):
                raise ValueError("per-trade checkpoint: window start outside the saved entries")
        free(self.ring)
        self.cap = max(n, 1024)
        self.ring = <Cum*>calloc(self.cap, sizeof(Cum))
        if self.ring == NULL:
            raise MemoryError()
        if n:
            buf = state["ring"]
            memcpy(self.ring, &buf[0], n * sizeof(Cum))
        st.base = keep
        self.st = st
