"""Float64 oracle for rollout correction in verl's arithmetic (docs/rollout-correction.md).

Written from the formulas in include/trmask.h's rollout-correction section, with numpy only:
per-token values are computed in float64 and rounded to the compute dtype after every operation
(through float32 first for the 16-bit dtypes, as torch computes them), sums are float64 (row sums in
the kernel's lane order, `_row_sums`; batch totals in numpy's pairwise order, which agree with the
kernel's to rounding), thresholds
are rounded to the statistic's dtype. Inputs are padded ``[B, T]`` float64 grids with ``in_row``
marking the positions that belong to a row (a packed batch is padded by the caller).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["reference_correction", "round_to"]


def round_to(x, dtype: str) -> np.ndarray:
    """float64 values rounded to `dtype` (via float32 for the 16-bit ones), back as float64."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "float64":
        return x.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        single = x.astype(np.float32)
        if dtype == "float32":
            return single.astype(np.float64)
        if dtype == "float16":
            return single.astype(np.float16).astype(np.float64)
        import ml_dtypes
        return single.astype(ml_dtypes.bfloat16).astype(np.float64)


def _promote(a: str, b: str) -> str:
    if a == b:
        return a
    return "float64" if "float64" in (a, b) else "float32"


def _exp(x, dtype):
    with np.errstate(over="ignore"):
        return round_to(np.exp(x), dtype)


def _nanmax(values):
    """torch's max: NaN propagates; NaN for no values."""
    values = np.asarray(values, dtype=np.float64)
    return float("nan") if values.size == 0 or np.isnan(values).any() else float(values.max())


def _nanmin(values):
    values = np.asarray(values, dtype=np.float64)
    return float("nan") if values.size == 0 or np.isnan(values).any() else float(values.min())


def _mean(values):
    """NaN for no values (torch's mean of an empty tensor)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def _std_bessel(values):
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _clamped_std(c, m, mass):
    if not mass > 1:
        return 0.0
    mean = float((m * c).sum()) / (mass + 1e-8)
    variance = float((m * c * c).sum()) / (mass + 1e-8) - mean * mean
    return float("nan") if math.isnan(variance) else math.sqrt(max(variance, 0.0))


def _row_sums(x):
    """Row sums in the kernel's order, so rounded sums agree bit for bit: lane ``j`` adds the
    positions ``p = j mod 8`` left to right from 0, then ``((l0 + l4) + (l2 + l6)) + ((l1 + l5) +
    (l3 + l7))``."""
    x = np.asarray(x, dtype=np.float64)
    lanes = np.zeros((x.shape[0], 8))
    for j in range(min(8, x.shape[1])):
        lanes[:, j] = np.cumsum(np.concatenate([np.zeros((x.shape[0], 1)), x[:, j::8]], axis=1), axis=1)[:, -1]
    return ((lanes[:, 0] + lanes[:, 4]) + (lanes[:, 2] + lanes[:, 6])) + ((lanes[:, 1] + lanes[:, 5]) + (lanes[:, 3] + lanes[:, 7]))


def _clamp(x, lo, hi):
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(x), x, np.minimum(np.maximum(x, lo), hi))


def reference_correction(delta, mask, in_row, *, train=None, roll=None, rejections=(), weights=None,
                         mask_weights=False, compute="float32", mean_dtype="float32", weights_dtype="float32",
                         sum_dtype=None, clamp=20.0, normalize=False) -> dict:
    """Everything `trmask.rollout_correction` computes, in float64.

    Args:
        delta: ``[B, T]`` log-ratios as given (log-probs: ``train - roll``; rounded here).
        mask: ``[B, T]`` mask values (1.0 where absent). in_row: bool ``[B, T]``, positions inside a
            row and before its length.
        train, roll: the log-probs (for the perplexities), or None.
        sum_dtype: the dtype of masked sums (a float mask promotes them, as torch's ``values *
            mask``); default ``compute``.
        rejections: ``(level, estimator, lo, hi)`` tuples. weights: ``(level, mode, lo, hi)`` or
            None.
    Returns:
        ``{"mask_keep": bool [B, T], "keep_row": bool [B], "weights": float64 [B, T] or None,
        "statistics": dict}`` with the statistics keyed as `rollout_correction`'s dict.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and NaN terms propagate NaN on purpose
        return _correction(delta, mask, in_row, train, roll, rejections, weights, mask_weights, compute, mean_dtype,
                           weights_dtype, sum_dtype or compute, clamp, normalize)


def _correction(delta, mask, in_row, train, roll, rejections, weights, mask_weights, compute, mean_dtype, weights_dtype,
                sum_dtype, clamp, normalize):
    delta = round_to(delta, compute)
    mask = np.asarray(mask, dtype=np.float64)
    in_row = np.asarray(in_row, dtype=bool)
    m = np.where(in_row, mask if mask_weights else (mask != 0).astype(np.float64), 0.0)
    valid = m != 0
    rows = delta.shape[0]
    mass_rows = _row_sums(m)
    mass = float(mass_rows.sum())
    den = mass + 1e-8
    valid_rows = mass_rows > 0
    lr_sum = _row_sums(np.where(valid, m * np.where(valid, delta, 0.0), 0.0))
    c_clamp = float(round_to(clamp, compute))
    d = _clamp(delta, -c_clamp, c_clamp)
    e = _exp(d, compute)
    k = {"k1": -d, "k2": round_to(0.5 * round_to(d * d, compute), compute),
         "k3": round_to(round_to(e - 1, compute) - d, compute)}
    mean_dtype_stat = _promote(sum_dtype, mean_dtype)
    row_den = round_to(mass_rows + 1e-8, mean_dtype)

    keep_token = np.ones_like(valid)
    keep_row_seq = np.ones(rows, dtype=bool)
    option_stats = []
    for level, estimator, lo, hi in rejections:
        stat_dtype = {"seq_mean": mean_dtype_stat, "seq_sum": sum_dtype}.get(level, compute)
        lo_r, hi_r = float(round_to(lo, stat_dtype)), float(round_to(hi, stat_dtype))
        std_lo = lo_r if math.isfinite(lo) else 0.0
        values = np.where(valid, k[estimator], 0.0)
        with np.errstate(invalid="ignore"):
            if level == "token":
                token_pass = (k[estimator] >= lo_r) & (k[estimator] <= hi_r)
                keep_token &= token_pass | ~in_row
                rejected = valid & ~token_pass
                s = np.where(valid, k[estimator], np.nan)
                row_stat = (m * values).sum(axis=1) / (mass_rows + 1e-8)
                per_token = k[estimator]
            else:
                if level == "seq_sum":
                    row_stat = round_to(_row_sums(m * values), sum_dtype)
                elif level == "seq_mean":
                    row_stat = round_to(round_to(_row_sums(m * values), sum_dtype) / row_den, mean_dtype_stat)
                else:
                    row_stat = np.array([_nanmax(k[estimator][i][valid[i]]) if valid[i].any() else 0.0
                                         for i in range(rows)])
                row_pass = (row_stat >= lo_r) & (row_stat <= hi_r)
                has_valid = valid.any(axis=1)
                keep_row_seq &= row_pass | ~has_valid
                rejected = valid & ~row_pass[:, None]
                per_token = np.broadcast_to(row_stat[:, None], delta.shape)
            tokens = per_token[valid]
            weights_of_tokens = m[valid]
            c = _clamp(tokens, std_lo, hi_r)
            stat_valid = row_stat[valid_rows]
            sequence = level != "token" and len(stat_valid) > 0
            r = {"mean": float((weights_of_tokens * tokens).sum()) / den}
            if sequence:
                r["max"], r["min"] = _nanmax(stat_valid), _nanmin(stat_valid)
                r["fraction_high"] = float(np.mean(stat_valid > hi_r))
                r["fraction_low"] = float(np.mean(stat_valid < lo_r)) if math.isfinite(lo) else 0.0
            else:
                r["max"] = _nanmax(tokens) if len(tokens) else 0.0
                r["min"] = _nanmin(tokens) if len(tokens) else 0.0
                r["fraction_high"] = float((weights_of_tokens * (tokens > hi_r)).sum()) / den
                r["fraction_low"] = float((weights_of_tokens * (tokens < lo_r)).sum()) / den if math.isfinite(lo) else 0.0
            r["std"] = _clamped_std(c, weights_of_tokens, mass)
            if len(stat_valid):
                r.update(seq_mean=float(np.mean(stat_valid)), seq_std=_std_bessel(stat_valid), seq_max=_nanmax(stat_valid),
                         seq_min=_nanmin(stat_valid), seq_max_deviation=_nanmax(np.abs(stat_valid)),
                         seq_fraction_high=float(np.mean(stat_valid > hi_r)),
                         seq_fraction_low=float(np.mean(stat_valid < lo_r)) if math.isfinite(lo) else 0.0)
            else:
                r.update(seq_mean=0.0, seq_std=0.0, seq_max=0.0, seq_min=0.0, seq_max_deviation=0.0,
                         seq_fraction_high=0.0, seq_fraction_low=0.0)
            r["masked_fraction"] = float(m[rejected].sum()) / den
            r["seq_masked_fraction"] = (float(rejected.any(axis=1)[valid_rows].mean()) if valid_rows.any() else 0.0)
        option_stats.append(r)

    keep = keep_token & keep_row_seq[:, None] & in_row
    rejected_all = valid & ~keep
    keep_row = ~rejected_all.any(axis=1)
    statistics = {
        "n_rows": rows, "n_rows_valid": int(valid_rows.sum()), "n_tokens_valid": int(valid.sum()), "mask_sum": mass,
        "masked_fraction": float(m[rejected_all].sum()) / den,
        "seq_masked_fraction": float((~keep_row).mean()) if rows else 0.0,
        "weights": None, "rejections": option_stats,
    }
    weight_grid = None
    if weights is not None:
        weight_grid, statistics["weights"] = _weights(weights, delta, m, in_row, valid, lr_sum, mass_rows, mass,
                                                      valid_rows, compute, sum_dtype, weights_dtype, c_clamp, normalize)
    statistics["offpolicy"] = _offpolicy(delta, d, e, m, valid, lr_sum, mass_rows, den, compute, sum_dtype, c_clamp, train,
                                         roll)
    return {"mask_keep": keep, "keep_row": keep_row, "weights": weight_grid, "statistics": statistics}


def _weights(rule, delta, m, in_row, valid, lr_sum, mass_rows, mass, valid_rows, compute, sum_dtype, dtype, clamp,
             normalize):
    level, mode, lo, hi = rule
    den = mass + 1e-8
    lo_r, hi_r = float(round_to(lo, dtype)), float(round_to(hi, dtype))
    lower = float(round_to(lo if mode == "mask" else 1.0 / hi, dtype))
    with np.errstate(invalid="ignore", over="ignore"):
        if level == "token":
            base = _exp(_clamp(delta, -clamp, clamp), compute)
        else:
            base = np.broadcast_to(_exp(_clamp(round_to(lr_sum, sum_dtype), -clamp, clamp), sum_dtype)[:, None], delta.shape)
        raw = round_to(base * m, dtype)
        if mode == "mask":
            w = np.where((raw >= lo_r) & (raw <= hi_r), raw, 0.0)
        else:
            w = np.where(raw > hi_r, hi_r, raw)
        w = np.where(in_row, w, 0.0)
        mv, wv, rv = m[valid], w[valid], raw[valid]
        stats = {"mean": float((mv * wv).sum()) / den}
        sums = round_to(lr_sum, sum_dtype)
        if level == "sequence":
            log_high = float(round_to(float(np.log(np.float32(hi))), sum_dtype))
            log_low = float(round_to(float(np.log(np.float32(1.0 / hi if mode != "mask" else lo))), sum_dtype))
            stats["max"] = float(_exp(min(_nanmax(sums), clamp), sum_dtype)) if len(sums) else float("nan")
            stats["min"] = float(_exp(_nanmin(sums), sum_dtype)) if len(sums) else float("nan")
            stats["ratio_fraction_high"] = float(np.mean(sums > log_high)) if len(sums) else float("nan")
            stats["ratio_fraction_low"] = float(np.mean(sums < log_low)) if len(sums) else float("nan")
        else:
            stats["max"] = _nanmax(wv) if len(wv) else 0.0
            stats["min"] = _nanmin(wv) if len(wv) else 0.0
            stats["ratio_fraction_high"] = float((mv * (rv > hi_r)).sum()) / den
            stats["ratio_fraction_low"] = float((mv * (rv < lower)).sum()) / den
        c = _clamp(wv, 0.0, hi_r)
        stats["std"] = _clamped_std(c, mv, mass)
        c_mean = float((mv * c).sum()) / den
        with np.errstate(divide="ignore"):
            stats["eff_sample_size"] = float(np.float64(1.0) / (float((mv * c * c).sum()) / (c_mean + 1e-8) ** 2 / den))
        row_means = np.where(valid, m * w, 0.0).sum(axis=1) / (mass_rows + 1e-8)
        raw_means = np.where(valid, m * raw, 0.0).sum(axis=1) / (mass_rows + 1e-8)
        n = len(row_means)
        stats.update(seq_mean=_mean(row_means), seq_std=_std_bessel(row_means),
                     seq_max=_nanmax(row_means) if n else float("nan"), seq_min=_nanmin(row_means) if n else float("nan"),
                     seq_max_deviation=_nanmax(np.abs(row_means - 1)) if n else float("nan"),
                     seq_fraction_high=float(np.mean(raw_means > hi_r)) if n else float("nan"),
                     seq_fraction_low=float(np.mean(raw_means < lower)) if n else float("nan"))
        stats["oob_ratio"] = float((mv * ((rv < lo_r) | (rv > hi_r))).sum()) / den if mode == "mask" else float("nan")
        if level == "token":
            stats["norm_sum"], stats["norm_count"] = float((mv * wv).sum()), mass
            mean = stats["norm_sum"] / den
        else:
            stats["norm_sum"], stats["norm_count"] = float(row_means[valid_rows].sum()), float(valid_rows.sum())
            mean = stats["norm_sum"] / max(stats["norm_count"], 1e-8)
        stats["norm_factor"] = float(round_to(mean, dtype)) if mean > 1e-8 else 1.0
        if normalize and stats["norm_factor"] != 1.0:
            w = np.where(in_row, round_to(w / stats["norm_factor"], dtype), 0.0)
    return w, stats


def _offpolicy(delta, d, e, m, valid, lr_sum, mass_rows, den, compute, sum_dtype, clamp, train, roll):
    with np.errstate(over="ignore", invalid="ignore"):
        unclamped = np.where(d == delta, e, _exp(delta, compute))
        k3_kl = round_to(round_to(unclamped - delta, compute) - 1, compute)
        chi2 = round_to(e * e, compute)
        sums = _clamp(round_to(lr_sum, sum_dtype), -clamp, clamp)
        seq = _exp(round_to(2 * sums, sum_dtype), sum_dtype)
    mv = m[valid]
    o = {"kl": -float(lr_sum.sum()) / den, "k3_kl": float((mv * k3_kl[valid]).sum()) / den,
         "chi2_token": float((mv * chi2[valid]).sum()) / den - 1,
         "chi2_seq": _mean(seq) - 1}
    for key in ("training_ppl", "training_log_ppl", "rollout_ppl", "rollout_log_ppl", "log_ppl_diff", "log_ppl_abs_diff",
                "log_ppl_diff_max", "log_ppl_diff_min", "ppl_ratio"):
        o[key] = float("nan")
    if train is None:
        return o
    with np.errstate(over="ignore", invalid="ignore"):
        mean_train = np.where(valid, m * np.asarray(train, np.float64), 0.0).sum(axis=1) / (mass_rows + 1e-8)
        mean_roll = np.where(valid, m * np.asarray(roll, np.float64), 0.0).sum(axis=1) / (mass_rows + 1e-8)
        diff = mean_roll - mean_train
        o.update(training_ppl=_mean(np.exp(-mean_train)), training_log_ppl=_mean(-mean_train),
                 rollout_ppl=_mean(np.exp(-mean_roll)), rollout_log_ppl=_mean(-mean_roll),
                 log_ppl_diff=_mean(diff), log_ppl_abs_diff=_mean(np.abs(diff)),
                 log_ppl_diff_max=_nanmax(diff), log_ppl_diff_min=_nanmin(diff), ppl_ratio=_mean(np.exp(diff)))
    return o
