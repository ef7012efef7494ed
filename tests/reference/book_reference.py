"""Reference of the structural (one-snapshot) features, straight from docs/features.md.

Two spellings of the same definitions: `structural_row` (plain Python, one book)
and `structural_numpy` (vectorised over all books).  Neither shares code with
cython_ext/; only the band-distance expression is written the same way as in
the docs, because a level exactly on a band edge must land in the same band.
"""
from __future__ import annotations

import math

import numpy as np

NAN = float("nan")


def usable_levels(prices, sizes, max_levels):
    """The first max_levels list entries whose price and size are finite and > 0, in order."""
    out = []
    for p, q in list(zip(prices or [], sizes or []))[:max_levels]:
        if p is not None and q is not None and math.isfinite(p) and math.isfinite(q) and p > 0 and q > 0:
            out.append((p, q))
    return out


def band_edges(opts):
    edges = [float(x) for x in opts.bands_bps]
    return list(zip([0.0] + edges[:-1], edges))


def _imb(a, b):
    return NAN if a + b == 0 else (a - b) / (a + b)


def _div(a, b):
    return NAN if b == 0 or math.isnan(b) else a / b


TOP_SHAPE = ["imbalance_top3", "imbalance_top5", "imbalance_top10", "bid_depth_slope", "ask_depth_slope",
             "depth_slope_asymmetry", "bid_depth_decay_5", "ask_depth_decay_5", "bid_50pct_depth_level",
             "ask_50pct_depth_level", "book_convexity"]


def _ols_slope(xs, ys):
    """Least-squares slope of ys on xs (with intercept); NaN below 2 points or when all xs are equal."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return NAN
    mx, my = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    return math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.fsum((x - mx) ** 2 for x in xs)


def _half_level(sizes):
    """First level whose cumulative size reaches half the side's total. Summed left to right, as a
    running total is: at an exact tie the level found depends on the rounding of that order."""
    total = 0.0
    for q in sizes:
        total += q
    cum = 0.0
    for i, q in enumerate(sizes):
        cum += q
        if cum >= 0.5 * total:
            return i
    return len(sizes) - 1


def top_shape(bids, asks, mid, L, bands):
    """The top-level shape columns of a valid book (docs/features.md)."""
    f = {}
    for k in (3, 5, 10):
        f[f"imbalance_top{k}"] = _imb(math.fsum(q for _, q in bids[:k]), math.fsum(q for _, q in asks[:k])) \
            if k <= L else NAN
    cum_b = [math.fsum(q for _, q in bids[:i + 1]) for i in range(len(bids))]
    cum_a = [math.fsum(q for _, q in asks[:i + 1]) for i in range(len(asks))]
    sb = _ols_slope([(mid - p) / mid * 10000.0 for p, _ in bids], cum_b)
    sa = _ols_slope([(p - mid) / mid * 10000.0 for p, _ in asks], cum_a)
    f["bid_depth_slope"], f["ask_depth_slope"] = sb, sa
    f["depth_slope_asymmetry"] = NAN if math.isnan(sb) or math.isnan(sa) else _imb(sb, sa)
    f["bid_depth_decay_5"] = bids[4][1] / bids[0][1] if len(bids) >= 5 else NAN
    f["ask_depth_decay_5"] = asks[4][1] / asks[0][1] if len(asks) >= 5 else NAN
    f["bid_50pct_depth_level"] = _half_level([q for _, q in bids])
    f["ask_50pct_depth_level"] = _half_level([q for _, q in asks])
    inband = math.fsum(bands.values())
    f["book_convexity"] = bands[0] / inband if inband > 0 else NAN
    return f


def structural_row(bids, asks, opts, deep=None):
    """bids/asks: the top max_levels usable [(price, size)], best first; deep: (bids, asks) of the
    full book within the widest band, which the depth aggregates use (default: bids/asks).
    Returns {column: value}."""
    deep_b, deep_a = deep if deep is not None else (bids, asks)
    L = opts.max_levels
    bands = band_edges(opts)
    f = {}
    nb, na = len(bids), len(asks)
    f["best_bid"] = bids[0][0] if nb else NAN
    f["best_ask"] = asks[0][0] if na else NAN
    f["book_depth"] = min(nb, na)
    f["bid_levels"] = nb
    f["ask_levels"] = na
    crossed = bool(nb and na and bids[0][0] > asks[0][0])
    f["is_crossed"] = crossed
    f["is_locked"] = bool(nb and na and bids[0][0] == asks[0][0])
    for i in range(L):
        f[f"bid_price_L{i}"] = bids[i][0] if i < nb else NAN
        f[f"bid_size_L{i}"] = bids[i][1] if i < nb else NAN
        f[f"ask_price_L{i}"] = asks[i][0] if i < na else NAN
        f[f"ask_size_L{i}"] = asks[i][1] if i < na else NAN
    names = ["mid_price", "spread", "relative_spread", "microprice", "micro_minus_mid", "weighted_mid",
             "total_imbalance", "total_bid_volume", "total_ask_volume", "bid_slope", "ask_slope",
             "bid_concentration", "ask_concentration", "center_of_gravity", "cog_vs_mid", "smart_bid_depth",
             "smart_ask_depth", "smart_depth_imbalance", "vwap_bid_5", "vwap_ask_5", "vwap_spread",
             "book_pressure", "lambda_like"]
    names += [f"imbalance_L{i}" for i in range(L)] + TOP_SHAPE
    for prefix in ("bid_vol_band", "ask_vol_band", "imb_band"):
        names += [f"{prefix}_{lo:g}_{hi:g}bps" for lo, hi in bands]
    valid = bool(nb and na and not crossed)
    if not valid:
        f.update(dict.fromkeys(names, NAN))
        return f, False
    (pb, qb), (pa, qa) = bids[0], asks[0]
    mid = (pb + pa) / 2
    f["mid_price"] = mid
    f["spread"] = pa - pb
    f["relative_spread"] = (pa - pb) / mid
    f["microprice"] = (qb * pa + qa * pb) / (qb + qa)
    f["micro_minus_mid"] = (qb * (pa - mid) + qa * (pb - mid)) / (qb + qa)
    f["weighted_mid"] = (qb * pb + qa * pa) / (qb + qa)
    tb = math.fsum(q for _, q in deep_b)
    ta = math.fsum(q for _, q in deep_a)
    f["total_bid_volume"], f["total_ask_volume"] = tb, ta
    f["total_imbalance"] = _div(tb - ta, tb + ta)
    f["bid_slope"] = tb / (mid - deep_b[-1][0]) if deep_b and mid - deep_b[-1][0] > 0 else NAN
    f["ask_slope"] = ta / (deep_a[-1][0] - mid) if deep_a and deep_a[-1][0] - mid > 0 else NAN
    f["bid_concentration"] = math.fsum((q / tb) ** 2 for _, q in deep_b) if tb else NAN
    f["ask_concentration"] = math.fsum((q / ta) ** 2 for _, q in deep_a) if ta else NAN
    f["center_of_gravity"] = _div(math.fsum([p * q for p, q in deep_b + deep_a]), tb + ta)
    f["cog_vs_mid"] = _div(math.fsum([(p - mid) * q for p, q in deep_b + deep_a]), tb + ta) / mid
    sb = math.fsum(q / (i + 1) for i, (_, q) in enumerate(deep_b))
    sa = math.fsum(q / (i + 1) for i, (_, q) in enumerate(deep_a))
    f["smart_bid_depth"], f["smart_ask_depth"] = sb, sa
    f["smart_depth_imbalance"] = _div(sb - sa, sb + sa)
    b5, a5 = bids[:5], asks[:5]
    f["vwap_bid_5"] = math.fsum(p * q for p, q in b5) / math.fsum(q for _, q in b5)
    f["vwap_ask_5"] = math.fsum(p * q for p, q in a5) / math.fsum(q for _, q in a5)
    f["vwap_spread"] = (math.fsum((p - mid) * q for p, q in a5) / math.fsum(q for _, q in a5)
                        + math.fsum((mid - p) * q for p, q in b5) / math.fsum(q for _, q in b5))
    f["lambda_like"] = f["vwap_spread"] / (math.fsum(q for _, q in b5) + math.fsum(q for _, q in a5))
    dist_b = [(mid - p) / mid * 10000.0 for p, _ in deep_b]
    dist_a = [(p - mid) / mid * 10000.0 for p, _ in deep_a]
    wb = math.fsum(q / (1 + d) for (_, q), d in zip(deep_b, dist_b))
    wa = math.fsum(q / (1 + d) for (_, q), d in zip(deep_a, dist_a))
    f["book_pressure"] = _div(wb - wa, wb + wa)
    for i in range(L):
        f[f"imbalance_L{i}"] = _imb(bids[i][1] if i < nb else 0.0, asks[i][1] if i < na else 0.0)
    both = {}
    for j, (lo, hi) in enumerate(bands):
        vb = math.fsum(q for (_, q), d in zip(deep_b, dist_b) if lo <= d < hi)
        va = math.fsum(q for (_, q), d in zip(deep_a, dist_a) if lo <= d < hi)
        f[f"bid_vol_band_{lo:g}_{hi:g}bps"] = vb
        f[f"ask_vol_band_{lo:g}_{hi:g}bps"] = va
        f[f"imb_band_{lo:g}_{hi:g}bps"] = _imb(vb, va)
        both[j] = vb + va
    f.update(top_shape(bids, asks, mid, L, both))
    return f, True


def usable_matrix(px, sz):
    """Vectorised `usable_levels`: compact usable entries to the left, NaN after."""
    ok = np.isfinite(px) & np.isfinite(sz) & (px > 0) & (sz > 0)
    order = np.argsort(~ok, axis=1, kind="stable")
    p = np.take_along_axis(np.where(ok, px, np.nan), order, axis=1)
    q = np.take_along_axis(np.where(ok, sz, np.nan), order, axis=1)
    return p, q, ok.sum(axis=1)


def structural_numpy(bpx, bsz, apx, asz, opts, deep=None):
    """Vectorised structural features of all books: {column: array}, plus the valid mask.

    deep: (bid px, bid sz, ask px, ask sz) matrices of the full books within the widest band,
    best first, NaN-padded, which the depth aggregates use (default: the level matrices)."""
    L = opts.max_levels
    bp, bq, nb = usable_matrix(bpx[:, :L], bsz[:, :L])
    ap, aq, na = usable_matrix(apx[:, :L], asz[:, :L])
    if deep is None:
        dbp, dbq, dap, daq = bp, bq, ap, aq
    else:
        dbp, dbq, _ = usable_matrix(deep[0], deep[1])
        dap, daq, _ = usable_matrix(deep[2], deep[3])
    n = len(nb)
    f = {}
    with np.errstate(all="ignore"):
        f["best_bid"], f["best_ask"] = bp[:, 0], ap[:, 0]
        f["book_depth"], f["bid_levels"], f["ask_levels"] = np.minimum(nb, na), nb, na
        crossed = (nb > 0) & (na > 0) & (bp[:, 0] > ap[:, 0])
        f["is_crossed"] = crossed
        f["is_locked"] = (nb > 0) & (na > 0) & (bp[:, 0] == ap[:, 0])
        for i in range(L):
            f[f"bid_price_L{i}"], f[f"bid_size_L{i}"] = bp[:, i], bq[:, i]
            f[f"ask_price_L{i}"], f[f"ask_size_L{i}"] = ap[:, i], aq[:, i]
        valid = (nb > 0) & (na > 0) & ~crossed
        bq0, aq0 = np.nan_to_num(bq), np.nan_to_num(aq)
        mid = (bp[:, 0] + ap[:, 0]) / 2
        f["mid_price"] = mid
        f["spread"] = ap[:, 0] - bp[:, 0]
        f["relative_spread"] = f["spread"] / mid
        f["microprice"] = (bq[:, 0] * ap[:, 0] + aq[:, 0] * bp[:, 0]) / (bq[:, 0] + aq[:, 0])
        f["micro_minus_mid"] = (bq[:, 0] * (ap[:, 0] - mid) + aq[:, 0] * (bp[:, 0] - mid)) / (bq[:, 0] + aq[:, 0])
        f["weighted_mid"] = (bq[:, 0] * bp[:, 0] + aq[:, 0] * ap[:, 0]) / (bq[:, 0] + aq[:, 0])
        dbq0, daq0 = np.nan_to_num(dbq), np.nan_to_num(daq)
        tb, ta = dbq0.sum(axis=1), daq0.sum(axis=1)
        f["total_bid_volume"], f["total_ask_volume"] = tb, ta
        f["total_imbalance"] = (tb - ta) / (tb + ta)
        rows = np.arange(n)
        ndb, nda = np.isfinite(dbp).sum(axis=1), np.isfinite(dap).sum(axis=1)
        deep_b = np.where(ndb > 0, dbp[rows, np.maximum(ndb - 1, 0)], np.nan)
        deep_a = np.where(nda > 0, dap[rows, np.maximum(nda - 1, 0)], np.nan)
        f["bid_slope"] = np.where(mid - deep_b > 0, tb / (mid - deep_b), np.nan)
        f["ask_slope"] = np.where(deep_a - mid > 0, ta / (deep_a - mid), np.nan)
        f["bid_concentration"] = np.where(tb > 0, ((dbq0 / tb[:, None]) ** 2).sum(axis=1), np.nan)
        f["ask_concentration"] = np.where(ta > 0, ((daq0 / ta[:, None]) ** 2).sum(axis=1), np.nan)
        pq = np.nan_to_num(dbp * dbq).sum(axis=1) + np.nan_to_num(dap * daq).sum(axis=1)
        f["center_of_gravity"] = pq / (tb + ta)
        dev = (np.nan_to_num((dbp - mid[:, None]) * dbq).sum(axis=1)
               + np.nan_to_num((dap - mid[:, None]) * daq).sum(axis=1))
        f["cog_vs_mid"] = dev / (tb + ta) / mid
        sb = (dbq0 / np.arange(1, dbq0.shape[1] + 1)).sum(axis=1)
        sa = (daq0 / np.arange(1, daq0.shape[1] + 1)).sum(axis=1)
        f["smart_bid_depth"], f["smart_ask_depth"] = sb, sa
        f["smart_depth_imbalance"] = (sb - sa) / (sb + sa)
        q5b, q5a = bq0[:, :5].sum(axis=1), aq0[:, :5].sum(axis=1)
        f["vwap_bid_5"] = np.nan_to_num(bp[:, :5] * bq[:, :5]).sum(axis=1) / q5b
        f["vwap_ask_5"] = np.nan_to_num(ap[:, :5] * aq[:, :5]).sum(axis=1) / q5a
        f["vwap_spread"] = (np.nan_to_num((ap[:, :5] - mid[:, None]) * aq[:, :5]).sum(axis=1) / q5a
                            + np.nan_to_num((mid[:, None] - bp[:, :5]) * bq[:, :5]).sum(axis=1) / q5b)
        f["lambda_like"] = f["vwap_spread"] / (q5b + q5a)
        db = (mid[:, None] - dbp) / mid[:, None] * 10000.0
        da = (dap - mid[:, None]) / mid[:, None] * 10000.0
        wb = np.nan_to_num(dbq / (1 + db)).sum(axis=1)
        wa = np.nan_to_num(daq / (1 + da)).sum(axis=1)
        f["book_pressure"] = (wb - wa) / (wb + wa)
        for i in range(L):
            f[f"imbalance_L{i}"] = (bq0[:, i] - aq0[:, i]) / (bq0[:, i] + aq0[:, i])
        inband = near = np.zeros(n)
        for j, (lo, hi) in enumerate(band_edges(opts)):
            vb = np.where((db >= lo) & (db < hi), dbq0, 0.0).sum(axis=1)
            va = np.where((da >= lo) & (da < hi), daq0, 0.0).sum(axis=1)
            f[f"bid_vol_band_{lo:g}_{hi:g}bps"], f[f"ask_vol_band_{lo:g}_{hi:g}bps"] = vb, va
            f[f"imb_band_{lo:g}_{hi:g}bps"] = (vb - va) / (vb + va)
            if j == 0:
                near = vb + va  # the band nearest the mid
            inband = inband + vb + va
        f["book_convexity"] = np.where(inband > 0, near / inband, np.nan)
        for k in (3, 5, 10):
            sb, sa = bq0[:, :k].sum(axis=1), aq0[:, :k].sum(axis=1)
            f[f"imbalance_top{k}"] = (sb - sa) / (sb + sa) if k <= L else np.full(n, np.nan)
        slopes = {}
        for side, p, q, cnt, dist in (("bid", bp, bq, nb, mid[:, None] - bp), ("ask", ap, aq, na, ap - mid[:, None])):
            d = dist / mid[:, None] * 10000.0
            cum = np.where(np.isfinite(q), np.cumsum(np.nan_to_num(q), axis=1), np.nan)
            k = np.maximum(cnt, 1)
            dc = d - (np.nansum(d, axis=1) / k)[:, None]
            qc = cum - (np.nansum(cum, axis=1) / k)[:, None]
            spread_d = np.nanmax(np.where(np.isfinite(d), d, -np.inf), axis=1) > np.nanmin(np.where(np.isfinite(d), d, np.inf), axis=1)
            slopes[side] = np.where((cnt >= 2) & spread_d, np.nansum(dc * qc, axis=1) / np.nansum(dc * dc, axis=1), np.nan)
            f[f"{side}_depth_slope"] = slopes[side]
            f[f"{side}_depth_decay_5"] = q[:, 4] / q[:, 0] if q.shape[1] >= 5 else np.full(n, np.nan)
            # np.cumsum adds left to right, the running total the definition's tie rule needs
            running = np.cumsum(np.nan_to_num(q), axis=1)
            reached = running >= 0.5 * running[:, -1:]
            f[f"{side}_50pct_depth_level"] = np.where(cnt > 0, reached.argmax(axis=1), np.nan).astype(float)
        total = slopes["bid"] + slopes["ask"]
        f["depth_slope_asymmetry"] = np.where(total != 0, (slopes["bid"] - slopes["ask"]) / total, np.nan)
    keep = {"best_bid", "best_ask", "book_depth", "bid_levels", "ask_levels", "is_crossed", "is_locked"}
    for name, values in f.items():
        if name not in keep and not name.startswith(("bid_price_L", "bid_size_L", "ask_price_L", "ask_size_L")):
            f[name] = np.where(valid, values, np.nan)
    return f, valid
