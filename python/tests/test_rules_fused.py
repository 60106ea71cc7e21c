"""The 2026 token rules inside the mask's scan (docs/rules-2026.md, "Speed"): the scan decides most
chunks by a cheap sufficient test and the others on the exact values, so its decisions must equal
the decisions taken on the exact values that `token_values` gives, bit for bit, in every layout.

No tolerance here: both sides compare the same float32 values with the same thresholds. Rows are
long (hundreds of tokens), so the scan's hot loop runs, and thresholds sit inside the values'
range, so that some chunks pass the cheap test and some do not; tokens near 0 log-prob (where the
binary KL is largest for a given delta), spikes, positive log-probs and NaN are mixed in.
"""

from __future__ import annotations

import numpy as np
import pytest

import trmask

BINARY = ("bdiff", "btv", "bkl", "bkl_tr", "bkl_sym")
LAYOUTS = ("contiguous", "strided", "transposed", "packed")


def _batch(seed: int, rows: int = 7, cols: int = 1000):
    rng = np.random.default_rng(seed)
    lr = -rng.exponential(0.4, size=(rows, cols))
    lr[:, ::5] = -rng.exponential(1e-4, size=lr[:, ::5].shape)  # confident tokens
    lt = lr + rng.normal(0, 0.01, size=(rows, cols))
    spikes = rng.random((rows, cols)) < 0.01
    lt[spikes] += rng.normal(0, 1.0, int(spikes.sum()))
    lt[rng.random((rows, cols)) < 0.002] = 0.25  # positive log-probs: outside every shortcut
    lt[rng.random((rows, cols)) < 0.001] = np.nan
    mask = rng.random((rows, cols)) < 0.95
    mask[2, 300:] = False  # a short row
    mask[4] = False  # an empty row
    return lt.astype(np.float32), lr.astype(np.float32), mask, rng


def _laid_out(layout: str, *arrays):
    """The arrays in `layout` (same values), and the keyword arguments of the call."""
    if layout == "contiguous":
        return arrays, {}
    if layout == "strided":  # every other column of a wider array
        return tuple(np.repeat(a, 2, axis=-1)[..., ::2] for a in arrays), {}
    if layout == "transposed":  # column-major: the row stride is 1
        return tuple(np.asfortranarray(a) for a in arrays), {}
    rows = arrays[0].shape[0]
    offsets = np.arange(rows + 1, dtype=np.int64) * arrays[0].shape[1]
    return tuple(a.reshape(-1) for a in arrays), {"offsets": offsets}


def _grid(layout: str, keep_token, shape):
    return np.asarray(keep_token).reshape(shape)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("estimator", BINARY)
def test_token_criterion_equals_exact_values(layout, estimator):
    lt, lr, mask, _ = _batch(1)
    values = np.asarray(trmask.token_values(lt, lr, estimator)).astype(np.float64)
    finite = values[np.isfinite(values)]
    phi = float(np.quantile(np.abs(finite), 0.97))
    lo = -phi if estimator == "bdiff" else -np.inf
    criterion = trmask.Criterion("token", estimator, lo=lo, hi=phi)
    (glt, glr, gmask), kwargs = _laid_out(layout, lt, lr, mask)
    result = trmask.trust_region_mask(glt, glr, gmask, criteria=[criterion], threads=1, **kwargs)
    with np.errstate(invalid="ignore"):
        passes = (values >= lo) & (values <= phi)  # NaN fails
    assert (_grid(layout, result.keep_token, lt.shape) == (mask & passes)).all()
    assert result.rejected[0] == int((mask & ~passes).sum())
    assert 0 < (mask & ~passes).sum() < mask.sum() // 10  # both outcomes occur


def _advantage_expected(lt, lr, adv, statistic, low, high, zero):
    """DPPO's rule (semantics §4.8) on the exact float32 statistic: keep, upper, lower masks."""
    with np.errstate(invalid="ignore"):
        if statistic == "ratio":
            stat = (lt - lr).astype(np.float64)  # the float32 delta
            up, down = stat > np.log(high), stat < np.log(low)
        elif statistic == "bdiff":
            stat = np.asarray(trmask.token_values(lt, lr, "bdiff")).astype(np.float64)
            up, down = stat > high, stat < -low
        else:
            stat = np.asarray(trmask.token_values(lt, lr, "bkl")).astype(np.float64)
            up, down = (lt > lr) & (stat > high), (lt < lr) & (stat > low)
        positive = adv > 0
        lower_applies = ~positive if zero == "lower" else adv < 0
    undefined = np.isnan(stat) | np.isnan(adv)
    upper = positive & up & ~undefined
    lower = lower_applies & down & ~undefined
    return ~(upper | lower | undefined), upper, lower


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("statistic, low, high", [("bdiff", 0.03, 0.02), ("bkl", 1e-3, 5e-4), ("ratio", 0.99, 1.02)])
@pytest.mark.parametrize("per_row", [True, False])
@pytest.mark.parametrize("zero", ["lower", "keep"])
def test_advantage_rule_equals_exact_values(layout, statistic, low, high, per_row, zero):
    lt, lr, mask, rng = _batch(2)
    adv = rng.normal(size=lt.shape[:1] if per_row else lt.shape)
    adv[rng.random(adv.shape) < 0.05] = 0.0
    if not per_row:
        adv[rng.random(adv.shape) < 0.003] = np.nan
        adv = adv.astype(np.float32)
    full = np.broadcast_to(adv[:, None] if per_row else adv, lt.shape).astype(np.float64)
    keep, upper, lower = _advantage_expected(lt, lr, full, statistic, low, high, zero)
    if per_row or layout != "packed":
        (glt, glr, gmask), kwargs = _laid_out(layout, lt, lr, mask)
        gadv = adv if per_row else _laid_out(layout, adv)[0][0]
    else:
        (glt, glr, gmask, gadv), kwargs = _laid_out(layout, lt, lr, mask, adv)
    result = trmask.advantage_mask(glt, glr, gmask, gadv, statistic=statistic, low=low, high=high, zero_advantage=zero,
                                   threads=1, **kwargs)
    assert (_grid(layout, result.keep_token, lt.shape) == (mask & keep)).all()
    assert (result.masked_upper, result.masked_lower) == (int((mask & upper).sum()), int((mask & lower).sum()))
    assert result.masked_positive == int((mask & upper & (full > 0)).sum())
    assert result.masked_negative == int((mask & lower & (full < 0)).sum())
    assert 0 < int((mask & ~keep).sum()) < mask.sum() // 2  # both outcomes occur


def test_float64_and_bfloat16_inputs_take_the_exact_path_with_the_same_decisions():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    lt, lr, mask, _ = _batch(3)
    for dtype in (np.float64, ml_dtypes.bfloat16):
        a, b = lt.astype(dtype), lr.astype(dtype)
        values = np.asarray(trmask.token_values(a, b, "bkl_sym")).astype(np.float64)
        phi = float(np.quantile(values[np.isfinite(values)], 0.97))
        result = trmask.trust_region_mask(a, b, mask, criteria=f"token:bkl_sym<={phi!r}", threads=1)
        with np.errstate(invalid="ignore"):
            assert (np.asarray(result.keep_token) == (mask & (values <= phi))).all()


@pytest.mark.parametrize("nan_policy", ["reject", "skip", "zero"])
def test_nan_policies_in_the_fused_scan(nan_policy):
    lt, lr, mask, _ = _batch(4)
    values = np.asarray(trmask.token_values(lt, lr, "bkl_sym")).astype(np.float64)
    nan_delta = np.isnan(lt - lr)
    if nan_policy == "zero":
        values[nan_delta] = 0.0  # delta := 0: p_t = p_r
    counted = mask & ~(nan_delta & (nan_policy == "skip"))
    phi = float(np.quantile(values[np.isfinite(values)], 0.97))
    result = trmask.trust_region_mask(lt, lr, mask, criteria=f"token:bkl_sym<={phi!r}", nan_policy=nan_policy, threads=1)
    with np.errstate(invalid="ignore"):
        passes = values <= phi
    assert (np.asarray(result.keep_token) == (counted & passes & result.keep_row[:, None])).all()
    assert result.rejected[0] == int((counted & ~passes).sum())
