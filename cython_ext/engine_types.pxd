# cython: language_level=3
"""C types of the streaming feature engine's state (book_engine.pyx).

Why separate: these structs are the whole state of one (exchange, symbol), and
`get_state` copies them byte for byte, so their layout lives in one place.
"""
from libc.stdint cimport int64_t, int32_t, int8_t, uint64_t

from rolling_math cimport DD, Run
from vpin cimport Vpin

cdef enum:
    F_VALID = 1
    F_RET = 2           # r, ofi, mlofi, cog momentum and kyle x are defined (previous valid snapshot exists)
    F_SLOPE = 4
    REG_TIGHT = 0
    REG_NORMAL = 1
    REG_WIDE = 2
    REG_NONE = 3
    NBINS = 4096        # spread-percentile bins: 64 per octave of relative spread
    MAX_EMPTY_BARS = 86400
    N_DYN = 6
    N_ROLL = 8
    N_EXTRA = 12
    TILE = 32           # emitted rows buffered before the cache-friendly transpose

cdef struct Cum:
    # Cumulative sums (since the engine was created) through one snapshot.
    int64_t n_ret
    int64_t n_valid
    int64_t n_slope
    Run run_r
    Run run_d0
    Run run_slope
    Run run_cog
    Run run_x
    DD r, r2, ofi, mlofi, spread, d0, d0sq, slope, slope2, cog, cog2, x, x2, xy

cdef struct Snap:
    int64_t ts
    int32_t qbin
    int8_t flags
    int8_t regime
    Cum cum

cdef struct TCum:
    int64_t ts
    DD buy
    DD sell

cdef struct Win:
    # A time window (t - wms, t]: its oldest event and the cumulative sums just before it.
    int64_t wms
    uint64_t tail
    uint64_t ttail
    Cum base
    TCum tbase

cdef struct RegWin:
    int64_t wms
    uint64_t tail
    int64_t n
    int64_t tight_ms
    int64_t wide_ms
    int8_t has_ev
    int8_t ev_regime

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
    int8_t has_prev_slope
    int8_t prev_regime
    int8_t has_prev_snap
    int64_t prev_ts
    int64_t prev_snap_ts
    double prev_mid
    double prev_vel
    double prev_slope_diff
    double prev_cog
    int prev_nb
    int prev_na
    double pend_signed
    double pend_quote
    uint64_t shead
    uint64_t thead
    Cum cum
    TCum tcum
    Vpin vpin
    int64_t n_books
    int64_t n_trades
    int64_t n_crossed
    int64_t n_one_sided
    int64_t n_resets
