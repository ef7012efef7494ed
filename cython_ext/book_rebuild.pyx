# cython: language_level=3
"""Full-depth order-book rebuild of one (exchange, symbol) from bronze snapshot/delta rows.

Why a kernel of its own: bronze (format 2) records what the exchange said -- snapshots
that (re)initialise the book and deltas (a level's new absolute size, 0 = delete) --
and the features need the exchange's book after every message at full depth, not the
top-N a client library kept.  `BookRebuild` applies the rows with the exchange's rules
in one `nogil` loop and emits, per message, what the feature engine (book_engine.pyx)
reads: the top `max_levels` levels per side and the aggregate depth sums over the whole
book up to the widest band, and at least the best level of each side (see `agg_width`).  docs/features.md ("Book rebuild") states
the rules; tests/reference/book_rebuild.py is an independent spelling of them.

Rules, per message in order:
- snapshot: the book becomes exactly its usable levels (finite price > 0, finite size
  > 0; a repeated price: the last wins).  If the book was rebuilt from deltas since the
  last snapshot and both nonces are known and equal, the snapshot is first compared
  with the rebuilt book over the snapshot's range (rebuilt levels at or better than the
  snapshot's worst level must equal the snapshot's levels); a difference is counted as
  a mismatch and flagged.  A snapshot that ends a gap, or a mismatch, flags a resync.
- delta (only while synced): linked if `prev_nonce == nonce of the book`; else stale
  (skipped) if `nonce <= nonce of the book`; else applied if `prev_nonce < nonce of the
  book` (Binance's first diff after a snapshot: U <= lastUpdateId + 1 <= u); else a gap:
  the book is unsynced (its messages are not emitted) until the next snapshot.  A null
  nonce or prev_nonce skips the checks it would need.  Size 0 deletes the price, a
  finite size > 0 sets it; other levels are ignored and counted.
- memory bound: a side keeps at most `max_depth` levels; beyond that the level farthest
  from the best (the worst price) is evicted and counted -- never silently.
- crossed books are kept as the exchange left them (the features count them).

Storage: each side is one ascending array of keys (bid: price, ask: -price), best last,
so the frequent updates near the top move few elements and eviction drops the front.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport NAN, isfinite
from libc.stdint cimport int64_t, int8_t, INT64_MIN
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memmove, memcpy

from book_struct cimport AG_TOTAL, AG_PQ, AG_DQ, AG_Q2, AG_SMART, AG_W, AG_DEEP, AG_BANDS

cnp.import_array()

cdef int64_t NULL_NONCE = INT64_MIN

cdef enum:
    ST_SYNCED = 1      # the book is known after this message: emit it
    ST_SNAPSHOT = 2    # a snapshot (re)initialised the book
    ST_MISMATCH = 4    # ... and it differed from the rebuilt book
    ST_GAP = 8         # a delta did not link to the book: unsynced until the next snapshot
    ST_STALE = 16      # a delta older than the book: skipped
    ST_RESYNC = 32     # stateful features must restart here (snapshot after a gap, or a mismatch)
    KIND_SNAPSHOT = 0
    KIND_DELTA = 1

cdef struct Side:
    double* key
    double* sz
    int64_t lo
    int64_t n
    int64_t cap

cdef struct Counters:
    int64_t messages
    int64_t snapshots
    int64_t deltas
    int64_t compared
    int64_t mismatches
    int64_t gaps
    int64_t stale
    int64_t unsynced
    int64_t evicted
    int64_t bad_levels

cdef struct RState:
    int8_t synced
    int8_t gapped
    int64_t nonce
    int64_t deltas_since_snapshot
    int64_t next_emit      # the feature engine's hf emission clock over synced messages (book_engine.pyx)
    Counters c


cdef int side_reserve(Side* s) noexcept nogil:
    """Room for one more level at the end; returns 0 if memory ran out."""
    cdef int64_t cap
    cdef double* k
    cdef double* q
    if s.lo + s.n < s.cap:
        return 1
    if s.lo > 0:
        memmove(s.key, s.key + s.lo, s.n * sizeof(double))
        memmove(s.sz, s.sz + s.lo, s.n * sizeof(double))
        s.lo = 0
        return 1
    cap = 64 if s.cap == 0 else s.cap * 2
    k = <double*>realloc(s.key, cap * sizeof(double))
    if k == NULL:
        return 0
    s.key = k
    q = <double*>realloc(s.sz, cap * sizeof(double))
    if q == NULL:
        return 0
    s.sz = q
    s.cap = cap
    return 1


cdef inline int64_t side_find(const Side* s, double key) noexcept nogil:
    """Index (relative to lo) of the first key >= `key`; searched from the best end first."""
    cdef int64_t a = 0, b = s.n, m
    cdef const double* k = s.key + s.lo
    # most updates are near the top: try the last few slots linearly
    m = s.n - 1
    while m >= 0 and m >= s.n - 8:
        if k[m] < key:
            return m + 1
        m -= 1
    if m < 0:
        return 0
    b = m + 1
    while a < b:
        m = (a + b) >> 1
        if k[m] < key:
            a = m + 1
        else:
            b = m
    return a


cdef int side_set(Side* s, double key, double size, int64_t max_depth, int64_t* evicted) noexcept nogil:
    """Set (size > 0) or delete (size == 0) a level; evict the worst beyond max_depth."""
    cdef int64_t i = side_find(s, key)
    cdef double* k
    cdef double* q
    if i < s.n and s.key[s.lo + i] == key:
        if size == 0.0:
            k = s.key + s.lo
            q = s.sz + s.lo
            memmove(k + i, k + i + 1, (s.n - i - 1) * sizeof(double))
            memmove(q + i, q + i + 1, (s.n - i - 1) * sizeof(double))
            s.n -= 1
        else:
            s.sz[s.lo + i] = size
        return 1
    if size == 0.0:
        return 1
    if not side_reserve(s):
        return 0
    k = s.key + s.lo
    q = s.sz + s.lo
    memmove(k + i + 1, k + i, (s.n - i) * sizeof(double))
    memmove(q + i + 1, q + i, (s.n - i) * sizeof(double))
    k[i] = key
    q[i] = size
    s.n += 1
    while s.n > max_depth:
        s.lo += 1
        s.n -= 1
        evicted[0] += 1
    return 1


cdef void side_fit(Side* s, int64_t n) noexcept nogil:
    """Empty the side with room for n levels from index 0."""
    cdef int64_t cap = s.cap if s.cap > 0 else 64
    while cap < n:
        cap *= 2
    if cap != s.cap:
        s.key = <double*>realloc(s.key, cap * sizeof(double))
        s.sz = <double*>realloc(s.sz, cap * sizeof(double))
        s.cap = cap
    s.lo = 0
    s.n = 0


cdef inline void band_add(double* bands, const double* edges, int nband, double d, double q) noexcept nogil:
    # the same test as book_struct.pxd: [lo, hi) from 0
    cdef int j
    cdef double lo = 0.0
    for j in range(nband):
        if d >= lo and d < edges[j]:
            bands[j] += q
            return
        lo = edges[j]


cdef inline double side_dist(const Side* s, double sign, double mid, int64_t i) noexcept nogil:
    """Distance from mid in bps of the level of rank i (0 = best), written as in book_struct.pxd."""
    cdef double p = sign * s.key[s.lo + s.n - 1 - i]
    if sign > 0.0:
        return (mid - p) / mid * 10000.0
    return (p - mid) / mid * 10000.0


cdef int64_t side_cut(const Side* s, double sign, double mid, double edge) noexcept nogil:
    """The first rank whose distance is >= edge (s.n if none)."""
    cdef int64_t a = 0, b = s.n, m
    while a < b:
        m = (a + b) >> 1
        if side_dist(s, sign, mid, m) >= edge:
            b = m
        else:
            a = m + 1
    return a


cdef inline bint level_ok(double p, double q) noexcept nogil:
    return isfinite(p) and isfinite(q) and p > 0.0 and q >= 0.0


cdef class BookRebuild:
    """The rebuilt book of one (exchange, symbol); see the module docstring for the rules."""

    cdef Side bid
    cdef Side ask
    cdef Side scratch
    cdef RState st
    cdef int nlev, nband
    cdef int64_t emit_ms
    cdef int64_t max_depth
    cdef double* edges
    cdef double* tmpk
    cdef double* tmpq
    cdef int64_t tmpcap
    cdef object _fingerprint

    def __cinit__(self, int max_levels, edges_bps, int64_t max_depth, int64_t emit_ms=0):
        cdef int i
        if max_depth < 1:
            raise ValueError("max_depth must be >= 1")
        self.nlev = max_levels
        self.nband = len(edges_bps)
        self.max_depth = max_depth
        self.edges = <double*>malloc((self.nband + 1) * sizeof(double))
        for i in range(self.nband):
            self.edges[i] = edges_bps[i]
        self.st.nonce = NULL_NONCE
        self.st.next_emit = INT64_MIN
        self.emit_ms = emit_ms
        self._fingerprint = (max_levels, tuple(edges_bps), max_depth, emit_ms)

    def __dealloc__(self):
        free(self.bid.key); free(self.bid.sz); free(self.ask.key); free(self.ask.sz)
        free(self.edges); free(self.tmpk); free(self.tmpq)
        free(self.scratch.key); free(self.scratch.sz)

    @property
    def agg_width(self):
        """Columns of the aggregate block: per side AG_BANDS sums then one per band."""
        return 2 * (AG_BANDS + self.nband)

    def stats(self):
        c = self.st.c
        return {"book_messages": c.messages, "book_snapshots": c.snapshots, "book_deltas": c.deltas,
                "book_compared": c.compared, "book_mismatches": c.mismatches, "book_gaps": c.gaps,
                "book_stale": c.stale, "book_unsynced": c.unsynced, "book_evicted": c.evicted,
                "book_bad_levels": c.bad_levels}

    @property
    def synced(self):
        return bool(self.st.synced)

    def levels(self):
        """The whole rebuilt book, best first: (bid_px, bid_sz, ask_px, ask_sz) float64 arrays."""
        b = np.empty(self.bid.n); bq = np.empty(self.bid.n)
        a = np.empty(self.ask.n); aq = np.empty(self.ask.n)
        cdef int64_t i
        for i in range(self.bid.n):
            b[i] = self.bid.key[self.bid.lo + self.bid.n - 1 - i]
            bq[i] = self.bid.sz[self.bid.lo + self.bid.n - 1 - i]
        for i in range(self.ask.n):
            a[i] = -self.ask.key[self.ask.lo + self.ask.n - 1 - i]
            aq[i] = self.ask.sz[self.ask.lo + self.ask.n - 1 - i]
        return b, bq, a, aq

    # ------------------------------------------------------------ snapshots
    cdef int64_t _load(self, double sign, const double[::1] px, const double[::1] sz,
                       int64_t start, int64_t end) noexcept nogil:
        """Usable levels of one snapshot side into tmpk/tmpq: ascending keys (best last), unique."""
        cdef int64_t j, n = 0, cnt = end - start
        cdef double p, q
        cdef bint ordered = 1
        if cnt > self.tmpcap:
            self.tmpk = <double*>realloc(self.tmpk, cnt * sizeof(double))
            self.tmpq = <double*>realloc(self.tmpq, cnt * sizeof(double))
            self.tmpcap = cnt
        j = end - 1
        while j >= start:  # best-first input, walked backwards: keys come out ascending
            p = px[j]
            q = sz[j]
            if not level_ok(p, q):
                self.st.c.bad_levels += 1
            elif q > 0.0:
                if n > 0 and sign * p <= self.tmpk[n - 1]:
                    ordered = 0
                self.tmpk[n] = sign * p
                self.tmpq[n] = q
                n += 1
            j -= 1
        if ordered:
            return n
        # repeated prices or another order: set them one by one in message order (the last wins)
        self.scratch.lo = 0
        self.scratch.n = 0
        for j in range(start, end):
            p = px[j]
            q = sz[j]
            if level_ok(p, q) and q > 0.0:
                side_set(&self.scratch, sign * p, q, 9223372036854775807, &self.st.c.evicted)
        memcpy(self.tmpk, self.scratch.key + self.scratch.lo, self.scratch.n * sizeof(double))
        memcpy(self.tmpq, self.scratch.sz + self.scratch.lo, self.scratch.n * sizeof(double))
        return self.scratch.n

    cdef bint _snapshot_side(self, Side* s, double sign, const double[::1] px, const double[::1] sz,
                             int64_t start, int64_t end, bint compare) noexcept nogil:
        """Replace one side by the snapshot's levels; returns 0 if `compare` found a difference."""
        cdef int64_t n = self._load(sign, px, sz, start, end), i, k, first, m
        cdef bint same = 1
        first = n - self.max_depth if n > self.max_depth else 0
        m = n - first
        if compare:
            k = side_find(s, self.tmpk[first]) if m > 0 else 0
            if s.n - k != m:
                same = 0
            else:
                for i in range(m):
                    if s.key[s.lo + k + i] != self.tmpk[first + i] or s.sz[s.lo + k + i] != self.tmpq[first + i]:
                        same = 0
                        break
        self.st.c.evicted += first
        side_fit(s, m)
        memcpy(s.key, self.tmpk + first, m * sizeof(double))
        memcpy(s.sz, self.tmpq + first, m * sizeof(double))
        s.n = m
        return same

    cdef void _delta_side(self, Side* s, double sign, const double[::1] px, const double[::1] sz,
                          int64_t start, int64_t end) noexcept nogil:
        cdef int64_t j
        cdef double p, q
        for j in range(start, end):
            p = px[j]
            q = sz[j]
            if level_ok(p, q):
                side_set(s, sign * p, q, self.max_depth, &self.st.c.evicted)
            else:
                self.st.c.bad_levels += 1

    cdef int8_t _apply(self, int8_t kind, int64_t nonce, int64_t prev, const int64_t[::1] boff,
                       const double[::1] bpx, const double[::1] bsz, const int64_t[::1] aoff,
                       const double[::1] apx, const double[::1] asz, Py_ssize_t i) noexcept nogil:
        cdef RState* st = &self.st
        cdef int8_t status = 0
        cdef bint compare, same
        st.c.messages += 1
        if kind == KIND_SNAPSHOT:
            st.c.snapshots += 1
            compare = (st.synced and st.deltas_since_snapshot > 0 and nonce != NULL_NONCE
                       and st.nonce != NULL_NONCE and nonce == st.nonce)
            same = self._snapshot_side(&self.bid, 1.0, bpx, bsz, boff[i], boff[i + 1], compare)
            same = self._snapshot_side(&self.ask, -1.0, apx, asz, aoff[i], aoff[i + 1], compare) and same
            status = ST_SNAPSHOT | ST_SYNCED
            if compare:
                st.c.compared += 1
                if not same:
                    st.c.mismatches += 1
                    status |= ST_MISMATCH | ST_RESYNC
            if st.gapped:
                status |= ST_RESYNC
            st.synced = 1
            st.gapped = 0
            st.nonce = nonce
            st.deltas_since_snapshot = 0
            return status
        st.c.deltas += 1
        if not st.synced:
            st.c.unsynced += 1
            return 0
        if nonce != NULL_NONCE and st.nonce != NULL_NONCE:
            if prev != NULL_NONCE and prev == st.nonce:
                pass
            elif nonce <= st.nonce:
                st.c.stale += 1
                return ST_STALE
            elif prev != NULL_NONCE and prev > st.nonce:
                st.c.gaps += 1
                st.synced = 0
                st.gapped = 1
                return ST_GAP
        self._delta_side(&self.bid, 1.0, bpx, bsz, boff[i], boff[i + 1])
        self._delta_side(&self.ask, -1.0, apx, asz, aoff[i], aoff[i + 1])
        st.nonce = nonce
        st.deltas_since_snapshot += 1
        return ST_SYNCED

    # -------------------------------------------------------------- outputs
    cdef void _emit(self, double* lv, Py_ssize_t block, double* agg, bint full) noexcept nogil:
        """Top levels (4 blocks `block` apart: bid px, bid sz, ask px, ask sz) and the aggregate sums of the
        current book.  Unless `full`, only what every message needs (book_struct.pxd `book_core`: total,
        sum (p - mid) q, deepest price, first band) is summed and the rest is NaN: a message the feature
        engine will not emit as an hf row skips the divisions of the other sums."""
        cdef int i, j
        cdef Side* s
        cdef int64_t m
        cdef double mid, sign, p, q, d, widest = self.edges[self.nband - 1]
        cdef double* a
        cdef int64_t cut, cut0
        for j in range(2):
            s = &self.bid if j == 0 else &self.ask
            sign = 1.0 if j == 0 else -1.0
            m = s.n
            for i in range(self.nlev):
                if i < m:
                    lv[(2 * j) * block + i] = sign * s.key[s.lo + m - 1 - i]
                    lv[(2 * j + 1) * block + i] = s.sz[s.lo + m - 1 - i]
                else:
                    lv[(2 * j) * block + i] = NAN
                    lv[(2 * j + 1) * block + i] = NAN
        if self.bid.n == 0 or self.ask.n == 0 or self.bid.key[self.bid.lo + self.bid.n - 1] > -self.ask.key[self.ask.lo + self.ask.n - 1]:
            for i in range(2 * (AG_BANDS + self.nband)):
                agg[i] = NAN
            return
        mid = 0.5 * (self.bid.key[self.bid.lo + self.bid.n - 1] - self.ask.key[self.ask.lo + self.ask.n - 1])
        for j in range(2):
            s = &self.bid if j == 0 else &self.ask
            sign = 1.0 if j == 0 else -1.0
            a = agg + j * (AG_BANDS + self.nband)
            for i in range(AG_BANDS + self.nband):
                a[i] = 0.0
            a[AG_DEEP] = NAN
            if not full:
                a[AG_PQ] = NAN
                a[AG_Q2] = NAN
                a[AG_SMART] = NAN
                a[AG_W] = NAN
                for i in range(1, self.nband):
                    a[AG_BANDS + i] = NAN
                # distance is monotone in the rank (so are its rounded operations): binary-search the
                # band edges with the exact expression, then sum without a division per level
                cut = side_cut(s, sign, mid, widest)
                if cut == 0 and s.n > 0:
                    cut = 1
                cut0 = side_cut(s, sign, mid, self.edges[0])
                for i in range(cut):
                    p = sign * s.key[s.lo + s.n - 1 - i]
                    q = s.sz[s.lo + s.n - 1 - i]
                    a[AG_TOTAL] += q
                    a[AG_DQ] += (p - mid) * q
                    if i < cut0:
                        a[AG_BANDS] += q
                if cut > 0:
                    a[AG_DEEP] = sign * s.key[s.lo + s.n - cut]
                continue
            for i in range(s.n):
                p = sign * s.key[s.lo + s.n - 1 - i]
                q = s.sz[s.lo + s.n - 1 - i]
                if j == 0:
                    d = (mid - p) / mid * 10000.0
                else:
                    d = (p - mid) / mid * 10000.0
                if d >= widest and i > 0:  # the best level always counts (a valid book has depth)
                    break
                a[AG_TOTAL] += q
                a[AG_PQ] += p * q
                a[AG_DQ] += (p - mid) * q
                a[AG_Q2] += q * q
                a[AG_SMART] += q / (i + 1.0)
                a[AG_W] += q / (1.0 + d)
                a[AG_DEEP] = p
                band_add(a + AG_BANDS, self.edges, self.nband, d, q)

    # ------------------------------------------------------------ the loop
    def process(self, const int8_t[::1] kind, const int64_t[::1] nonce, const int64_t[::1] prev,
                const int64_t[::1] boff, const double[::1] bpx, const double[::1] bsz,
                const int64_t[::1] aoff, const double[::1] apx, const double[::1] asz,
                const int64_t[::1] ts=None):
        """Apply n messages in order.  Offsets have n + 1 entries (a row's levels are
        [off[i], off[i + 1]) of the flat price/size arrays); null nonces are INT64_MIN.

        `ts` (exchange ms) drives the same emission clock as the feature engine (`emit_ms`):
        only messages it will emit as hf rows get every aggregate; without `ts`, all do.

        Returns (levels[4, n, max_levels], agg[n, agg_width], status[n] int8 flags).
        Rows whose status lacks ST_SYNCED hold NaN.
        """
        cdef Py_ssize_t n = kind.shape[0], i
        cdef int8_t stt
        cdef bint full, timed = ts is not None
        cdef Py_ssize_t block = n * self.nlev
        cdef int w = 2 * (AG_BANDS + self.nband)
        if timed and ts.shape[0] != n:
            raise ValueError("timestamps and book messages differ in length")
        if nonce.shape[0] != n or prev.shape[0] != n or boff.shape[0] != n + 1 or aoff.shape[0] != n + 1:
            raise ValueError("book message columns differ in length")
        if bpx.shape[0] != bsz.shape[0] or apx.shape[0] != asz.shape[0]:
            raise ValueError("price and size lists differ in length")
        if n and (boff[n] > bpx.shape[0] or aoff[n] > apx.shape[0] or boff[0] < 0 or aoff[0] < 0):
            raise ValueError("level offsets run past the level arrays")
        for i in range(n):
            if boff[i + 1] < boff[i] or aoff[i + 1] < aoff[i]:
                raise ValueError("level offsets must not decrease")
        # not pre-filled: `_emit` writes every level and sum of a synced row (NaN where there is none),
        # `_blank` every one of the others -- one pass over hundreds of MB for a big batch, not two
        lv = np.empty((4, n, self.nlev))
        agg = np.empty((n, w))
        status = np.zeros(n, dtype=np.int8)
        cdef double[:, :, ::1] lvv = lv
        cdef double[:, ::1] av = agg
        cdef int8_t[::1] sv = status
        with nogil:
            for i in range(n):
                stt = self._apply(kind[i], nonce[i], prev[i], boff, bpx, bsz, aoff, apx, asz, i)
                sv[i] = stt
                if stt & ST_SYNCED:
                    full = 1
                    if timed and self.emit_ms > 0:   # exactly BookEngine's rule (book_engine.pyx, process)
                        full = ts[i] >= self.st.next_emit
                        if full:
                            self.st.next_emit = (ts[i] // self.emit_ms + 1) * self.emit_ms
                    self._emit(&lvv[0, i, 0], block, &av[i, 0], full)
                else:
                    self._blank(&lvv[0, i, 0], block, &av[i, 0], w)
        return lv, agg, status

    cdef void _blank(self, double* lv, Py_ssize_t block, double* agg, int w) noexcept nogil:
        """NaN in every level and sum of a row whose book is unknown (no ST_SYNCED)."""
        cdef int i, j
        for j in range(4):
            for i in range(self.nlev):
                lv[j * block + i] = NAN
        for i in range(w):
            agg[i] = NAN

    # ---------------------------------------------------------- checkpoints
    def get_state(self):
        """Everything needed to continue exactly: a dict of bytes."""
        cdef Side* s
        out = {"st": (<char*>&self.st)[:sizeof(RState)]}
        for name in ("bid", "ask"):
            s = &self.bid if name == "bid" else &self.ask
            out[name + "_key"] = (<char*>(s.key + s.lo))[:s.n * sizeof(double)] if s.n else b""
            out[name + "_sz"] = (<char*>(s.sz + s.lo))[:s.n * sizeof(double)] if s.n else b""
        return out

    def set_state(self, dict state):
        cdef const unsigned char[::1] buf
        cdef Side* s
        cdef int64_t n
        data = state["st"]
        if len(data) != sizeof(RState):
            raise ValueError("book rebuild checkpoint has the wrong size")
        buf = data
        memcpy(&self.st, &buf[0], sizeof(RState))
        for name in ("bid", "ask"):
            s = &self.bid if name == "bid" else &self.ask
            keys, sizes = state[name + "_key"], state[name + "_sz"]
            if len(keys) != len(sizes) or len(keys) % sizeof(double):
                raise ValueError("book rebuild checkpoint has a torn side")
            n = len(keys) // sizeof(double)
            side_fit(s, n)
            if n:
                buf = keys
                memcpy(s.key, &buf[0], n * sizeof(double))
                buf = sizes
                memcpy(s.sz, &buf[0], n * sizeof(double))
            s.n = n
