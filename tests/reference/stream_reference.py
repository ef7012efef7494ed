"""Reference of every stateful feature (dynamic, rolling, regime, Kyle, VPIN, bars).

Written from docs/features.md, event by event, with every window recomputed
from scratch over the events inside it (bisect on time, then sum/sort the
slice).  Slow on purpose and shares nothing with cython_ext/.  `mode="python"`
uses plain Python (math.fsum, sorted); `mode="numpy"` uses the vectorised
structural reference and NumPy reductions over window slices.
"""
from __future__ import annotations

import bisect
import math
from datetime import datetime, timezone

import numpy as np

from fluxforge.config import FeatureOptions
from tests.reference.book_rebuild import RESYNC, SYNCED, rebuild_rows, within_band
from tests.reference.book_reference import structural_numpy, structural_row
from tests.reference.time_gaps import gap_resets

NAN = float("nan")
# A gap of more than this many bar lengths closes the open bar and emits no empty bars in
# between (a day of 1 s bars): a clock jump or a restored old segment must not write millions
# of rows.  The kernels have the same cap (cython_ext/engine_types.pxd MAX_EMPTY_BARS).
MAX_EMPTY_BARS = 86_400
UNIT = 1e8  # VPIN volume unit: 1e-8 base


class PyAgg:
    @staticmethod
    def total(xs):
        return math.fsum(xs)

    @staticmethod
    def mean(xs):
        return math.fsum(xs) / len(xs) if xs else NAN

    @staticmethod
    def std(xs):
        if len(xs) < 2:
            return NAN
        m = math.fsum(xs) / len(xs)
        return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))

    @staticmethod
    def sort(xs):
        return sorted(xs)


class NpAgg:
    @staticmethod
    def total(xs):
        return float(np.sum(np.asarray(xs, dtype=np.float64))) if len(xs) else 0.0

    @staticmethod
    def mean(xs):
        return float(np.mean(np.asarray(xs, dtype=np.float64))) if len(xs) else NAN

    @staticmethod
    def std(xs):
        return float(np.std(np.asarray(xs, dtype=np.float64), ddof=1)) if len(xs) >= 2 else NAN

    @staticmethod
    def sort(xs):
        return np.sort(np.asarray(xs, dtype=np.int64)).tolist()


def _ms(seconds):
    return int(round(seconds * 1000.0))


def _pad(rows, width=None):
    """NaN-padded matrix of ragged rows (width: at least the longest row)."""
    width = max([width or 1] + [len(xs) for xs in rows])
    out = np.full((len(rows), width), np.nan)
    for i, xs in enumerate(rows):
        out[i, :len(xs)] = xs
    return out


def _book_times(cols):
    """docs/features.md: a book row without exchange time (Binance's REST snapshot) takes the time
    of the symbol's next timed book row in receive order, else of the previous one."""
    ts = list(cols["timestamp"])
    recv = cols.get("recv_ns")
    by_recv = sorted(range(len(ts)), key=lambda i: recv[i]) if recv else list(range(len(ts)))
    for walk in (reversed(by_recv), by_recv):
        seen = None
        for i in walk:
            if cols["timestamp"][i] is not None:
                seen = cols["timestamp"][i]
            elif ts[i] is None:
                ts[i] = seen
    return ts


def _books_rows(books, opts, mode):
    """Rebuild the books (tests/reference/book_rebuild.py) in time order; one record per message
    after which the book is known, plus the times where a resync restarts the features, plus the
    times of all book rows in order (for the time-gap rule)."""
    cols = books.to_pydict()
    cols["timestamp"] = _book_times(cols)
    n = len(cols["timestamp"])
    order = sorted((i for i in range(n) if cols["timestamp"][i] is not None), key=lambda i: cols["timestamp"][i])
    timed = {k: [cols[k][i] for i in order] for k in cols}
    L = opts.max_levels
    widest = float(opts.bands_bps[-1])
    known, resyncs = [], []
    for k, (status, bids, asks) in enumerate(rebuild_rows(timed, opts.book_max_depth)):
        if status & RESYNC:
            resyncs.append(timed["timestamp"][k])
        if status & SYNCED:
            deep_b, deep_a = within_band(bids, asks, widest)
            known.append((k, bids[:L], asks[:L], deep_b, deep_a))
    if mode == "numpy":
        def mats(j):
            return _pad([[p for p, _ in r[j]] for r in known], L), _pad([[q for _, q in r[j]] for r in known], L)
        (bp, bq), (ap, aq), (dbp, dbq), (dap, daq) = mats(1), mats(2), mats(3), mats(4)
        f, _ = structural_numpy(bp, bq, ap, aq, opts, deep=(dbp, dbq, dap, daq))
    out = []
    for j, (k, bids, asks, deep_b, deep_a) in enumerate(known):
        if mode == "numpy":
            s = {name: (v[j].item() if hasattr(v[j], "item") else v[j]) for name, v in f.items()}
            valid = bool(s["book_depth"] > 0 and not s["is_crossed"])
        else:
            s, valid = structural_row(bids, asks, opts, deep=(deep_b, deep_a))
        out.append(dict(ts=timed["timestamp"][k], nonce=timed["nonce"][k], bids=bids, asks=asks, s=s, valid=valid))
    return out, resyncs, timed["timestamp"]


def _trade_rows(trades):
    if trades is None:
        return []
    c = trades.to_pydict()
    rows = []
    for ts, p, a, side in zip(c["timestamp"], c["price"], c["amount"], c["side"]):
        if ts is None or p is None or a is None or not (math.isfinite(p) and math.isfinite(a) and p > 0 and a > 0):
            continue
        rows.append(dict(ts=ts, price=p, amount=a, side=1 if side == "buy" else -1 if side == "sell" else 0))
    rows.sort(key=lambda r: r["ts"])
    return rows


def ofi_level(cur, prev, m):
    """Cont-Kukanov-Stoikov e at level m; missing levels are bid -inf / ask +inf with size 0."""
    def lvl(side, book, default):
        return book[side][m] if m < len(book[side]) else (default, 0.0)
    (b, q), (b0, q0) = lvl("bids", cur, -math.inf), lvl("bids", prev, -math.inf)
    (a, qa), (a0, qa0) = lvl("asks", cur, math.inf), lvl("asks", prev, math.inf)
    return (q if b >= b0 else 0.0) - (q0 if b <= b0 else 0.0) - (qa if a <= a0 else 0.0) + (qa0 if a >= a0 else 0.0)


def spread_bin(relsp):
    if relsp <= 0:
        return 0
    return min(max(math.floor((math.log2(relsp) + 48.0) * 64.0), 0), 4095)


def reference(books, trades=None, resets=(), options=None, mode="python", max_gap_ms=None, **overrides):
    """(hf rows as a list of dicts, {duration: list of bar dicts}) of one batch, open bars flushed.

    `max_gap_ms`: a book row more than this after the previous book row resets at its time."""
    opts = FeatureOptions(**{**(options.model_dump() if options else {}), **overrides})
    agg = NpAgg if mode == "numpy" else PyAgg
    B, resyncs, book_times = _books_rows(books, opts, mode)
    T = _trade_rows(trades)
    R = sorted(set(int(r) for r in resets) | set(int(r) for r in resyncs) | set(gap_resets(book_times, max_gap_ms)))
    emit_ms = _ms(opts.hf_emit_interval)
    weights = [math.exp(-opts.ofi_decay_alpha * m) for m in range(opts.ofi_levels)]
    band0 = f"_0_{opts.bands_bps[0]:g}bps"
    # merged event order: resets, then trades, then the snapshot at equal times
    events = [(t["ts"], 1, k) for k, t in enumerate(T)] + [(b["ts"], 2, k) for k, b in enumerate(B)]
    events.sort(key=lambda e: (e[0], e[1]))
    snaps, trs = [], []          # processed records, in order
    epoch, ri, t0, prev, pend, next_emit, epoch_start = 0, 0, None, None, [], None, 0
    vol_trades = []              # sided trades since the last reset, for VPIN
    hf = []
    bars = {d: [] for d in opts.bar_durations}
    open_bar = {d: None for d in opts.bar_durations}
    prev_close = {d: NAN for d in opts.bar_durations}

    def close_bar(d, bar):
        v = [s for s in bar["snaps"] if s["valid"]]
        row = dict(timestamp=bar["k"] * d * 1000, duration=d, count=len(bar["snaps"]), valid_count=len(v),
                   crossed_count=sum(1 for s in bar["snaps"] if s["s"]["is_crossed"]))
        if v:
            mids = [s["s"]["mid_price"] for s in v]
            spreads = [s["s"]["spread"] for s in v]
            row.update(open=mids[0], high=max(mids), low=min(mids), close=mids[-1], mean_spread=agg.mean(spreads),
                       min_spread=min(spreads), max_spread=max(spreads),
                       mean_relative_spread=agg.mean([s["s"]["relative_spread"] for s in v]),
                       mean_l1_imbalance=agg.mean([s["s"]["imbalance_L0"] for s in v]))
            prev_close[d] = mids[-1]
        else:
            c = prev_close[d]
            row.update(open=c, high=c, low=c, close=c, mean_spread=NAN, min_spread=NAN, max_spread=NAN,
                       mean_relative_spread=NAN, mean_l1_imbalance=NAN)
        withret = [s for s in v if s["has_ret"]]
        row["sum_ofi"] = agg.total([s["ofi"] for s in withret])
        row["realized_variance"] = agg.total([s["r"] ** 2 for s in withret])
        tb = bar["trades"]
        row["buy_volume"] = agg.total([t["amount"] for t in tb if t["side"] > 0])
        row["sell_volume"] = agg.total([t["amount"] for t in tb if t["side"] < 0])
        q = agg.total([t["amount"] for t in tb])
        row["trade_vwap"] = agg.total([t["price"] * t["amount"] for t in tb]) / q if q > 0 else NAN
        row["trade_count"] = len(tb)
        row["is_empty"] = not v
        bars[d].append(row)

    def advance_bars(ts):
        for d in opts.bar_durations:
            k = ts // (d * 1000)
            bar = open_bar[d]
            if bar is not None and k > bar["k"]:
                close_bar(d, bar)
                if k - (bar["k"] + 1) <= MAX_EMPTY_BARS:
                    for e in range(bar["k"] + 1, k):
                        close_bar(d, dict(k=e, snaps=[], trades=[]))
                bar = None
            if bar is None:
                open_bar[d] = dict(k=k, snaps=[], trades=[])

    times = {id(snaps): [], id(trs): []}   # event times of each record list, for bisect

    def window(records, t, wms):
        """Records of the current epoch with t - wms < ts <= t (records are in time order)."""
        lo = bisect.bisect_right(times[id(records)], t - wms)
        return [r for r in records[lo:] if r["epoch"] == epoch and r["ts"] <= t]

    for ts, kind, k in events:
        if ri < len(R) and R[ri] <= ts:
            while ri < len(R) and R[ri] <= ts:
                ri += 1
            epoch += 1
            epoch_start = len(snaps)
            t0, prev, pend, vol_trades = None, None, [], []
            for d in opts.bar_durations:
                prev_close[d] = NAN
        if t0 is None:
            t0 = ts
        advance_bars(ts)
        if kind == 1:
            tr = dict(T[k], epoch=epoch)
            trs.append(tr)
            times[id(trs)].append(ts)
            pend.append(tr)
            for d in opts.bar_durations:
                open_bar[d]["trades"].append(tr)
            if tr["side"] != 0:
                vol_trades.append(tr)
            continue
        b = B[k]
        s = dict(ts=ts, epoch=epoch, valid=b["valid"], s=b["s"], has_ret=False, r=NAN, ofi=NAN, mlofi=NAN,
                 slope=NAN, cog=NAN, regime=None, q=None, bids=b["bids"], asks=b["asks"])
        dyn = dict(log_return_step=NAN, mid_velocity=NAN, mid_accel=NAN, ofi_step=NAN, mlofi_step=NAN, amihud_like=NAN)
        if b["valid"]:
            mid = b["s"]["mid_price"]
            s["depth0"] = b["s"]["bid_vol_band" + band0] + b["s"]["ask_vol_band" + band0]
            s["slope_diff"] = b["s"]["bid_slope"] - b["s"]["ask_slope"]
            s["q"] = spread_bin(b["s"]["relative_spread"])
            if prev is not None:
                s["has_ret"] = True
                s["r"] = math.log(mid / prev["s"]["mid_price"])
                e = [ofi_level(b, prev, m) for m in range(opts.ofi_levels)]
                s["ofi"] = e[0]
                s["mlofi"] = math.fsum(w * x for w, x in zip(weights, e))
                s["kx"] = math.fsum(t["side"] * t["amount"] for t in pend)
                quote = math.fsum(t["price"] * t["amount"] for t in pend)
                dt = (ts - prev["ts"]) / 1000.0
                if dt > 0:
                    s["vel"] = (mid - prev["s"]["mid_price"]) / dt
                    if not math.isnan(prev.get("vel", NAN)):
                        dyn["mid_accel"] = (s["vel"] - prev["vel"]) / dt
                dyn.update(log_return_step=s["r"], mid_velocity=s.get("vel", NAN), ofi_step=s["ofi"],
                           mlofi_step=s["mlofi"], amihud_like=abs(s["r"]) / quote if quote > 0 else NAN)
                if math.isfinite(s["slope_diff"]) and math.isfinite(prev["slope_diff"]):
                    s["slope"] = s["slope_diff"] - prev["slope_diff"]
                s["cog"] = b["s"]["cog_vs_mid"] - prev["s"]["cog_vs_mid"]
        snaps.append(s)
        times[id(snaps)].append(ts)
        for d in opts.bar_durations:
            open_bar[d]["snaps"].append(s)
        # spread regime of this snapshot: window over valid snapshots, including itself
        wr = _ms(opts.spread_regime_window)
        if b["valid"]:
            qs = agg.sort([x["q"] for x in window(snaps, ts, wr) if x["valid"]])
            n = len(qs)
            rel = b["s"]["relative_spread"]
            if opts.use_dynamic_spread_regime:
                qt = qs[max(1, math.ceil(opts.spread_tight_percentile * n / 100.0)) - 1]
                qw = qs[max(1, math.ceil(opts.spread_wide_percentile * n / 100.0)) - 1]
                s["regime"] = 0 if s["q"] <= qt else 2 if s["q"] >= qw else 1
            else:
                s["regime"] = 0 if rel <= opts.tight_spread_threshold else 2 if rel >= opts.wide_spread_threshold else 1
            s["pct"] = 100.0 * (sum(1 for x in qs if x < s["q"]) + 0.5 * sum(1 for x in qs if x == s["q"])) / n
        if b["valid"]:
            prev = s
            pend = []
        emit = emit_ms == 0 or next_emit is None or ts >= next_emit
        if not emit:
            continue
        if emit_ms:
            next_emit = (ts // emit_ms + 1) * emit_ms
        row = dict(timestamp=ts, nonce=b["nonce"], **b["s"], **dyn)
        for h in opts.horizons:
            w, name = _ms(h), f"{h:g}s"
            warm = ts - t0 >= w
            ws = window(snaps, ts, w)
            rets = [x["r"] for x in ws if x["has_ret"]]
            wt = [t for t in window(trs, ts, w) if t["side"] != 0]
            buy = agg.total([t["amount"] for t in wt if t["side"] > 0])
            sell = agg.total([t["amount"] for t in wt if t["side"] < 0])
            spreads = [x["s"]["spread"] for x in ws if x["valid"]]
            vals = {
                "rv": math.sqrt(agg.total([r * r for r in rets])), "ret_std": agg.std(rets),
                "mean_return": agg.mean(rets), "ofi_sum": agg.total([x["ofi"] for x in ws if x["has_ret"]]),
                "mlofi_sum": agg.total([x["mlofi"] for x in ws if x["has_ret"]]),
                "tfi": (buy - sell) / (buy + sell) if buy + sell > 0 else NAN, "trade_vol": buy + sell,
                "mean_spread": agg.mean(spreads),
            }
            for key, v in vals.items():
                row[f"{key}_{name}"] = v if warm else NAN
        mw = _ms(opts.momentum_window)
        mname = f"{opts.momentum_window:g}s"
        ws = window(snaps, ts, mw)
        warm = ts - t0 >= mw
        slopes = [x["slope"] for x in ws if not math.isnan(x["slope"])]
        cogs = [x["cog"] for x in ws if not math.isnan(x["cog"])]
        row[f"depth_0_{opts.bands_bps[0]:g}bps_sigma"] = agg.std([x["depth0"] for x in ws if x["valid"]]) if warm else NAN
        row[f"slope_momentum_mean_{mname}"] = agg.mean(slopes) if warm else NAN
        row[f"slope_momentum_std_{mname}"] = agg.std(slopes) if warm else NAN
        row[f"cog_momentum_mean_{mname}"] = agg.mean(cogs) if warm else NAN
        row[f"cog_momentum_std_{mname}"] = agg.std(cogs) if warm else NAN
        # time-weighted regime fractions: each snapshot's regime holds until the next snapshot
        row.update(spread_regime=NAN, spread_regime_tight_frac=NAN, spread_regime_wide_frac=NAN, spread_percentile=NAN)
        if ts - t0 >= wr:
            first = next(x for x in snaps[epoch_start:] if x["epoch"] == epoch)
            start = max(epoch_start, bisect.bisect_right(times[id(snaps)], ts - wr) - 1)
            mine = [x for x in snaps[start:] if x["epoch"] == epoch]
            lo = max(ts - wr, first["ts"])
            tight = wide = 0
            for a, z in zip(mine, mine[1:] + [dict(ts=ts)]):
                part = max(0, min(z["ts"], ts) - max(a["ts"], ts - wr))
                tight += part if a["regime"] == 0 else 0
                wide += part if a["regime"] == 2 else 0
            if ts - lo > 0:
                row["spread_regime_tight_frac"] = tight / (ts - lo)
                row["spread_regime_wide_frac"] = wide / (ts - lo)
            if s["regime"] is not None:
                row["spread_regime"] = float(s["regime"])
                row["spread_percentile"] = s["pct"]
        # Kyle's lambda: OLS of the step return on the signed taker volume since the previous snapshot
        row["kyle_lambda"] = row["kyle_lambda_r2"] = NAN
        kw = _ms(opts.kyle_lambda_window)
        pairs = [(x["kx"], x["r"]) for x in window(snaps, ts, kw) if x["has_ret"]]
        if ts - t0 >= kw and len(pairs) >= 3 and len({x for x, _ in pairs}) > 1:
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            mx, my = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
            cxx = math.fsum((x - mx) ** 2 for x in xs)
            cxy = math.fsum((x - mx) * (y - my) for x, y in pairs)
            cyy = math.fsum((y - my) ** 2 for y in ys)
            row["kyle_lambda"] = cxy / cxx
            if len(set(ys)) > 1:
                row["kyle_lambda_r2"] = cxy * cxy / (cxx * cyy)
        row["vpin"] = vpin(vol_trades, opts) if opts.enable_vpin else NAN
        dt = datetime.fromtimestamp(ts / 1000, tz=timezone.utc)
        row.update(hour_of_day=dt.hour, day_of_week=dt.weekday(), minute_of_hour=dt.minute, is_weekend=dt.weekday() >= 5)
        hf.append(row)
    for d in opts.bar_durations:
        if open_bar[d] is not None:
            close_bar(d, open_bar[d])
    return hf, bars


def vpin(sided_trades, opts):
    """Easley-Lopez de Prado-O'Hara: buckets of V (in 1e-8 units) of cumulative volume; trades split at edges."""
    V = max(1, math.floor(opts.vpin_bucket_volume * UNIT + 0.5))
    n = opts.vpin_window_buckets
    buckets = {}
    cum = 0
    for t in sided_trades:
        units = math.floor(t["amount"] * UNIT + 0.5)
        a, z = cum, cum + units
        k = a // V
        while k * V < z:
            part = min(z, (k + 1) * V) - max(a, k * V)
            bs = buckets.setdefault(k, [0, 0])
            bs[0 if t["side"] > 0 else 1] += part
            k += 1
        cum = z
    complete = cum // V
    if complete < n:
        return NAN
    imb = sum(abs(buckets[k][0] - buckets[k][1]) for k in range(complete - n, complete))
    return imb / (n * V)
