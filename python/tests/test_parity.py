"""Hypothesis parity of the library with the float64 reference (SPEC §2-§4, §10) over random
shapes (B = 0, T = 0, T = 1 included), layouts and strides (transposed, reversed, sliced,
zero-stride broadcast, packed), NaN/±inf, empty rows, masks and lengths. Tolerances: conftest.py.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trmask
from conftest import EXP_ESTIMATORS, SUM_RTOL, TOKEN_RTOL, random_deltas, report, token_tolerance
from trmask.reference import estimator_values, reference_mask
from trmask.reference._batch import prepare_batch

CRITERIA_POOL = [
    trmask.Criterion("max", "k2", hi=0.1),
    trmask.Criterion("mean", "k3", hi=0.002),
    trmask.Criterion("max", "abs", hi=0.3),
    trmask.Criterion("min", "delta", lo=math.log(0.1)),
    trmask.Criterion("sum", "delta", lo=-math.log(2), hi=math.log(2)),
    trmask.Criterion("mean", "delta", lo=-0.01, hi=0.01),
    trmask.Criterion("mean", "tv", hi=0.05),
    trmask.Criterion("max", "ratio", hi=2.0),
    trmask.Criterion("min", "k3", hi=1e-4),
    trmask.Criterion("min", "tv", hi=0.01),
    trmask.Criterion("min", "k2"),
    trmask.Criterion("max", "k1", hi=1.0),
    trmask.Criterion("min", "ratio", lo=0.5),
    trmask.Criterion("sum", "k2", hi=0.5),
    trmask.Criterion("sum", "abs", hi=2.0),
    trmask.Criterion("mean", "ratio", lo=0.9, hi=1.1),
    trmask.Criterion("sum", "k1"),
    trmask.Criterion("ser", "tv", hi=0.05),
    trmask.Criterion("ln_trm", "tv", hi=0.05, kl_max=0.01),
    trmask.Criterion("ln_trm", "tv", hi=0.03, kl_max=0.001, eps=0.05),
    trmask.Criterion("token", "ratio", lo=0.5, hi=2.0),
    trmask.Criterion("token", "k2", hi=0.02),
]


def reference_criteria(criteria):
    """The criteria in the reference's input form."""
    return [dict(agg=c.agg, est=c.estimator, lo=c.lo, hi=c.hi, kl_max=c.kl_max, eps=c.eps) if c.agg == "ln_trm"
            else (c.agg, c.estimator, c.lo, c.hi) for c in criteria]


LAYOUTS = ("contiguous", "transposed", "reversed", "sliced", "broadcast_roll", "packed")


def _make_case(seed, rows, cols, layout, mask_kind, use_lengths, special):
    """Inputs in the requested layout, plus the same data as plain padded arrays for the
    reference."""
    rng = np.random.default_rng(seed)
    lr = -rng.exponential(1.0, size=(rows, cols)).astype(np.float32)
    if layout == "broadcast_roll":
        lr = np.broadcast_to(lr[:1] if rows else lr, (rows, cols))
    d = random_deltas(rng, (rows, cols), special)
    with np.errstate(invalid="ignore"):
        lt = (lr + d).astype(np.float32)
    lt[np.isnan(d)] = np.nan
    mask = None
    if mask_kind != "none":
        mask = rng.random((rows, cols)) < 0.8
        mask[rng.random(rows) < 0.2] = False  # some all-masked rows
        if mask_kind == "uint8":
            mask = mask.astype(np.uint8) * rng.integers(1, 255, size=(rows, cols), dtype=np.uint8)
    lengths = rng.integers(0, cols + 1, size=rows).astype(np.int64) if use_lengths else None
    reference = dict(logp_train=lt, logp_roll=np.ascontiguousarray(lr), mask=mask, lengths=lengths)
    if layout == "packed":
        # Rows of random lengths cut from one stream (the padded grid's row-major order).
        cuts = np.sort(rng.integers(0, rows * cols + 1, size=max(rows - 1, 0)))
        offsets = np.concatenate([[0], cuts, [rows * cols]] if rows else [[0]]).astype(np.int64)
        spans = np.diff(offsets)
        if use_lengths:
            lengths = np.minimum(lengths, spans).astype(np.int64)
        inputs = dict(logp_train=lt.reshape(-1), logp_roll=np.ascontiguousarray(lr).reshape(-1),
                      mask=None if mask is None else mask.reshape(-1), lengths=lengths, offsets=offsets)
        return inputs, dict(inputs)
    inputs = dict(logp_train=_relayout(lt, layout), logp_roll=_relayout(lr, layout) if layout != "broadcast_roll" else lr,
                  mask=None if mask is None else _relayout(mask, layout), lengths=lengths)
    reference["lengths"] = lengths
    return inputs, reference


def _relayout(a, layout):
    """The same values in another memory layout (a view, never a copy of what the view shows)."""
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if layout == "sliced":
        wide = np.zeros((a.shape[0], 2 * a.shape[1] + 1), dtype=a.dtype)
        wide[:, 1::2] = a
        return wide[:, 1::2]
    return np.ascontiguousarray(a)


def _term_sums(ref_inputs, estimator, counted, clamp, policy):
    """sum |term| per row for the SPEC §3 tolerance."""
    batch = prepare_batch(ref_inputs["logp_train"], ref_inputs["logp_roll"], None, None, ref_inputs.get("mask"),
                          ref_inputs.get("lengths"), ref_inputs.get("offsets"), policy)
    terms = np.abs(estimator_values(estimator, batch.x, clamp=clamp))
    terms = np.where(batch.counted & np.isfinite(terms), terms, 0.0)
    return np.array([terms[s:e].sum() for s, e in zip(batch.starts, batch.stops)]), batch


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 12), cols=st.integers(0, 70),
       layout=st.sampled_from(LAYOUTS), mask_kind=st.sampled_from(("none", "bool", "uint8")),
       use_lengths=st.booleans(), special=st.booleans(), policy=st.sampled_from(("reject", "skip", "zero")),
       clamp=st.sampled_from((None, 0.5, 20.0)), reject_empty=st.booleans(),
       picks=st.lists(st.integers(0, len(CRITERIA_POOL) - 1), min_size=1, max_size=4, unique=True))
def test_mask_matches_reference(seed, rows, cols, layout, mask_kind, use_lengths, special, policy, clamp,
                                reject_empty, picks):
    inputs, ref_inputs = _make_case(seed, rows, cols, layout, mask_kind, use_lengths, special)
    criteria = [CRITERIA_POOL[i] for i in picks]
    options = dict(nan_policy=policy, clamp=clamp)
    got = trmask.trust_region_mask(**inputs, criteria=criteria, reject_empty=reject_empty, **options)
    ref = reference_mask(**ref_inputs, criteria=reference_criteria(criteria), reject_empty=reject_empty, **options)
    np.testing.assert_array_equal(got.count, ref["count"])
    np.testing.assert_array_equal(got.nonfinite, ref["nonfinite"])

    borderline = np.zeros(rows, dtype=bool)
    row_criteria = [c for c in criteria if c.is_row]
    for column, c in enumerate(row_criteria):
        stat, expected = np.asarray(got.row_stats[column], np.float64), ref["row_stat"][column]
        term_sums, batch = _term_sums(ref_inputs, c.estimator, None, clamp, policy)
        if c.agg == "ln_trm":
            # Non-negative terms w_t tv_t: the SPEC §3 bound is relative to the statistic.
            tol = (SUM_RTOL + TOKEN_RTOL) * np.abs(expected) + 1e-30
        elif c.agg in ("sum", "mean", "ser"):
            tol = (SUM_RTOL + (TOKEN_RTOL if c.estimator in EXP_ESTIMATORS else 0)) * term_sums + 1e-30
            if c.agg != "sum":
                tol = tol / np.maximum(ref["count"], 1)
        else:
            tol = token_tolerance(c.estimator, expected)
            # Bitwise: the extreme equals the extreme of this library's own per-token values.
            values = trmask.token_values(log_ratio=batch.x.astype(np.float32), estimator=c.estimator, clamp=clamp)
            for i, (s, e) in enumerate(zip(batch.starts, batch.stops)):
                row = values[s:e][batch.counted[s:e]]
                if row.size and not batch.nan_row[i]:
                    want = row.max() if c.agg == "max" else row.min()
                    assert np.float32(stat[i]) == want, f"{c} row {i}: {stat[i]!r} is not the token {c.agg} {want!r}"
        report(stat, expected, tol, f"{c} ({layout})")
        with np.errstate(invalid="ignore"):
            borderline |= (np.abs(expected - c.lo) <= tol) | (np.abs(expected - c.hi) <= tol)

    decided = ~borderline
    np.testing.assert_array_equal(np.asarray(got.keep_row)[decided], ref["keep_row"][decided])
    if not borderline.any():
        row_rejected = [r for r, c in zip(got.rejected, criteria) if c.is_row]
        np.testing.assert_array_equal(row_rejected, [r for r, c in zip(ref["rejected"], criteria) if c.is_row])
        if all(c.is_row for c in criteria) or policy != "zero":
            np.testing.assert_array_equal(np.asarray(got.keep_token), ref["keep_token"])


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 5), cols=st.integers(0, 40),
       layout=st.sampled_from(LAYOUTS[:-1]), estimator=st.sampled_from(("delta", "k1", "k2", "k3", "abs", "ratio", "tv")),
       clamp=st.sampled_from((None, 1.0)), special=st.booleans())
def test_token_values_match_reference(seed, rows, cols, layout, estimator, clamp, special):
    inputs, ref_inputs = _make_case(seed, rows, cols, layout, "none", False, special)
    got = trmask.token_values(inputs["logp_train"], inputs["logp_roll"], estimator, clamp=clamp)
    from trmask.reference import log_ratio
    expected = estimator_values(estimator, log_ratio(ref_inputs["logp_train"], ref_inputs["logp_roll"]), clamp=clamp)
    report(got, expected, token_tolerance(estimator, expected), f"{estimator} ({layout})")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 20), cols=st.integers(1, 150),
       layout=st.sampled_from(("transposed", "reversed", "sliced")))
def test_layouts_give_identical_bits(seed, rows, cols, layout):
    """Sums are taken in a fixed order per row position, so any memory layout gives the same bits."""
    inputs, _ = _make_case(seed, rows, cols, layout, "bool", True, True)
    contiguous = {k: (np.ascontiguousarray(v) if k != "lengths" and v is not None else v) for k, v in inputs.items()}
    criteria = [trmask.Criterion(agg, est) for est in ("k3", "delta", "tv") for agg in ("sum", "mean", "max", "min")]
    a = trmask.trust_region_mask(**inputs, criteria=criteria, nan_policy="skip")
    b = trmask.trust_region_mask(**contiguous, criteria=criteria, nan_policy="skip")
    for x, y in zip(a.row_stats, b.row_stats):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(60, 140), cols=st.integers(1, 200), special=st.booleans(),
       picks=st.lists(st.integers(0, len(CRITERIA_POOL) - 2), min_size=1, max_size=3, unique=True))
def test_column_major_tiles_match_contiguous(seed, rows, cols, special, picks):
    """Column-major batches of several lane groups (and leftover rows) give the contiguous bits,
    keep_token included."""
    inputs, _ = _make_case(seed, rows, cols, "transposed", "bool", True, special)
    contiguous = {k: (np.ascontiguousarray(v) if k != "lengths" and v is not None else v) for k, v in inputs.items()}
    criteria = [CRITERIA_POOL[i] for i in picks if CRITERIA_POOL[i].is_row] or [CRITERIA_POOL[0]]
    a = trmask.trust_region_mask(**inputs, criteria=criteria, nan_policy="zero", threads=2)
    b = trmask.trust_region_mask(**contiguous, criteria=criteria, nan_policy="zero", threads=1)
    np.testing.assert_array_equal(a.keep_row, b.keep_row)
    np.testing.assert_array_equal(a.keep_token, b.keep_token)  # written by the tile scan too
    np.testing.assert_array_equal(a.count, b.count)
    np.testing.assert_array_equal(a.nonfinite, b.nonfinite)
    for x, y in zip(a.row_stats, b.row_stats):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
