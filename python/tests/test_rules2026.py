"""The 2026 rules (docs/rules-2026.md; SPEC §4.7-§4.10, §9 additions) against the known answers
in Tests/vectors/rules2026.json and the independent reference in trmask.reference.rules2026.

Tolerances, one reason each:

| quantity                 | rule                                   | why |
|--------------------------|----------------------------------------|-----|
| bdiff, btv per token     | ``|got - ref| <= 2e-7``                  | SPEC §4.7 (the float32 output adds at most 6e-8 for |D| <= 1) |
| bkl, bkl_tr, bkl_sym     | ``|got - ref| <= 1e-5 |ref| + 1e-12``    | SPEC §4.7 |
| binary row sums, means   | the per-token bound times the count, plus SPEC §3's 2e-6 sum|term| | float64 sums of float64 values |
| geo, keep decisions      | exact                                   | decided on the float64 log mean, as the reference |
| drift metrics            | ``1e-12`` relative (delta means), ``4e-6`` relative (k3) | float64 sums of exact float32 deltas; k3 per SPEC §2 |
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import trmask
from conftest import load_vectors, num, report
from trmask.reference import rules2026 as ref

VECTORS = load_vectors("rules2026.json")
BINARY = VECTORS["binary"]
BINARY_ESTIMATORS = ("bdiff", "btv", "bkl", "bkl_tr", "bkl_sym")

# Entries of rules2026.json that contradict SPEC §4.7's definition (reported to the lead, never
# edited): with eps = 0 and one probability exactly 0 or 1 (lt or lr = -inf or 0), the vectors
# drop a whole `k3` term of the decomposition `a k3(ln b - ln a) + (1-a) k3(...)` because its
# weight is 0, but that term tends to `b - a` (or `a - b`), not 0. E.g. index 11, bkl:
# lt = -1, lr = -inf: KL_B(0 || e^-1) = 0 ln 0 + 1 ln(1 / (1 - e^-1)) = 0.45868, while the
# vector holds 0.45868 - e^-1 = 0.09080. Index 48, bkl_tr: KL_B(1 || e^-1.7406) = 1.7406 = -lr,
# the vector 0.9160 = 1.7406 - (1 - e^-1.7406).
CONTRADICTING_SPEC = {("eps_0", "bkl", 11), ("eps_0", "bkl_tr", 10), ("eps_0", "bkl_tr", 48),
                      ("eps_0", "bkl_tr", 110), ("eps_0", "bkl_tr", 158)}


def binary_tolerance(estimator: str, expected) -> np.ndarray:
    expected = np.abs(np.asarray(expected, dtype=np.float64))
    if estimator in ("bdiff", "btv"):
        return np.full(expected.shape, 2e-7)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(expected), 1e-5 * expected + 1e-12, 0.0)


def _pairs():
    return num(BINARY["lt"]).astype(np.float32), num(BINARY["lr"]).astype(np.float32)


@pytest.mark.parametrize("case, eps", [("eps_1e-6", None), ("eps_1e-6", 1e-6), ("eps_0", 0.0)])
@pytest.mark.parametrize("estimator", BINARY_ESTIMATORS)
def test_binary_vectors(case, eps, estimator):
    lt, lr = _pairs()
    expected = num(BINARY[case][estimator])
    got = trmask.token_values(lt, lr, estimator, binary_eps=eps).astype(np.float64)
    skip = [i for (c, e, i) in CONTRADICTING_SPEC if c == case and e == estimator]
    keep = np.setdiff1d(np.arange(len(lt)), skip)
    report(got[keep], expected[keep], binary_tolerance(estimator, expected[keep]), f"{estimator} {case}")


@pytest.mark.parametrize("case, estimator, index", sorted(CONTRADICTING_SPEC))
def test_vector_entries_that_contradict_the_spec_match_the_definition(case, estimator, index):
    """The library follows SPEC §4.7's definition where the vector does not (see the note above)."""
    lt, lr = _pairs()
    got = trmask.token_values(lt[index:index + 1], lr[index:index + 1], estimator, binary_eps=0.0)[0]
    direct = ref.binary_value(float(lt[index]), float(lr[index]), estimator, 0.0)
    assert abs(got - direct) <= binary_tolerance(estimator, direct)
    assert abs(direct - float(num(BINARY[case][estimator])[index])) > 0.01 * direct


def test_binary_reference_agrees_with_vectors():
    """The two independent references agree except on the entries above."""
    lt, lr = _pairs()
    for case, eps in (("eps_1e-6", 1e-6), ("eps_0", 0.0)):
        for estimator in BINARY_ESTIMATORS:
            mine = ref.binary_values(lt, lr, estimator, eps)
            expected = num(BINARY[case][estimator])
            skip = [i for (c, e, i) in CONTRADICTING_SPEC if c == case and e == estimator]
            keep = np.setdiff1d(np.arange(len(lt)), skip)
            report(mine[keep], expected[keep], binary_tolerance(estimator, expected[keep]) * 0.01, f"ref {estimator}")


finite_logp = st.floats(-30.0, 0.0, width=32)
any_logp = st.one_of(finite_logp, st.sampled_from([0.0, -0.0, -np.inf, np.nan, 1e-30, -1e-30, 0.5, -87.0, -104.0]),
                     st.floats(-200.0, 1.0, width=32))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), estimator=st.sampled_from(BINARY_ESTIMATORS), eps=st.sampled_from([None, 0.0, 1e-6, 1e-3, 0.25]),
       dtype=st.sampled_from([np.float32, np.float64, np.float16]))
def test_binary_token_values_match_reference(data, estimator, eps, dtype):
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=9))
    lt = data.draw(hnp.arrays(np.float32, shape, elements=any_logp)).astype(dtype)
    lr = data.draw(hnp.arrays(np.float32, shape, elements=any_logp)).astype(dtype)
    if data.draw(st.booleans()):
        lt, lr = lt[::-1], lr.T.copy().T  # negative row stride; a Fortran-ordered copy
    got = trmask.token_values(lt, lr, estimator, binary_eps=eps)
    expected = ref.binary_values(lt.astype(np.float64), lr.astype(np.float64), estimator, 1e-6 if eps is None else eps)
    report(got, expected, binary_tolerance(estimator, expected), f"{estimator} eps={eps}")


def test_binary_estimators_need_log_probs():
    delta = np.zeros((2, 3), np.float32)
    with pytest.raises(trmask.TrmaskError, match="both log-probs"):
        trmask.token_values(log_ratio=delta, estimator="bkl_sym")
    with pytest.raises(trmask.TrmaskError, match="both log-probs"):
        trmask.trust_region_mask(log_ratio=delta, criteria="token:btv<=0.2")
    with pytest.raises(trmask.TrmaskError, match="binary_eps"):
        trmask.token_values(delta, delta, "bkl", binary_eps=0.5)
    with pytest.raises(trmask.TrmaskError, match="no row partials"):
        trmask.row_partials(delta, delta, estimators=("bkl",))


def _random_batch(rng, rows, cols, special=False):
    lr = np.log(rng.uniform(0.01, 1.0, size=(rows, cols))).astype(np.float32)
    lt = (lr + rng.normal(0, 0.05, size=(rows, cols))).clip(max=0).astype(np.float32)
    if special:
        pick = rng.random((rows, cols))
        lt[pick < 0.03] = np.nan
        lr[(pick > 0.97)] = -np.inf
    mask = rng.random((rows, cols)) < 0.8
    return lt, lr, mask


@pytest.mark.parametrize("nan_policy", ["reject", "skip", "zero"])
@pytest.mark.parametrize("special", [False, True])
def test_binary_row_statistics_and_token_criteria(nan_policy, special):
    rng = np.random.default_rng(7)
    lt, lr, mask = _random_batch(rng, 13, 37, special)
    mask[3] = False  # an empty row
    criteria = [trmask.Criterion(agg, est) for est in ("bdiff", "bkl_sym") for agg in ("max", "min", "sum", "mean")]
    criteria.append(trmask.Criterion("token", "btv", hi=0.05))
    result = trmask.trust_region_mask(lt, lr, mask, criteria=criteria, nan_policy=nan_policy)
    token = {e: ref.binary_values(lt, lr, e) for e in ("bdiff", "bkl_sym", "btv")}
    delta = ref.float32_delta(lt, lr)
    counted = mask & ~(np.isnan(delta) & (nan_policy == "skip"))
    if nan_policy == "zero":
        for values in token.values():
            values[np.isnan(delta) & mask] = 0.0
    assert (result.count == counted.sum(axis=1)).all()
    for k, c in enumerate(criteria[:-1]):
        values = token[c.estimator]
        for row in range(lt.shape[0]):
            v = values[row][counted[row]]
            got = float(result.row_stats[k][row])
            if v.size == 0:
                assert got == 0
            elif nan_policy == "reject" and np.isnan(delta[row][counted[row]]).any():
                assert math.isnan(got)
            else:
                expected = {"max": v.max(), "min": v.min(), "sum": v.sum(), "mean": v.mean()}[c.agg]
                tol = binary_tolerance(c.estimator, np.abs(v)).sum() + 2e-6 * np.abs(v).sum() + 1e-30
                assert abs(got - expected) <= tol, (c, row, got, expected)
    btv = token["btv"]
    with np.errstate(invalid="ignore"):
        passes = btv <= 0.05
    expected_keep = counted & passes & result.keep_row[:, None]
    assert (np.asarray(result.keep_token) == expected_keep).all()
    assert result.rejected[-1] == int((counted & ~passes).sum())


def test_binary_criteria_strings_and_row_rule():
    rng = np.random.default_rng(3)
    lt, lr, mask = _random_batch(rng, 20, 50)
    lt[5, 7] = lr[5, 7] + 1.5  # one large binary KL
    result = trmask.trust_region_mask(lt, lr, mask, criteria="max:bkl_sym<=0.01")
    row_max = np.array([ref.binary_values(lt[i][mask[i]], lr[i][mask[i]], "bkl_sym").max() for i in range(20)])
    assert (result.keep_row == (row_max <= 0.01)).all()
    assert not result.keep_row[5]


GEO = VECTORS["geo"]


def _geo_inputs():
    shape = (GEO["B"], GEO["T"])
    return (num(GEO["lt"]).astype(np.float32).reshape(shape), num(GEO["lr"]).astype(np.float32).reshape(shape),
            np.array(GEO["mask"], dtype=np.uint8).reshape(shape))


@pytest.mark.parametrize("band", range(len(GEO["bands"])))
def test_geo_vectors(band):
    lt, lr, mask = _geo_inputs()
    case = GEO["bands"][band]
    result = trmask.trust_region_mask(lt, lr, mask, criteria=[trmask.Criterion("geo", "ratio", lo=case["lo"], hi=case["hi"])])
    assert result.keep_row.tolist() == [bool(k) for k in case["keep"]]
    expected = num(GEO["log_mean"]).astype(np.float32)
    assert (result.row_stats[0] == expected).all()


def test_geo_is_decided_in_log_space():
    """One-token rows at the float32 neighbours of ln lo and ln hi: kept exactly when the float64
    log mean lies inside [ln lo, ln hi] (SPEC §4.9), whatever exp of it rounds to."""
    lo, hi = 0.999, 1.001
    rows = []
    for bound in (math.log(lo), math.log(hi)):
        below = np.float32(bound)
        while float(below) >= bound:
            below = np.nextafter(below, np.float32(-1))
        rows += [below, np.nextafter(below, np.float32(1))]
    lt = np.array(rows, np.float32)[:, None]
    result = trmask.trust_region_mask(lt, np.zeros_like(lt), criteria=[trmask.Criterion("geo", "ratio", lo=lo, hi=hi)])
    assert result.keep_row.tolist() == [False, True, True, False]
    assert (result.row_stats[0] == lt[:, 0]).all()
    with pytest.raises(trmask.TrmaskError, match="geo"):
        trmask.Criterion("geo", "delta", lo=0.9)


def test_drift_metrics_vectors():
    lt, lr, mask = _geo_inputs()
    metrics = trmask.trust_region_mask(lt, lr, mask, metrics=True).metrics
    drift = GEO["drift"]
    assert metrics["n_tokens"] == drift["n_tokens"]
    assert metrics["n_positions"] == GEO["B"] * GEO["T"]
    assert metrics["n_tokens_rejected"] == metrics["n_tokens"] - metrics["n_tokens_kept"]
    for key, rtol in (("delta_mean", 1e-12), ("delta_abs_mean", 1e-12), ("k3_clamped_token_mean", 4e-6),
                      ("k3_clamped_row_mean", 4e-6)):
        assert abs(metrics[key] - drift[key]) <= rtol * abs(drift[key]), key


@pytest.mark.parametrize("nan_policy", ["skip", "zero"])
def test_drift_metrics_reference_with_large_k3(nan_policy):
    rng = np.random.default_rng(11)
    lt, lr, mask = _random_batch(rng, 9, 40, special=False)
    lt[2, 3] = lr[2, 3] + 4.0  # k3 = e^4 - 5 > 10: the clamp bites
    lt[4, 1] = np.nan
    result = trmask.trust_region_mask(lt, lr, mask, metrics=True, nan_policy=nan_policy,
                                      criteria=["max:bkl<=1", "token:bdiff<=0.5"])
    m = result.metrics
    used = mask & ~np.isnan(ref.float32_delta(lt, lr)) if nan_policy == "skip" else mask
    lt_used, lr_used = lt.copy(), lr.copy()
    if nan_policy == "zero":
        lt_used[4, 1] = lr_used[4, 1]
    expected = ref.drift_metrics(lt_used, lr_used, used)
    for key in ("delta_mean", "delta_abs_mean", "k3_clamped_token_mean", "k3_clamped_row_mean"):
        assert abs(m[key] - expected[key]) <= 4e-6 * abs(expected[key]) + 1e-12, key
    bkl = ref.binary_values(lt_used, lr_used, "bkl")[used]
    assert abs(m["token_mean_bkl"] - bkl.mean()) <= 1e-5 * bkl.mean()
    assert abs(m["token_max_bkl"] - bkl.max()) <= 1e-5 * bkl.max()


DPPO = VECTORS["dppo"]
KINDS = {"tv": "bdiff", "kl": "bkl", "ratio": "ratio"}


@pytest.mark.parametrize("index", range(len(DPPO["cases"])))
def test_advantage_mask_vectors(index):
    case = DPPO["cases"][index]
    lt, lr = num(DPPO["lt"]).astype(np.float32), num(DPPO["lr"]).astype(np.float32)
    adv = num(DPPO["adv"])
    result = trmask.advantage_mask(lt[None, :], lr[None, :], None, adv[None, :], statistic=KINDS[case["kind"]],
                                   low=case["low"], high=case["high"], zero_advantage=case["zero_adv"])
    assert result.keep_token[0].tolist() == [bool(k) for k in case["keep"]]
    keep, upper, lower = ref.advantage_keep(lt, lr, adv, KINDS[case["kind"]], case["low"], case["high"], case["zero_adv"])
    assert (result.masked_upper, result.masked_lower) == (int(upper.sum()), int(lower.sum()))
    assert result.masked_positive == int((upper & (adv > 0)).sum())
    assert result.masked_negative == int((lower & (adv < 0)).sum())


@settings(max_examples=40, deadline=None)
@given(data=st.data(), statistic=st.sampled_from(["bdiff", "bkl", "ratio"]), zero=st.sampled_from(["lower", "keep"]),
       per_row=st.booleans(), nan_policy=st.sampled_from(["reject", "skip", "zero"]))
def test_advantage_mask_matches_reference(data, statistic, zero, per_row, nan_policy):
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12))
    lt = data.draw(hnp.arrays(np.float32, shape, elements=any_logp))
    lr = data.draw(hnp.arrays(np.float32, shape, elements=any_logp))
    mask = data.draw(hnp.arrays(np.bool_, shape))
    adv_values = st.one_of(st.sampled_from([0.0, 1.0, -1.0, np.nan]), st.floats(-3, 3))
    adv = data.draw(hnp.arrays(np.float64, shape[:1] if per_row else shape, elements=adv_values))
    low, high = (0.8, 1.25) if statistic == "ratio" else (data.draw(st.sampled_from([0.0, 0.05, 0.2])), 0.1)
    result = trmask.advantage_mask(lt, lr, mask, adv, statistic=statistic, low=low, high=high, zero_advantage=zero,
                                   nan_policy=nan_policy)
    full_adv = np.broadcast_to(adv[:, None] if per_row else adv, shape)
    nan_delta = np.isnan(ref.float32_delta(lt, lr))
    lt_used, lr_used = lt.copy(), lr.copy()
    if nan_policy == "zero":
        lt_used[nan_delta], lr_used[nan_delta] = 0, 0
    counted = mask & ~(nan_delta & (nan_policy == "skip"))
    keep, upper, lower = ref.advantage_keep(lt_used, lr_used, full_adv, statistic, low, high, zero)
    # A token whose statistic lies within its accuracy bound of a limit may go either way (the
    # decision rule of conftest.py): bdiff is within 2e-7 absolute, bkl within 1e-5 relative +
    # 1e-12; ratio decides on the exact float32 delta, so it has no such ties.
    tie = np.zeros(shape, dtype=bool)
    if statistic != "ratio":
        stat = ref.binary_values(lt_used.astype(np.float64), lr_used.astype(np.float64), statistic, 1e-6)
        tol = 2e-7 if statistic == "bdiff" else 1e-5 * np.abs(stat) + 1e-12
        limits = (high, -low) if statistic == "bdiff" else (high, low)
        with np.errstate(invalid="ignore"):
            tie = (np.abs(stat - limits[0]) <= tol) | (np.abs(stat - limits[1]) <= tol)
    sure = counted & ~tie
    assert (np.asarray(result.keep_token) == (counted & keep))[sure | ~counted].all()
    if not (counted & tie).any():
        assert result.masked_upper == int((counted & upper).sum())
        assert result.masked_lower == int((counted & lower).sum())


def test_advantage_rule_inside_the_mask_with_row_criteria_and_metrics():
    rng = np.random.default_rng(5)
    lt, lr, mask = _random_batch(rng, 16, 30)
    lt[2, 4] = 0.0  # a token with a large bdiff
    adv = rng.choice([-1.0, 1.0], size=16)
    rule = trmask.AdvantageRule("bdiff", low=0.02, high=0.02)
    result = trmask.trust_region_mask(lt, lr, mask, criteria="max:k2<=0.05", advantages=adv, advantage_rule=rule,
                                      metrics=True)
    plain = trmask.trust_region_mask(lt, lr, mask, criteria="max:k2<=0.05")
    assert (result.keep_row == plain.keep_row).all()  # the token rule never rejects rows
    keep, upper, lower = ref.advantage_keep(lt, lr, np.broadcast_to(adv[:, None], lt.shape), "bdiff", 0.02, 0.02)
    expected = mask & keep & plain.keep_row[:, None]
    assert (result.keep_token == expected).all()
    assert result.advantage_counts["adv_masked_upper"] == int((mask & upper).sum())
    assert result.metrics["adv_masked_lower"] == int((mask & lower).sum())
    assert result.metrics["n_tokens_kept"] == expected.sum()


def test_off_policy_sequence_mask_rejects_drifted_negative_rows():
    rng = np.random.default_rng(9)
    lt, lr, mask = _random_batch(rng, 12, 20)
    lt[:6] -= 0.01  # rows 0..5 drifted: mean(-delta) ~ 0.01
    mask[11] = False  # an empty row: mean 0
    adv = np.array([-1, 1, -1, 0, -1, 1, -1, 1, -1, 0, -1, -1], np.float64)
    adv[4] = np.nan
    for limit in (5e-3, 0.02, -1.0):
        result = trmask.off_policy_sequence_mask(lt, lr, mask, adv, limit)
        with np.errstate(invalid="ignore"):
            expected = ref.opsm_keep(lt, lr, mask, adv, limit) & ~np.isnan(adv)
        assert result.keep_row.tolist() == expected.tolist()
        assert result.advantage_counts["adv_rows_rejected"] == int((~expected).sum())
        assert (result.keep_token == (mask & expected[:, None])).all()
    with pytest.raises(trmask.TrmaskError, match="one per row"):
        trmask.off_policy_sequence_mask(lt, lr, mask, np.zeros(lt.shape), 0.01)


def test_opsm_vectors():
    lt, lr, mask = _geo_inputs()
    for case in GEO["opsm"]:
        result = trmask.off_policy_sequence_mask(lt, lr, mask, num(GEO["row_adv"]), case["delta_max"])
        assert result.keep_row.tolist() == [bool(k) for k in case["keep"]]


ICEPOP = VECTORS["icepop"]


@pytest.mark.parametrize("index", range(len(ICEPOP["cases"])))
def test_icepop_weights_vectors(index):
    case = ICEPOP["cases"][index]
    lt, lr = num(ICEPOP["lt"]).astype(np.float32), num(ICEPOP["lr"]).astype(np.float32)
    # One row per token: a NaN delta (lt = lr = -inf) zeroes only its own row (fail closed).
    weights = trmask.importance_weights(lt[:, None], lr[:, None], mode="mask", lo=case["lo"] or None, hi=case["hi"])[:, 0]
    keep = np.array(case["keep"], bool)
    assert (weights[~keep] == 0).all()
    expected = num(case["weight"])
    report(weights[keep], expected[keep], 4e-6 * np.abs(expected[keep]), f"icepop {case['lo']}, {case['hi']}")


def test_icepop_is_decided_in_log_space():
    """A delta just below ln lo whose float32 rho rounds onto lo is rejected (weight exactly 0)."""
    lo = 0.5
    d = np.float32(math.log(lo))
    while float(d) >= math.log(lo):
        d = np.nextafter(d, np.float32(-1))
    assert np.float32(np.exp(np.float32(d))) >= np.float32(lo)  # rho would pass in ratio space
    lt = np.array([[d, np.nextafter(d, np.float32(1)), -np.inf]], np.float32)
    weights = trmask.importance_weights(lt, np.zeros_like(lt), mode="mask", lo=lo, hi=2.0)
    assert weights[0, 0] == 0 and weights[0, 1] > 0 and weights[0, 2] == 0


GROUPS = VECTORS["groups"]


@pytest.mark.parametrize("index", range(len(GROUPS["cases"])))
def test_group_advantages_vectors(index):
    case = GROUPS["cases"][index]
    result = trmask.group_advantages(np.array(GROUPS["group"], np.int64), num(GROUPS["reward"]),
                                     np.array(GROUPS["keep"], np.uint8), normalize_std=case["normalize_std"],
                                     eps=case["eps"], singleton=case["singleton"])
    expected = num(case["advantages"])
    assert (result.advantages == expected.astype(np.float32)).all()
    assert result.n_rows_nonfinite_reward == case["n_rows_nonfinite_reward"]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), normalize=st.booleans(), singleton=st.sampled_from(["zero", "raw"]),
       eps=st.sampled_from([0.0, 1e-6, 0.5]), dtype=st.sampled_from([np.float32, np.float64]))
def test_group_advantages_match_reference(data, normalize, singleton, eps, dtype):
    n = data.draw(st.integers(0, 30))
    ids = data.draw(hnp.arrays(np.int64, n, elements=st.sampled_from([-2**63, -5, 0, 3, 2**40, 2**63 - 1])))
    rewards = data.draw(hnp.arrays(dtype, n, elements=st.one_of(st.floats(-5, 5, width=32),
                                                                st.sampled_from([np.nan, np.inf, -np.inf, 1.0]))))
    keep = data.draw(hnp.arrays(np.bool_, n))
    if data.draw(st.booleans()) and n > 1:
        ids, rewards, keep = ids[::-1], rewards[::-1], keep[::-1]  # negative strides
    result = trmask.group_advantages(ids, rewards, keep, normalize_std=normalize, eps=eps, singleton=singleton)
    expected, nonfinite = ref.group_advantages(ids, rewards, keep, normalize, eps, singleton)
    with np.errstate(over="ignore", invalid="ignore"):
        # Relative float32 rounding, plus half the spacing of float32 subnormals (2^-150): the
        # advantages are float32, so a subnormal one is rounded on an absolute grid.
        report(result.advantages, expected, 4 * np.abs(expected) * 2.0**-24 + 2.0**-150, "group advantages")
    assert result.n_rows_nonfinite_reward == nonfinite
    assert result.n_groups == len(set(ids.tolist()))
    assert len(result.group_ids) == result.n_groups


def test_group_advantages_are_bit_identical_under_permutation_of_groups():
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 50, 1000) * 7919
    rewards = rng.random(1000).astype(np.float32)
    keep = rng.random(1000) < 0.8
    first = trmask.group_advantages(ids, rewards, keep)
    relabeled = trmask.group_advantages(-ids - 1, rewards, keep)  # other ids, other group order
    assert first.advantages.tobytes() == relabeled.advantages.tobytes()


def test_group_advantages_refuse_bad_arguments():
    ids = np.arange(4)
    with pytest.raises(trmask.TrmaskError, match="rewards"):
        trmask.group_advantages(ids, np.zeros(3))
    with pytest.raises(trmask.TrmaskError, match="singleton"):
        trmask.group_advantages(ids, np.zeros(4), singleton="one")
    with pytest.raises(trmask.TrmaskError, match="eps"):
        trmask.group_advantages(ids, np.zeros(4), eps=math.nan)
    with pytest.raises(trmask.TrmaskError, match="group_ids"):
        trmask.group_advantages(ids.astype(np.float32), np.zeros(4))


def _group_call(rows=4):
    from trmask import _ffi
    ids, rewards, adv = np.arange(rows, dtype=np.int64), np.ones(rows), np.full(rows, 7.0, np.float32)
    inputs = _ffi.Groups(ctypes.sizeof(_ffi.Groups), 0, rows, _ffi.View(ids.ctypes.data, _ffi.DTYPE_I64, 0, 0, 1),
                         _ffi.View(rewards.ctypes.data, _ffi.DTYPE_F64, 0, 0, 1))
    out = _ffi.GroupOut(ctypes.sizeof(_ffi.GroupOut), 0, _ffi.Out(adv.ctypes.data, 1, 0))
    return ids, rewards, adv, inputs, out


GROUP_BREAKS = {
    "TRM_E_BAD_STRUCT_SIZE": lambda ins, out, arrays: setattr(ins, "struct_size", 8),
    "TRM_E_BAD_SIZE": lambda ins, out, arrays: setattr(ins, "n_rows", -1),
    "TRM_E_BAD_DTYPE": lambda ins, out, arrays: setattr(ins.group, "dtype", 1),
    "TRM_E_BAD_STRIDE": lambda ins, out, arrays: setattr(out.advantages, "stride_row", 0),
    "TRM_E_OUT_OF_RANGE": lambda ins, out, arrays: setattr(ins.reward, "stride_col", 2**61),
    "TRM_E_ALIASING": lambda ins, out, arrays: setattr(out.voters, "data", arrays[1].ctypes.data) or setattr(out.voters, "stride_row", 1),
    "TRM_E_BAD_OPTION": lambda ins, out, arrays: (setattr(ins, "eps_set", 1), setattr(ins, "eps", -1.0)),
    "TRM_E_NULL_POINTER": lambda ins, out, arrays: setattr(ins.reward, "data", None),
}


@pytest.mark.parametrize("name", sorted(GROUP_BREAKS))
def test_group_advantages_entry_point_statuses(name):
    from trmask import _ffi
    ids, rewards, adv, inputs, out = _group_call()
    GROUP_BREAKS[name](inputs, out, (ids, rewards, adv))
    status = _ffi.lib.trm_group_advantages(ctypes.byref(inputs), ctypes.byref(out))
    assert _ffi.lib.trm_status_name(status).decode() == name
    assert (adv == 7).all()
    for extra in ("singleton", "no_std_normalization", "reserved2"):
        ids, rewards, adv, inputs, out = _group_call()
        setattr(inputs, extra, 5)
        assert _ffi.lib.trm_group_advantages(ctypes.byref(inputs), ctypes.byref(out)) == 16  # TRM_E_BAD_OPTION


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_rules_are_bit_identical_for_any_thread_count(threads):
    rng = np.random.default_rng(4)
    lt, lr, mask = _random_batch(rng, 64, 4200, special=True)  # above the automatic thread threshold
    adv = rng.normal(size=64)
    kwargs = dict(criteria="max:bkl_sym<=0.01,mean:btv<=0.05,0.999<=geo:ratio<=1.001,token:bdiff<=0.01", metrics=True,
                  advantages=adv, advantage_rule=trmask.AdvantageRule("bkl", low=1e-4, high=1e-4, sequence_limit=1e-3))
    one = trmask.trust_region_mask(lt, lr, mask, threads=1, **kwargs)
    many = trmask.trust_region_mask(lt, lr, mask, threads=threads, **kwargs)
    for a, b in zip(one.row_stats, many.row_stats):
        assert a.tobytes() == b.tobytes()
    assert one.keep_token.tobytes() == many.keep_token.tobytes()
    assert one.rejected == many.rejected and one.advantage_counts == many.advantage_counts
    assert str(one.metrics) == str(many.metrics)
