"""Importance weights (SPEC §5): `trmask.importance_weights` and `trust_region_mask(weights=...)`
against the float64 oracle `trmask.reference.reference_weights`, over random shapes (B = 0,
T = 0 included), layouts (contiguous, transposed, reversed, sliced, broadcast roll, packed),
NaN/±inf, masks, lengths, NaN policies, clamps, levels, modes, bounds and ``keep_row``.

Tolerances (one reason each; ``raw`` is the reference weight before the mode, ``ref`` after it):

- Weights are float32. Token level: ``w_t = exp(delta_t)`` per token, within SPEC §2's
  ``TOKEN_RTOL = 4e-6`` relative of float64 (plus the smallest subnormal, ``TOKEN_ATOL``, for
  weights that underflow float32).
- Sequence and geometric levels: ``exp`` of a float64 sum of float32 deltas. SPEC §3 bounds the
  row sum's error by ``2e-6 * sum_t |delta_t|`` (``SUM_RTOL``; divided by the row's count for the
  geometric mean), so the weight's relative error is at most ``expm1(that)`` plus the float32
  rounding of the result (``2**-24 ~ 6e-8``). Computed per row.
- Values beyond float32's range are ``+inf`` (conftest.float32_range); a raw weight within its
  tolerance of the float32 maximum may be either.
- Modes: the library applies the bounds to the float32 weight, with ``lo``/``hi`` rounded inward
  to float32 (SPEC §5: a written weight always satisfies the bounds). So a weight the reference
  caps at a bound is written as that bound rounded inward, and where the raw weight is within its
  tolerance of ``lo`` or ``hi`` (or between a bound and its inward rounding) either decision is
  right: the raw weight, the bound (truncate/clip), or 0 (mask).
- Exact: 0 on every token that is not counted (masked, past ``lengths``, skipped NaN, outside every
  packed row), on rows whose ``keep_row`` is False and, under ``reject``, on rows with a NaN; the
  written weights satisfy the (float64) bounds; NaN is never written; bits do not depend on the
  thread count; ``trust_region_mask(..., weights=rule).weights`` equals ``importance_weights`` with
  that call's ``keep_row``, bit for bit.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import trmask
from conftest import SUM_RTOL, TOKEN_ATOL, TOKEN_RTOL, float32_range
from test_parity import CRITERIA_POOL, LAYOUTS, _make_case, _relayout
from trmask import TrmaskError, WeightRule, _ffi
from trmask._api import _options, _PreparedBatch
from trmask.reference import log_ratio as reference_log_ratio
from trmask.reference import reference_weights
from trmask.reference._batch import prepare_batch
from trmask.reference.estimators import estimator_values

LEVELS = ("token", "sequence", "geometric")
MODES = ("truncate", "clip", "mask")
FLT_MAX = float(np.finfo(np.float32).max)
F32_ROUND = 2.0**-24  # relative rounding of a float32 result (half an ulp)
# Bounds near 1 (where weights live), not representable in float32 (0.2, 1.1, ...), huge (1e39 is
# beyond float32: rounded inward it is FLT_MAX), and random ones.
BOUND_VALUES = (1e-3, 0.2, 0.5, 0.8, 0.9, 0.99, 1.0, 1.01, 1.1, 1.2, 1.5, 2.0, 3.0, 10.0, 1e30, 1e39)


# ---------------------------------------------------------------------------------------- helpers


def reference_batch(ref_inputs, nan_policy):
    """The oracle's view of the batch (counted tokens, rows, NaN rows)."""
    get = ref_inputs.get
    return prepare_batch(get("logp_train"), get("logp_roll"), get("log_ratio"), get("values"), get("mask"),
                         get("lengths"), get("offsets"), nan_policy)


def inward(lo: float, hi: float) -> tuple[float, float]:
    """``lo`` rounded up and ``hi`` rounded down to float32 (hi beyond float32 becomes FLT_MAX)."""
    with np.errstate(over="ignore"):
        lo32, hi32 = np.float32(lo), np.float32(hi)
    if float(lo32) < lo:
        lo32 = np.nextafter(lo32, np.float32(np.inf))
    if float(hi32) > hi:
        hi32 = np.nextafter(hi32, np.float32(0))
    return float(lo32), float(hi32)


def relative_tolerance(batch, level: str, clamp) -> np.ndarray:
    """Per-token relative tolerance of the raw (unbounded) weight, flat (see the module docstring)."""
    if level == "token":
        return np.full(batch.x.size, TOKEN_RTOL)
    delta = estimator_values("delta", batch.x, clamp)
    magnitude = np.where(batch.counted & np.isfinite(delta), np.abs(delta), 0.0)
    rel = np.zeros(batch.x.size)
    for i, (s, e) in enumerate(zip(batch.starts, batch.stops)):
        total = magnitude[s:e].sum()
        if level == "geometric":
            total /= max(int(batch.count[i]), 1)
        rel[s:e] = math.expm1(SUM_RTOL * total) + F32_ROUND
    return rel


def active_tokens(batch, keep_row) -> np.ndarray:
    """Flat bool: the tokens that may carry a nonzero weight (counted, in a kept row without NaN
    under reject)."""
    keep = np.ones(batch.n_rows, dtype=bool) if keep_row is None else np.asarray(keep_row).astype(bool)
    keep = keep & ~batch.nan_row
    active = np.zeros(batch.x.size, dtype=bool)
    for i in np.flatnonzero(keep):
        s, e = batch.starts[i], batch.stops[i]
        active[s:e] = batch.counted[s:e]
    return active


def nan_weight_tokens(batch, level, clamp) -> np.ndarray:
    """Flat bool: tokens of rows whose sequence/geometric weight is NaN (a row sum of +inf and
    -inf), written as 0 whatever the mode (SPEC §5)."""
    out = np.zeros(batch.x.size, dtype=bool)
    if level == "token":
        return out
    delta = estimator_values("delta", batch.x, clamp)
    for s, e in zip(batch.starts, batch.stops):
        d = delta[s:e][batch.counted[s:e]]
        if (d == np.inf).any() and (d == -np.inf).any():
            out[s:e] = batch.counted[s:e]
    return out


def to_numpy(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return x.numpy()  # a torch tensor


def check_weights(got, ref_inputs, *, level, mode, lo=None, hi=None, keep_row=None, nan_policy="reject", clamp=None,
                  what=""):
    """Asserts the library's weights against the reference under the module docstring's rules."""
    got = to_numpy(got)
    assert got.dtype == np.float32, f"{what}: dtype {got.dtype}"
    common = dict(ref_inputs, level=level, keep_row=keep_row, nan_policy=nan_policy, clamp=clamp)
    ref = reference_weights(**common, mode=mode, lo=lo, hi=hi)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    ref = ref.reshape(-1)
    raw = reference_weights(**common, mode="clip").reshape(-1)  # no bounds: the weight itself
    batch = reference_batch(ref_inputs, nan_policy)
    g = got.astype(np.float64).reshape(-1)
    active = active_tokens(batch, keep_row)

    assert not np.isnan(g).any(), f"{what}: NaN weight at {np.flatnonzero(np.isnan(g))[:8]}"
    stray = np.flatnonzero(~active & (g != 0))
    assert stray.size == 0, (f"{what}: nonzero weight on {stray.size} non-counted/rejected tokens, "
                             f"e.g. {stray[:8]}: {g[stray[:8]]}")

    lo_f = 0.0 if lo is None else float(lo)
    hi_f = math.inf if hi is None else float(hi)
    lo32, hi32 = inward(lo_f, hi_f)
    with np.errstate(invalid="ignore"):
        if mode == "truncate":
            inside = g <= hi_f
        elif mode == "clip" and lo32 > hi32:
            # No float32 lies in [lo, hi] (lo == hi not a float32, or both in one float32 gap):
            # the promise cannot hold; one of the two inward roundings is written
            # (see test_clip_band_without_a_float32).
            inside = (g == lo32) | (g == hi32)
        elif mode == "clip":
            inside = (lo_f <= g) & (g <= hi_f)
        else:
            inside = (g == 0) | ((lo_f <= g) & (g <= hi_f))
    outside = np.flatnonzero(active & ~inside & ~nan_weight_tokens(batch, level, clamp))
    assert outside.size == 0, f"{what}: weights outside [{lo_f}, {hi_f}] ({mode}): {g[outside[:8]]}"

    rel = relative_tolerance(batch, level, clamp)
    with np.errstate(invalid="ignore", over="ignore"):
        tol = np.where(np.isfinite(raw), rel * raw, 0.0) + TOKEN_ATOL

        def close(expected):
            e32 = float32_range(expected)
            return (g == e32) | (np.abs(g - e32) <= tol)

        overflow = (g == np.inf) & np.isfinite(raw) & (raw * (1.0 + rel) >= FLT_MAX)
        raw_ok = close(raw) | overflow
        ok = close(ref) | (overflow & (ref == raw))
        # A weight the reference sets to a bound is the bound rounded inward to float32.
        if mode in ("truncate", "clip"):
            ok |= (ref == hi_f) & (g == hi32)
        if mode == "clip":
            ok |= (ref == lo_f) & (g == lo32)
        # Borderline: the raw weight is within its tolerance of a bound, or between a bound and its
        # inward rounding: either decision is right.
        border = np.zeros_like(ok)
        if math.isfinite(hi_f):
            border |= (np.abs(raw - hi_f) <= tol) | (np.abs(raw - hi32) <= tol) | ((raw >= hi32) & (raw <= hi_f))
        if mode != "truncate" and lo_f > 0:
            border |= (np.abs(raw - lo_f) <= tol) | (np.abs(raw - lo32) <= tol) | ((raw >= lo_f) & (raw <= lo32))
        either = raw_ok.copy()
        if mode in ("truncate", "clip"):
            either |= g == hi32
        if mode == "clip":
            either |= g == lo32
        if mode == "mask":
            either |= g == 0
        ok |= border & either & active
    bad = np.flatnonzero(~ok)
    if bad.size:
        lines = [f"{what}: {bad.size} of {g.size} weights differ ({level}/{mode}, lo={lo}, hi={hi}, "
                 f"policy={nan_policy}, clamp={clamp})"]
        for k in bad[:8]:
            lines.append(f"  at flat {k}: got {g[k]!r}, reference {ref[k]!r}, raw {raw[k]!r}, tol {tol[k]:.3g}, "
                         f"|diff|/raw {abs(g[k] - ref[k]) / raw[k] if raw[k] else math.nan:.3g}")
        raise AssertionError("\n".join(lines))


@st.composite
def weight_rules(draw):
    """(level, mode, lo, hi) with valid bounds: truncate takes hi only; clip/mask lo and/or hi,
    lo <= hi, hi > 0."""
    level = draw(st.sampled_from(LEVELS))
    mode = draw(st.sampled_from(MODES))
    value = st.one_of(st.sampled_from(BOUND_VALUES), st.floats(1e-3, 20.0))
    if mode == "truncate":
        return level, mode, None, draw(value)
    lo = draw(st.one_of(st.none(), st.just(0.0), value))
    hi = draw(st.one_of(st.none(), value))
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    if lo is not None and hi is not None:
        lo32, hi32 = inward(lo, hi)
        assume(lo32 <= hi32)  # bounds with no float32 between them are refused (test below)
    return level, mode, lo, hi


def log_ratio_inputs(inputs, ref_inputs, layout, key="log_ratio"):
    """The same case as a ``log_ratio=`` input (or ``values=``, holding the same numbers), in the
    same layout."""
    delta = reference_log_ratio(ref_inputs["logp_train"], ref_inputs["logp_roll"]).astype(np.float32)
    got = {k: v for k, v in inputs.items() if k not in ("logp_train", "logp_roll")}
    ref = {k: v for k, v in ref_inputs.items() if k not in ("logp_train", "logp_roll")}
    ref[key] = delta
    got[key] = delta if layout in ("packed", "broadcast_roll") else _relayout(delta, layout)
    return got, ref


def random_keep(seed, rows, kind):
    if kind == "none":
        return None
    keep = np.random.default_rng(seed ^ 0x5EED).random(rows) < 0.7
    return keep.astype(np.uint8) * 3 if kind == "uint8" else keep


# ---------------------------------------------------------------------------------------- parity


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 10), cols=st.integers(0, 60),
       layout=st.sampled_from(LAYOUTS), mask_kind=st.sampled_from(("none", "bool", "uint8")),
       use_lengths=st.booleans(), special=st.booleans(), policy=st.sampled_from(("reject", "skip", "zero")),
       clamp=st.sampled_from((None, 0.5, 20.0)), rule=weight_rules(),
       keep_kind=st.sampled_from(("none", "bool", "uint8")), source=st.sampled_from(("logp", "log_ratio")))
def test_weights_match_reference(seed, rows, cols, layout, mask_kind, use_lengths, special, policy, clamp, rule,
                                 keep_kind, source):
    inputs, ref_inputs = _make_case(seed, rows, cols, layout, mask_kind, use_lengths, special)
    if source == "log_ratio":
        inputs, ref_inputs = log_ratio_inputs(inputs, ref_inputs, layout)
    level, mode, lo, hi = rule
    keep = random_keep(seed, rows, keep_kind)
    got = trmask.importance_weights(**inputs, level=level, mode=mode, lo=lo, hi=hi, keep_row=keep,
                                    nan_policy=policy, clamp=clamp)
    check_weights(got, ref_inputs, level=level, mode=mode, lo=lo, hi=hi, keep_row=keep, nan_policy=policy,
                  clamp=clamp, what=f"importance_weights ({layout}, {source})")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 10), cols=st.integers(0, 60),
       layout=st.sampled_from(LAYOUTS), mask_kind=st.sampled_from(("none", "bool")), use_lengths=st.booleans(),
       special=st.booleans(), policy=st.sampled_from(("reject", "skip", "zero")),
       clamp=st.sampled_from((None, 0.5, 20.0)), rule=weight_rules(), reject_empty=st.booleans(),
       as_dict=st.booleans(), threads=st.sampled_from((0, 1, 3)),
       picks=st.lists(st.integers(0, len(CRITERIA_POOL) - 1), min_size=1, max_size=3, unique=True))
def test_mask_weights_equal_importance_weights(seed, rows, cols, layout, mask_kind, use_lengths, special, policy,
                                               clamp, rule, reject_empty, as_dict, threads, picks):
    """The weights of the mask call are `importance_weights` with that call's keep_row, bit for bit."""
    inputs, ref_inputs = _make_case(seed, rows, cols, layout, mask_kind, use_lengths, special)
    level, mode, lo, hi = rule
    weights = dict(level=level, mode=mode, lo=lo, hi=hi) if as_dict else WeightRule(level, mode, lo, hi)
    options = dict(nan_policy=policy, clamp=clamp, threads=threads)
    result = trmask.trust_region_mask(**inputs, criteria=[CRITERIA_POOL[i] for i in picks], weights=weights,
                                      reject_empty=reject_empty, **options)
    alone = trmask.importance_weights(**inputs, level=level, mode=mode, lo=lo, hi=hi, keep_row=result.keep_row,
                                      **options)
    assert result.weights.dtype == np.float32 and result.weights.shape == alone.shape
    assert result.weights.tobytes() == alone.tobytes()
    check_weights(result.weights, ref_inputs, level=level, mode=mode, lo=lo, hi=hi, keep_row=result.keep_row,
                  nan_policy=policy, clamp=clamp, what=f"trust_region_mask weights ({layout})")


# ---------------------------------------------------------------------------------------- explicit cases


def _grid():
    """4 rows x 5 tokens with known deltas (log_ratio input)."""
    delta = np.array([[0.1, -0.2, 0.3, 0.0, 0.5],
                      [0.2, np.nan, 0.1, 0.1, 0.1],
                      [-np.inf, 0.1, 0.2, 0.3, 0.4],
                      [np.inf, 0.0, 0.0, 0.0, -0.1]], dtype=np.float32)
    mask = np.array([[1, 1, 1, 0, 1],
                     [1, 1, 1, 1, 0],
                     [1, 1, 1, 1, 1],
                     [1, 1, 1, 1, 1]], dtype=bool)
    return delta, mask


@pytest.mark.parametrize("level", LEVELS)
def test_zero_outside_counted_tokens_and_rejected_rows(level):
    delta, mask = _grid()
    lengths = np.array([5, 5, 4, 5])
    keep = np.array([True, True, True, False])
    got = trmask.importance_weights(log_ratio=delta, mask=mask, lengths=lengths, level=level, mode="clip",
                                    keep_row=keep)
    assert got[0, 3] == 0  # masked
    assert got[2, 4] == 0  # past lengths
    assert (got[1] == 0).all()  # NaN under reject: the whole row, fail closed
    assert (got[3] == 0).all()  # keep_row False
    assert (got[0, [0, 1, 2, 4]] > 0).all()
    check_weights(got, dict(log_ratio=delta, mask=mask, lengths=lengths), level=level, mode="clip", keep_row=keep,
                  what="explicit")
    if level == "token":
        np.testing.assert_allclose(got[0], np.exp(delta[0].astype(np.float64)) * mask[0], rtol=TOKEN_RTOL)
        assert got[2, 0] == 0 and got[2, 1] > 0  # exp(-inf) = 0 on one token only
    else:
        assert (got[2, :4] == 0).all()  # exp(-inf) for the whole row


@pytest.mark.parametrize("level", LEVELS)
def test_nan_policies(level):
    delta, mask = _grid()
    row = delta[1:2]
    reject = trmask.importance_weights(log_ratio=row, level=level, mode="clip", nan_policy="reject")
    skip = trmask.importance_weights(log_ratio=row, level=level, mode="clip", nan_policy="skip")
    zero = trmask.importance_weights(log_ratio=row, level=level, mode="clip", nan_policy="zero")
    assert (reject == 0).all()
    assert skip[0, 1] == 0 and (skip[0, [0, 2, 3, 4]] > 0).all()
    assert zero[0, 1] > 0
    total = float(np.sum(row[0, [0, 2, 3, 4]].astype(np.float64)))
    if level == "token":
        assert zero[0, 1] == 1.0
    elif level == "sequence":
        np.testing.assert_allclose([skip[0, 0], zero[0, 0]], math.exp(total), rtol=1e-6)
    else:
        np.testing.assert_allclose([skip[0, 0], zero[0, 0]], [math.exp(total / 4), math.exp(total / 5)], rtol=1e-6)
    for policy, got in (("reject", reject), ("skip", skip), ("zero", zero)):
        check_weights(got, dict(log_ratio=row), level=level, mode="clip", nan_policy=policy, what=policy)


def test_inf_and_minus_inf_in_one_row_is_zero_not_nan():
    delta = np.array([[np.inf, -np.inf, 0.1]], dtype=np.float32)
    for level in ("sequence", "geometric"):
        got = trmask.importance_weights(log_ratio=delta, level=level, mode="clip")
        np.testing.assert_array_equal(got, 0)
    token = trmask.importance_weights(log_ratio=delta, level="token", mode="clip")
    np.testing.assert_allclose(token, [[np.inf, 0, math.exp(np.float32(0.1))]], rtol=TOKEN_RTOL)
    capped = trmask.importance_weights(log_ratio=delta, level="token", mode="truncate", hi=2.0)
    np.testing.assert_allclose(capped, [[2.0, 0, math.exp(np.float32(0.1))]], rtol=TOKEN_RTOL)
    assert capped[0, 0] == 2.0


def _packed_with_gaps():
    rng = np.random.default_rng(3)
    lt = rng.normal(-1, 0.3, 20).astype(np.float32)
    lr = rng.normal(-1, 0.3, 20).astype(np.float32)
    offsets = np.array([3, 7, 7, 12, 16], dtype=np.int32)  # tokens 0..2 and 16..19 belong to no row
    return lt, lr, offsets


@pytest.mark.parametrize("level", LEVELS)
def test_packed_rows_beside_gaps(level):
    lt, lr, offsets = _packed_with_gaps()
    got = trmask.importance_weights(lt, lr, offsets=offsets, level=level, mode="clip", lo=0.5)
    assert got.shape == (20,)
    assert (got[3:16] >= 0.5).all()
    inside = slice(3, 16)
    expected = reference_weights(lt, lr, offsets=offsets, level=level, mode="clip", lo=0.5)
    np.testing.assert_allclose(got[inside], expected[inside], rtol=1e-5)
    result = trmask.trust_region_mask(lt, lr, offsets=offsets, criteria="max:k2<=1",
                                      weights=WeightRule(level, "clip", 0.5))
    assert result.weights[inside].tobytes() == got[inside].tobytes()


@pytest.mark.parametrize("call", ["importance_weights", "trust_region_mask"])
@pytest.mark.parametrize("level", LEVELS)
def test_packed_gaps_are_zero(level, call):
    """Tokens outside every packed row (before offsets[0], after offsets[B]) get weight 0, whatever
    the output buffer held (`out=`, or memory np.empty hands back)."""
    lt, lr, offsets = _packed_with_gaps()
    if call == "importance_weights":
        out = np.full(20, 7.0, np.float32)
        got = trmask.importance_weights(lt, lr, offsets=offsets, level=level, mode="clip", lo=0.5, out=out)
        assert got is out
    else:
        np.full(20, 7.0, np.float32)  # leaves 7s in memory the allocator hands out next (usually)
        got = trmask.trust_region_mask(lt, lr, offsets=offsets, criteria="max:k2<=1",
                                       weights=WeightRule(level, "clip", 0.5)).weights
    assert (got[:3] == 0).all() and (got[16:] == 0).all(), got
    # B = 0 with tokens: every token is outside every row.
    out = np.full(4, 7.0, np.float32)
    trmask.importance_weights(np.zeros(4, np.float32), np.zeros(4, np.float32), offsets=np.array([0]), mode="clip",
                              out=out)
    np.testing.assert_array_equal(out, 0)
    check_weights(got, dict(logp_train=lt, logp_roll=lr, offsets=offsets), level=level, mode="clip", lo=0.5,
                  what="packed gaps")


def test_modes_on_known_values():
    delta = np.log(np.array([[0.25, 0.5, 1.0, 2.0, 4.0]])).astype(np.float32)
    w = np.exp(delta.astype(np.float64))
    got = trmask.importance_weights(log_ratio=delta, mode="truncate", hi=1.5)
    np.testing.assert_allclose(got, np.minimum(w, 1.5), rtol=TOKEN_RTOL)
    assert got[0, 4] == 1.5
    got = trmask.importance_weights(log_ratio=delta, mode="clip", lo=0.4, hi=3.0)
    np.testing.assert_allclose(got, np.clip(w, 0.4, 3.0), rtol=TOKEN_RTOL)
    assert got[0, 0] == np.float32(0.4) and got[0, 4] == 3.0
    got = trmask.importance_weights(log_ratio=delta, mode="mask", lo=0.4, hi=3.0)
    np.testing.assert_allclose(got, np.where((w >= 0.4) & (w <= 3.0), w, 0), rtol=TOKEN_RTOL)
    # delta = 0 gives exactly 1: inclusive bounds at 1 keep it.
    one = np.zeros((1, 3), np.float32)
    assert (trmask.importance_weights(log_ratio=one, mode="mask", lo=1.0, hi=1.0) == 1).all()
    # hi = 0.1 is not a float32: rounded down, so the written weight is <= 0.1.
    capped = trmask.importance_weights(log_ratio=delta, mode="truncate", hi=0.1)
    assert (capped <= 0.1).all() and capped[0, 0] == np.nextafter(np.float32(0.1), np.float32(0))
    # lo = 0.3 rounded up: the written weight is >= 0.3.
    floored = trmask.importance_weights(log_ratio=delta, mode="clip", lo=0.3)
    assert (floored >= 0.3).all() and floored[0, 0] == inward(0.3, math.inf)[0] > 0.3


def test_clip_band_without_a_float32():
    """lo == hi = 0.1 (not a float32): no float32 satisfies lo <= w <= hi, so no written weight
    could keep the promise that it satisfies the bounds: the rule is refused, in Python and by the
    library (TRM_E_BAD_WEIGHT_RULE through ctypes)."""
    delta = np.array([[-3.0, 0.0, 3.0]], np.float32)
    for bound in (0.1, 0.001):
        lo32, hi32 = inward(bound, bound)
        assert lo32 > hi32
        for mode in ("clip", "mask"):
            with pytest.raises(trmask.TrmaskError, match="no float32 value between them"):
                trmask.importance_weights(log_ratio=delta, mode=mode, lo=bound, hi=bound)
        batch = _PreparedBatch(None, None, delta, None, None, None, None)
        out = np.full(3, 7.0, np.float32)
        status = _ffi.lib.trm_importance_weights(
            ctypes.byref(batch.struct), ctypes.byref(_options("reject", None, False, 0)),
            _ffi.WeightRule(0, _ffi.WEIGHT_MODES["clip"], bound, bound), _ffi.View(*_ffi.ABSENT_VIEW),
            _ffi.Out(out.ctypes.data, 0, 1))
        assert _ffi.lib.trm_status_name(status) == b"TRM_E_BAD_WEIGHT_RULE" and (out == 7).all()
    got = trmask.importance_weights(log_ratio=delta, mode="clip", lo=0.5, hi=0.5)  # a float32: exact
    assert (got == 0.5).all()


def test_empty_batches():
    for shape in ((0, 5), (3, 0), (0, 0)):
        z = np.zeros(shape, np.float32)
        got = trmask.importance_weights(z, z, level="sequence", mode="clip")
        assert got.shape == shape and got.dtype == np.float32
    got = trmask.importance_weights(np.zeros(0, np.float32), np.zeros(0, np.float32), offsets=np.array([0]),
                                    mode="clip")
    assert got.shape == (0,)
    # Empty rows among others (lengths 0) get no weight and do not disturb their neighbours.
    lt = np.full((3, 4), -1.0, np.float32)
    lr = np.full((3, 4), -1.5, np.float32)
    got = trmask.importance_weights(lt, lr, lengths=np.array([0, 4, 2]), level="sequence", mode="clip")
    np.testing.assert_array_equal(got[0], 0)
    np.testing.assert_allclose(got[1], math.exp(2.0), rtol=1e-6)
    assert (got[1] == got[1, 0]).all()  # the row weight on each counted token
    np.testing.assert_allclose(got[2], [math.exp(1.0)] * 2 + [0, 0], rtol=1e-6)


# ---------------------------------------------------------------------------------------- determinism


def test_thread_count_does_not_change_bits():
    rng = np.random.default_rng(11)
    rows, cols = 64, 3000
    lr = -rng.exponential(1.0, (rows, cols)).astype(np.float32)
    lt = (lr + rng.normal(0, 0.02, (rows, cols))).astype(np.float32)
    lt[rng.random((rows, cols)) < 1e-4] = np.nan
    mask = rng.random((rows, cols)) < 0.95
    lengths = rng.integers(0, cols + 1, rows)
    keep = rng.random(rows) < 0.8
    criteria = [CRITERIA_POOL[1], CRITERIA_POOL[5], CRITERIA_POOL[20]]
    for level in LEVELS:
        for mode, lo, hi in (("truncate", None, 2.0), ("clip", 0.8, 1.2), ("mask", 0.9, 1.1)):
            for policy in ("reject", "skip"):
                options = dict(level=level, mode=mode, lo=lo, hi=hi, nan_policy=policy, lengths=lengths)
                runs = [trmask.importance_weights(lt, lr, mask, keep_row=keep, threads=t, **options).tobytes()
                        for t in (1, 2, 3, 8, 0)]
                assert all(r == runs[0] for r in runs), (level, mode, policy)
                rule = WeightRule(level, mode, lo, hi)
                masks = [trmask.trust_region_mask(lt, lr, mask, lengths=lengths, criteria=criteria, weights=rule,
                                                  nan_policy=policy, threads=t).weights.tobytes()
                         for t in (1, 2, 3, 8)]
                assert all(m == masks[0] for m in masks), (level, mode, policy)
    got = trmask.importance_weights(lt, lr, mask, keep_row=keep, lengths=lengths, level="geometric", mode="clip",
                                    lo=0.8, hi=1.2, threads=8)
    check_weights(got, dict(logp_train=lt, logp_roll=lr, mask=mask, lengths=lengths), level="geometric",
                  mode="clip", lo=0.8, hi=1.2, keep_row=keep, what="threads=8")


# ---------------------------------------------------------------------------------------- dtypes and torch


def _low_precision_case(seed=5, rows=6, cols=40):
    rng = np.random.default_rng(seed)
    lr = -rng.exponential(1.0, (rows, cols))
    lt = lr + rng.normal(0, 0.05, (rows, cols))
    mask = rng.random((rows, cols)) < 0.85
    return lt, lr, mask


def _numpy_dtype(name):
    if name == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return ml_dtypes.bfloat16
    return np.dtype(name)


@pytest.mark.parametrize("train_dtype,roll_dtype", [("float16", "float16"), ("bfloat16", "bfloat16"),
                                                     ("float64", "float64"), ("bfloat16", "float32"),
                                                     ("float32", "float64")])
@pytest.mark.parametrize("level", LEVELS)
def test_low_and_high_precision_inputs(train_dtype, roll_dtype, level):
    """The reference gets the very same values (widened exactly), so only the weight's own error
    remains."""
    lt, lr, mask = _low_precision_case()
    lt = lt.astype(_numpy_dtype(train_dtype))
    lr = lr.astype(_numpy_dtype(roll_dtype))
    for mode, lo, hi in (("truncate", None, 1.05), ("clip", 0.97, 1.03), ("mask", 0.95, 1.05)):
        got = trmask.importance_weights(lt, lr, mask, level=level, mode=mode, lo=lo, hi=hi)
        check_weights(got, dict(logp_train=lt, logp_roll=lr, mask=mask), level=level, mode=mode, lo=lo, hi=hi,
                      what=f"{train_dtype}/{roll_dtype}")
    delta = (lt.astype(np.float64) - lr.astype(np.float64)).astype(lt.dtype)
    got = trmask.importance_weights(log_ratio=delta, mask=mask, level=level, mode="clip")
    check_weights(got, dict(log_ratio=delta, mask=mask), level=level, mode="clip", what=f"log_ratio {train_dtype}")


@pytest.mark.parametrize("level", LEVELS)
def test_torch_in_torch_out(level):
    torch = pytest.importorskip("torch")
    lt, lr, mask = _low_precision_case(rows=5, cols=33)
    lt32, lr32 = lt.astype(np.float32), lr.astype(np.float32)
    expected = trmask.importance_weights(lt32, lr32, mask, level=level, mode="clip", lo=0.9, hi=1.1)
    got = trmask.importance_weights(torch.from_numpy(lt32), torch.from_numpy(lr32), torch.from_numpy(mask),
                                    level=level, mode="clip", lo=0.9, hi=1.1,
                                    keep_row=torch.ones(5, dtype=torch.bool))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and tuple(got.shape) == (5, 33)
    assert got.numpy().tobytes() == expected.tobytes()
    # Transposed tensor views, and the mask call.
    tt = torch.from_numpy(np.ascontiguousarray(lt32.T)).T
    result = trmask.trust_region_mask(tt, torch.from_numpy(lr32), torch.from_numpy(mask),
                                      weights=WeightRule(level, "clip", 0.9, 1.1))
    assert isinstance(result.weights, torch.Tensor)
    alone = trmask.importance_weights(lt32, lr32, mask, level=level, mode="clip", lo=0.9, hi=1.1,
                                      keep_row=result.keep_row.numpy())
    assert result.weights.numpy().tobytes() == alone.tobytes()
    # bf16 and f16 tensors (bf16 through torch, which numpy lacks without ml_dtypes).
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        a, b = torch.from_numpy(lt).to(dtype), torch.from_numpy(lr).to(dtype)
        got = trmask.importance_weights(a, b, torch.from_numpy(mask), level=level, mode="truncate", hi=1.05)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
        ref_lt, ref_lr = a.to(torch.float64).numpy(), b.to(torch.float64).numpy()
        if dtype != torch.float64:
            # Widened exactly to float32 and subtracted there, like the reference's low-precision rule.
            delta = (a.to(torch.float32) - b.to(torch.float32)).numpy()
            check_weights(got, dict(log_ratio=delta, mask=mask), level=level, mode="truncate", hi=1.05,
                          what=str(dtype))
        else:
            check_weights(got, dict(logp_train=ref_lt, logp_roll=ref_lr, mask=mask), level=level, mode="truncate",
                          hi=1.05, what=str(dtype))


# ---------------------------------------------------------------------------------------- out=


def test_out_parameter():
    lt, lr, mask = _low_precision_case(rows=4, cols=9)
    lt, lr = lt.astype(np.float32), lr.astype(np.float32)
    expected = trmask.importance_weights(lt, lr, mask, level="sequence", mode="clip", lo=0.5, hi=2.0)
    out = np.full((4, 9), 7.0, np.float32)
    got = trmask.importance_weights(lt, lr, mask, level="sequence", mode="clip", lo=0.5, hi=2.0, out=out)
    assert got is out and out.tobytes() == expected.tobytes()
    # A strided view: only its elements are written.
    wide = np.full((4, 19), 7.0, np.float32)
    view = wide[:, 1::2]
    trmask.importance_weights(lt, lr, mask, level="sequence", mode="clip", lo=0.5, hi=2.0, out=view)
    np.testing.assert_array_equal(view, expected)
    assert (wide[:, ::2] == 7.0).all()
    # Transposed (column-major) output.
    column_major = np.full((9, 4), 7.0, np.float32).T
    trmask.importance_weights(lt, lr, mask, level="sequence", mode="clip", lo=0.5, hi=2.0, out=column_major)
    np.testing.assert_array_equal(column_major, expected)


@pytest.mark.parametrize("make_out,fragment", [
    (lambda lt: np.zeros((4, 8), np.float32), "`out` has shape (4, 8); expected (4, 9)"),
    (lambda lt: np.zeros((4, 9), np.float64), "`out` has dtype float64; expected float32"),
    (lambda lt: np.broadcast_to(np.zeros(9, np.float32), (4, 9)), "read-only"),
    (lambda lt: lt, "shares memory with the input `logp_train`"),
])
def test_out_errors(make_out, fragment):
    lt, lr, mask = _low_precision_case(rows=4, cols=9)
    lt, lr = lt.astype(np.float32), lr.astype(np.float32)
    with pytest.raises(TrmaskError) as info:
        trmask.importance_weights(lt, lr, mask, mode="clip", out=make_out(lt))
    assert fragment in str(info.value)


# ---------------------------------------------------------------------------------------- errors


_LT = np.zeros((3, 4), np.float32)
_LR = np.full((3, 4), -0.5, np.float32)


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(mode="truncate"), "takes the cap as `hi`"),
    (dict(mode="truncate", lo=0.5, hi=2.0), "takes the cap as `hi`"),
    (dict(mode="clip", lo=2.0, hi=1.0), "expected 0 <= lo <= hi"),
    (dict(mode="mask", lo=2.0, hi=1.0), "expected 0 <= lo <= hi"),
    (dict(mode="clip", hi=0.0), "hi > 0"),
    (dict(mode="truncate", hi=0.0), "hi > 0"),
    (dict(mode="clip", hi=-1.0), "hi > 0"),
    (dict(mode="clip", lo=-0.5), "0 <= lo"),
    (dict(mode="clip", hi=math.nan), "no NaN"),
    (dict(mode="mask", lo=math.nan), "no NaN"),
    (dict(level="tokens", mode="clip"), "weight `level` is 'tokens'; expected one of token, sequence, geometric"),
    (dict(mode="cap", hi=1.0), "weight `mode` is 'cap'; expected one of truncate, clip, mask"),
    (dict(mode="clip", keep_row=np.ones(4, bool)), "`keep_row` has shape (4,); expected (3,)"),
    (dict(mode="clip", keep_row=np.ones((3, 1), bool)), "`keep_row` has shape (3, 1); expected (3,)"),
    (dict(mode="clip", keep_row=np.ones(3, np.float32)), "`keep_row` has dtype float32; expected bool or uint8"),
    (dict(mode="clip", keep_row=np.ones(3, np.int64)), "`keep_row` has dtype int64"),
    (dict(mode="clip", nan_policy="drop"), "`nan_policy` is 'drop'"),
    (dict(mode="clip", clamp=0.0), "`clamp` is 0.0"),
])
def test_importance_weights_errors(kwargs, fragment):
    with pytest.raises(TrmaskError) as info:
        trmask.importance_weights(_LT, _LR, **kwargs)
    assert fragment in str(info.value), str(info.value)


def test_importance_weights_needs_a_log_ratio():
    with pytest.raises(TrmaskError, match="needs logp_train with logp_roll, or log_ratio="):
        trmask.importance_weights(mode="clip")
    with pytest.raises(TrmaskError, match="exactly one source"):
        trmask.importance_weights(_LT, _LR, log_ratio=_LT, mode="clip")


@pytest.mark.parametrize("weights,fragment", [
    (dict(level="sequence", cap=2.0), "unknown keys ['cap']"),
    ("sequence", "expected a trmask.WeightRule or a dict"),
    (dict(level="sequence", mode="truncate"), "takes the cap as `hi`"),
    (dict(mode="clip", lo=3.0, hi=2.0), "expected 0 <= lo <= hi"),
])
def test_mask_weights_argument_errors(weights, fragment):
    with pytest.raises(TrmaskError) as info:
        trmask.trust_region_mask(_LT, _LR, weights=weights)
    assert fragment in str(info.value), str(info.value)


def test_weights_refuse_values_input():
    with pytest.raises(TrmaskError, match="importance weights need log-probs or a log-ratio, not values="):
        trmask.trust_region_mask(values=np.abs(_LR), criteria="max:value<=0.1", weights=WeightRule(hi=2.0))


def test_weight_rule_errors():
    with pytest.raises(TrmaskError, match="takes the cap as `hi`"):
        WeightRule("token", "truncate")
    with pytest.raises(TrmaskError, match="weight `level`"):
        WeightRule("seq", "clip")
    assert WeightRule("sequence", "clip", lo=0.5).c_fields()[3] == math.inf
