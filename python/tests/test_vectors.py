"""The library (through the C ABI, from Python) against the independent known answers in
Tests/vectors (SPEC §2-§4, §10), and the copy of the vectors against ../shared/vectors."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest

import trmask
from conftest import (EXP_ESTIMATORS, SHARED_VECTORS, SUM_RTOL, TOKEN_RTOL, VECTORS, float32_range, load_vectors, num,
                      report, token_tolerance)

ESTIMATOR_VECTORS = load_vectors("estimators.json")
ROW_CASES = load_vectors("rows.json")
STAT_ESTIMATORS = ("delta", "k1", "k2", "k3", "abs", "ratio", "tv")


@pytest.mark.skipif(not SHARED_VECTORS.is_dir(), reason="../shared/vectors is not on this machine")
def test_vector_copy_is_byte_identical_to_shared():
    shared = sorted(p.name for p in SHARED_VECTORS.iterdir())
    ours = sorted(p.name for p in VECTORS.iterdir())
    assert ours == shared
    match, mismatch, errors = filecmp.cmpfiles(SHARED_VECTORS, VECTORS, shared, shallow=False)
    assert mismatch == [] and errors == [], (mismatch, errors)


@pytest.mark.parametrize("estimator", STAT_ESTIMATORS)
@pytest.mark.parametrize("clamp", [None, 20.0])
def test_estimators_json(estimator, clamp):
    delta = num(ESTIMATOR_VECTORS["delta"]).astype(np.float32)
    table = ESTIMATOR_VECTORS if clamp is None else ESTIMATOR_VECTORS["clamp20"]
    expected = num(table[estimator])
    got = trmask.token_values(log_ratio=delta, estimator=estimator, clamp=clamp)
    report(got, expected, token_tolerance(estimator, expected), f"{estimator} clamp={clamp}")


def _padded_inputs(case):
    lt = num(case["lt"]).astype(np.float32).reshape(case["B"], case["T"])
    lr = num(case["lr"]).astype(np.float32).reshape(case["B"], case["T"])
    mask = np.array(case["mask"], dtype=np.uint8).reshape(case["B"], case["T"])
    return lt, lr, mask


def _options(case):
    clamp = None if case["clamp"] == "inf" else float(case["clamp"])
    return {"nan_policy": case["nan_policy"], "clamp": clamp}


def _criteria(spec):
    return [trmask.Criterion(c["agg"], c["est"], float(num([c["lo"]])[0]), float(num([c["hi"]])[0])) for c in spec]


def _sum_tolerance(case, estimator, mask_rows):
    """SPEC §3: 2e-6 * sum|term| per row, from the reference's per-token values."""
    from trmask.reference import estimator_values, log_ratio
    lt, lr, _ = _padded_inputs(case)
    clamp = _options(case)["clamp"]
    d = log_ratio(lt, lr)
    if case["nan_policy"] == "zero":
        d = np.where(np.isnan(d), 0.0, d)
    terms = np.abs(estimator_values(estimator, d, clamp=clamp))
    terms = np.where(mask_rows & np.isfinite(terms), terms, 0.0)
    total = terms.sum(axis=1)
    rtol = SUM_RTOL + (TOKEN_RTOL if estimator in EXP_ESTIMATORS else 0.0)
    return rtol * total + 1e-30


def _layouts(case):
    """The case as padded arrays and as the packed arrays of the vectors."""
    lt, lr, mask = _padded_inputs(case)
    yield "padded", dict(logp_train=lt, logp_roll=lr, mask=mask)
    packed = case["packed"]
    yield "packed", dict(logp_train=num(packed["lt"]).astype(np.float32), logp_roll=num(packed["lr"]).astype(np.float32),
                         offsets=np.array(packed["offsets"], dtype=np.int64))


@pytest.mark.parametrize("case", ROW_CASES, ids=[c["name"] for c in ROW_CASES])
def test_rows_json_stats(case):
    expected = case["expected"]
    _, _, mask = _padded_inputs(case)
    for layout, inputs in _layouts(case):
        stats = trmask.sequence_stats(**inputs, estimators=STAT_ESTIMATORS, **_options(case))
        np.testing.assert_array_equal(stats.count, expected["count"], err_msg=f"{layout} count")
        np.testing.assert_array_equal(stats.nonfinite, expected["nonfinite"], err_msg=f"{layout} nonfinite")
        for est in STAT_ESTIMATORS:
            sums = _sum_tolerance(case, est, mask != 0)
            for agg in ("sum", "mean", "max", "min"):
                ref = num(expected["stats"][est][agg])
                if agg == "sum":
                    tol = sums
                elif agg == "mean":
                    tol = sums / np.maximum(np.array(expected["count"]), 1)
                else:
                    tol = token_tolerance(est, ref)
                report(stats.stats[est][agg], ref, tol, f"{case['name']} {layout} {agg} {est}")


def _borderline(stat_ref, criterion, tolerance):
    """Rows whose reference statistic is within `tolerance` of a bound: either decision is right."""
    with np.errstate(invalid="ignore"):
        return (np.abs(stat_ref - criterion.lo) <= tolerance) | (np.abs(stat_ref - criterion.hi) <= tolerance)


@pytest.mark.parametrize("case", ROW_CASES, ids=[c["name"] for c in ROW_CASES])
def test_rows_json_masks(case):
    _, _, mask = _padded_inputs(case)
    for name, expected in case["criteria"].items():
        criteria = _criteria(expected["criteria"])
        for layout, inputs in _layouts(case):
            result = trmask.trust_region_mask(**inputs, criteria=criteria, reject_empty=case["reject_empty"], **_options(case))
            what = f"{case['name']} {name} {layout}"
            np.testing.assert_array_equal(result.keep_row, np.array(expected["keep_row"], bool), err_msg=what)
            np.testing.assert_array_equal(result.rejected, expected["rejected_per_criterion"], err_msg=what)
            keep_token = np.array(expected["keep_token"], bool).reshape(case["B"], case["T"])
            if layout == "packed":
                keep_token = keep_token[mask != 0]
            np.testing.assert_array_equal(result.keep_token, keep_token, err_msg=what)


@pytest.mark.parametrize("case", ROW_CASES, ids=[c["name"] for c in ROW_CASES])
def test_rows_json_through_lengths(case):
    """Masks that are a prefix of each row give the same answers as `lengths`."""
    lt, lr, mask = _padded_inputs(case)
    lengths = mask.sum(axis=1).astype(np.int64)
    if not np.array_equal(mask != 0, np.arange(case["T"])[None, :] < lengths[:, None]):
        pytest.skip("mask is not a prefix per row")
    for name, expected in case["criteria"].items():
        result = trmask.trust_region_mask(lt, lr, lengths=lengths, criteria=_criteria(expected["criteria"]),
                                          reject_empty=case["reject_empty"], **_options(case))
        np.testing.assert_array_equal(result.keep_row, np.array(expected["keep_row"], bool), err_msg=name)
        np.testing.assert_array_equal(result.rejected, expected["rejected_per_criterion"], err_msg=name)


def _ln_trm_expected(spec):
    """The vectors' LN-TRM statistics: ``"kept_z0"`` (Z(T) = 0) is statistic 0, kept."""
    return num([0.0 if s == "kept_z0" else s for s in spec["stat"]])


@pytest.mark.parametrize("case", ROW_CASES, ids=[c["name"] for c in ROW_CASES])
@pytest.mark.parametrize("key", ["ln_trm", "ln_trm_eps"])
def test_rows_json_ln_trm(case, key):
    """SPEC §4.4 against ``expected.ln_trm*``: W / Z has non-negative terms, so the sum bound of
    SPEC §3 plus the per-token tv bound is relative to the statistic itself."""
    spec = case["expected"][key]
    eps = None if spec["eps"] == "none" else float(spec["eps"])
    expected = _ln_trm_expected(spec)
    criterion = trmask.Criterion("ln_trm", "tv", kl_max=float(spec["kl_max"]), eps=eps)
    for layout, inputs in _layouts(case):
        result = trmask.trust_region_mask(**inputs, criteria=[criterion], **_options(case))
        report(result.row_stats[0], expected, (SUM_RTOL + TOKEN_RTOL) * np.abs(float32_range(expected)) + 1e-30,
               f"{case['name']} {key} {layout}")
        # Every row passes an unbounded criterion unless its statistic is NaN (reject policy).
        np.testing.assert_array_equal(result.keep_row, ~np.isnan(expected), err_msg=f"{case['name']} {key} {layout}")
