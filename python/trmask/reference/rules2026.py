"""Reference for the 2026 rules (semantics §4.7-§4.10, §9 additions), written from the spec alone.

The binary estimators use Python's `decimal` at 60 digits (exp, ln of the exact float inputs), so
they are exact to far below any tolerance and share no formula with the kernels, which use
float64 with cancellation-free rearrangements. Everything else is plain float64 numpy.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np

BINARY_ESTIMATORS = ("bdiff", "btv", "bkl", "bkl_tr", "bkl_sym")
_PRECISION = 60


def _dec(x: float) -> Decimal:
    return Decimal(float(x))  # exact: every float is a finite decimal


def _kl_bernoulli(a: Decimal, b: Decimal) -> Decimal:
    """KL_B(a || b) = a ln(a/b) + (1-a) ln((1-a)/(1-b)); 0 ln 0 = 0; mass against none = inf."""
    total = Decimal(0)
    for x, y in ((a, b), (1 - a, 1 - b)):
        if x == 0:
            continue
        if y == 0:
            return Decimal("Infinity")
        total += x * (x / y).ln()
    return max(total, Decimal(0))  # exact arithmetic is >= 0; guard the last digit


def _clamped_probability(log_p: float, eps: float) -> Decimal:
    """exp(min(max(l, ln eps), ln(1 - eps))), the clamp taken in log space (semantics §4.7)."""
    p = _dec(log_p).exp() if log_p != -math.inf else Decimal(0)
    e = _dec(eps)
    return min(max(p, e), 1 - e)


def binary_value(lt: float, lr: float, estimator: str, eps: float = 1e-6) -> float:
    """One binary estimator at one token, as a float64 (semantics §4.7)."""
    if math.isnan(lt) or math.isnan(lr):
        return math.nan
    if lt == lr:
        return 0.0  # also lt = lr = -inf
    with localcontext() as context:
        context.prec = _PRECISION
        if estimator in ("bdiff", "btv"):
            pt = Decimal(0) if lt == -math.inf else (Decimal("Infinity") if lt == math.inf else _dec(lt).exp())
            pr = Decimal(0) if lr == -math.inf else (Decimal("Infinity") if lr == math.inf else _dec(lr).exp())
            d = pt - pr
            return float(d if estimator == "bdiff" else abs(d))
        a_r, a_t = _clamped_probability(lr, eps), _clamped_probability(lt, eps)
        forward, backward = _kl_bernoulli(a_r, a_t), _kl_bernoulli(a_t, a_r)
        value = {"bkl": forward, "bkl_tr": backward, "bkl_sym": max(forward, backward)}[estimator]
        return float(value)


def binary_values(lt, lr, estimator: str, eps: float = 1e-6) -> np.ndarray:
    """`binary_value` elementwise over arrays of the same shape (float64)."""
    lt, lr = np.asarray(lt, dtype=np.float64), np.asarray(lr, dtype=np.float64)
    out = np.empty(lt.shape, dtype=np.float64)
    for index in np.ndindex(lt.shape):
        out[index] = binary_value(float(lt[index]), float(lr[index]), estimator, eps)
    return out


def float32_delta(lt, lr) -> np.ndarray:
    """delta = lt - lr rounded once to float32, as float64 (semantics §1, the batch's rounding rule)."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(lt, np.float32) - np.asarray(lr, np.float32)).astype(np.float64)


def geo_log_mean(lt, lr, mask) -> np.ndarray:
    """g_i = mean_t delta over valid tokens (float64), 0 for empty rows (semantics §4.9)."""
    delta = float32_delta(lt, lr)
    valid = np.asarray(mask) != 0
    counts = valid.sum(axis=1)
    with np.errstate(invalid="ignore"):
        sums = np.where(valid, delta, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def _log_bound(x: float) -> float:
    return -math.inf if x <= 0 else math.log(x)


def geo_keep(log_mean, lo: float, hi: float) -> np.ndarray:
    """lo <= exp(g) <= hi decided in log space; NaN fails."""
    g = np.asarray(log_mean, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (g >= _log_bound(lo)) & (g <= _log_bound(hi))


def icepop(lt, lr, lo: float, hi: float):
    """IcePop in log space (semantics §4.9): keep iff ln lo <= delta <= ln hi; weight rho or exactly 0."""
    delta = float32_delta(lt, lr)
    with np.errstate(invalid="ignore"):
        keep = (delta >= _log_bound(lo)) & (delta <= _log_bound(hi))
    weight = np.zeros_like(delta)
    weight[keep] = np.exp(delta[keep])
    return keep, weight


def advantage_keep(lt, lr, adv, kind: str, low: float, high: float, zero_advantage: str = "lower",
                   eps: float = 1e-6):
    """The advantage-conditioned token mask of semantics §4.8: (keep, masked_upper, masked_lower).

    kind: "bdiff" (upper D > high, lower D < -low), "bkl" (upper lt > lr and bkl > high, lower
    lt < lr and bkl > low) or "ratio" (upper delta > ln high, lower delta < ln low). A NaN
    statistic or advantage masks the token (counted on neither side)."""
    lt, lr = np.asarray(lt, np.float64), np.asarray(lr, np.float64)
    adv = np.broadcast_to(np.asarray(adv, np.float64), lt.shape)
    delta = float32_delta(lt, lr)
    if kind == "bdiff":
        stat = binary_values(lt, lr, "bdiff", eps)
        with np.errstate(invalid="ignore"):
            upper, lower = stat > high, stat < -low
    elif kind == "bkl":
        stat = binary_values(lt, lr, "bkl", eps)
        with np.errstate(invalid="ignore"):
            upper, lower = (lt > lr) & (stat > high), (lt < lr) & (stat > low)
    elif kind == "ratio":
        stat = delta
        with np.errstate(invalid="ignore"):
            upper, lower = stat > _log_bound(high), stat < _log_bound(low)
    else:
        raise ValueError(kind)
    lower_side = (adv < 0) | ((adv == 0) & (zero_advantage == "lower"))
    masked_upper = (adv > 0) & upper
    masked_lower = lower_side & lower
    bad = np.isnan(stat) | np.isnan(adv)
    keep = ~(masked_upper | masked_lower | bad)
    return keep, masked_upper & ~bad, masked_lower & ~bad


def opsm_keep(lt, lr, mask, row_adv, limit: float) -> np.ndarray:
    """Off-policy sequence mask (semantics §4.8): keep iff A_i >= 0 or mean_t(-delta) <= limit."""
    mean_k1 = -geo_log_mean(lt, lr, mask)
    with np.errstate(invalid="ignore"):
        return (np.asarray(row_adv, np.float64) >= 0) | (mean_k1 <= limit)


def group_advantages(group, reward, keep, normalize_std: bool = True, eps: float = 1e-6, singleton: str = "zero"):
    """GRPO advantages over voting rows (semantics §4.10): (adv float64 [B], n_rows_nonfinite_reward)."""
    group = np.asarray(group, np.int64)
    reward = np.asarray(reward, np.float64)
    keep = np.asarray(keep) != 0
    finite = np.isfinite(reward)
    votes = keep & finite
    adv = np.zeros(len(reward))
    for g in np.unique(group):
        rows = np.flatnonzero((group == g) & votes)
        n = len(rows)
        if n == 0:
            continue
        r = reward[rows]
        if n == 1:
            if singleton == "raw":
                adv[rows] = r / (1 + eps) if normalize_std else r
            continue
        mu = math.fsum(r) / n
        if normalize_std:
            sigma = math.sqrt(math.fsum((r - mu) ** 2) / (n - 1))
            adv[rows] = (r - mu) / (sigma + eps)
        else:
            adv[rows] = r - mu
    return adv, int((keep & ~finite).sum())


def drift_metrics(lt, lr, mask) -> dict:
    """delta_mean, delta_abs_mean, k3 clamped at 10 per token and per row (semantics §9 additions)."""
    delta = float32_delta(lt, lr)
    valid = np.asarray(mask) != 0
    k3 = np.minimum(np.expm1(delta) - delta, 10.0)
    counts = valid.sum(axis=1)
    nonempty = counts > 0
    row_k3 = np.where(valid, k3, 0.0).sum(axis=1)
    n = valid.sum()
    return {
        "n_tokens": float(n),
        "delta_mean": float(delta[valid].sum() / n) if n else 0.0,
        "delta_abs_mean": float(np.abs(delta[valid]).sum() / n) if n else 0.0,
        "k3_clamped_token_mean": float(k3[valid].sum() / n) if n else 0.0,
        "k3_clamped_row_mean": float((row_k3[nonempty] / counts[nonempty]).mean()) if nonempty.any() else 0.0,
    }
