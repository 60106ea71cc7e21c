"""trmask.verl against verl 0.9.1 itself (differential, Hypothesis): every rejection option and
threshold form, IS level x TIS/IcePop x batch normalisation, the combined call, bool/int/float
masks (binary and weighted), NaN and +-inf in padding and in valid tokens, empty rows, B = 0, no
valid token. Decisions must be identical except at float32 ties (a decision that flips when the
thresholds move by 1e-5 relative: such examples are set aside); metrics within 1e-5 relative.
Skips without verl (python/verl-test/install)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from verl_reference import assert_metrics, assert_same_grid, helper, outcome, same_refusal, torch

import trmask.verl as drop

OPTIONS = sorted(drop.REJECTION_OPTIONS)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.filter_too_much])


# ---- inputs -------------------------------------------------------------------------------------

MASK_KINDS = ("bool", "int64", "int64_weighted", "float32", "float32_weighted")


@st.composite
def batches(draw, allow_empty_batch=True):
    """(logp_train, logp_roll, response_mask) as float32 / mask tensors [B, T], with empty rows,
    special values in valid tokens and in padding."""
    rows = draw(st.integers(0 if allow_empty_batch else 1, 6))
    cols = draw(st.integers(0, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1e-3, 0.05, 0.3, 2.0, 30.0]))
    special_rate = draw(st.sampled_from([0.0, 0.0, 0.1]))
    mask_kind = draw(st.sampled_from(MASK_KINDS))
    rng = np.random.default_rng(seed)
    logp_roll = -np.abs(rng.normal(0, 2, (rows, cols))).astype(np.float32)
    logp_train = (logp_roll + rng.normal(0, scale, (rows, cols))).astype(np.float32)
    specials = np.array([np.nan, np.inf, -np.inf, 25.0, -25.0], dtype=np.float32)
    hit = rng.random((rows, cols)) < special_rate
    logp_train[hit] = rng.choice(specials, hit.sum())
    lengths = np.zeros(rows, dtype=np.int64)  # a fifth of the rows empty
    if cols:
        lengths = np.where(rng.random(rows) < 0.2, 0, rng.integers(1, cols + 1, rows))
    valid = np.arange(cols)[None, :] < lengths[:, None]
    if mask_kind == "float32_weighted":
        mask = np.where(valid, rng.choice(np.array([0.5, 1.0, 2.0, 0.25], dtype=np.float32), (rows, cols)), 0)
    elif mask_kind == "int64_weighted":
        mask = np.where(valid, rng.choice(np.array([1, 2, 3]), (rows, cols)), 0)
    else:
        mask = valid
    mask = torch.from_numpy(np.ascontiguousarray(mask)).to({"bool": torch.bool, "int64": torch.int64,
                                                            "int64_weighted": torch.int64, "float32": torch.float32,
                                                            "float32_weighted": torch.float32}[mask_kind])
    return torch.from_numpy(logp_train), torch.from_numpy(logp_roll), mask


def k1_spec(draw, scale=1.0):
    if draw(st.booleans()):
        lower = draw(st.sampled_from([0.3, 0.5, 0.8, 0.9, 0.99, 1.0]))
        upper = draw(st.sampled_from([1.0, 1.01, 1.2, 1.8, 2.0, 5.0]))
        return lambda s: f"{lower * s!r}_{upper * s!r}"
    u = draw(st.sampled_from([1.0, 1.5, 2.0, 10.0]))
    return lambda s: repr(u * s)


def k23_spec(draw):
    value = draw(st.sampled_from([1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0]))
    return lambda s: repr(value * s)


@st.composite
def rs_configs(draw):
    """(rollout_rs, threshold(scale)): 1-3 options (duplicates allowed), thresholds one per
    distinct option or one shared, as strings or a number; `scale` moves every bound."""
    names = draw(st.lists(st.sampled_from(OPTIONS), min_size=1, max_size=3))
    distinct = list(dict.fromkeys(names))
    rollout_rs = ",".join(names) if draw(st.booleans()) else " , ".join(names)
    if draw(st.booleans()) or len(distinct) == 1:
        # One shared threshold: a number u (k1 reads 1/u_u, k2/k3 read u).
        u = draw(st.sampled_from([1.0, 1.5, 2.0, 10.0]))
        as_number = draw(st.booleans())
        return rollout_rs, (lambda s: u * s) if as_number else (lambda s: repr(u * s))
    specs = [k1_spec(draw) if name.endswith("k1") else k23_spec(draw) for name in distinct]
    return rollout_rs, lambda s: ",".join(spec(s) for spec in specs)


@st.composite
def is_configs(draw):
    level = draw(st.sampled_from(["token", "sequence"]))
    if draw(st.booleans()):
        lower = draw(st.sampled_from([0.1, 0.5, 0.9]))
        upper = draw(st.sampled_from([1.1, 2.0, 5.0]))
        threshold = lambda s: f"{lower * s!r}_{upper * s!r}"  # IcePop
    else:
        cap = draw(st.sampled_from([1.0, 1.5, 2.0, 10.0]))
        as_number = draw(st.booleans())
        threshold = (lambda s: cap * s) if as_number else (lambda s: repr(cap * s))  # TIS
    return level, threshold, draw(st.booleans())


def no_tie(call, make_kwargs, mask_index: int) -> bool:
    """verl's mask (item `mask_index` of its result) is the same with every bound 1e-5 relative
    lower and higher: no float32 tie at a threshold."""
    low, high = outcome(call, **make_kwargs(1 - 1e-5)), outcome(call, **make_kwargs(1 + 1e-5))
    if low[0] != "ok" or high[0] != "ok":
        return low[0] == high[0]
    return bool(torch.equal(low[1][mask_index], high[1][mask_index]))


def tolerances(metrics: dict, log_ratio, mask) -> dict:
    """Absolute allowance per metric key for verl's float32 arithmetic: its sums lose about
    n * 2^-24 of the terms' size (see verl_reference), and its token-level `_std` is
    sqrt(E[c^2] - E[c]^2) in float32, which is noise of about sqrt(2^-24) * |c| when the spread
    is small against the values (c: the statistic clamped to the option's bounds, so the larger of
    the option's |max| and |min| bounds it); its `seq_std` inherits the rounding of the per-row
    float32 statistics it spreads."""
    valid = (mask != 0) & torch.isfinite(log_ratio)
    count = max(1, int(valid.sum()))
    magnitude = float(log_ratio[valid].abs().clamp(max=20).mean()) if valid.any() else 0.0
    allowance = 4 * count * 2.0**-24 * (1.0 + magnitude)
    columns = log_ratio.shape[-1] if log_ratio.dim() else 1
    result = {}
    for key in metrics:
        result[key] = allowance
        if key.endswith("seq_std"):
            # The spread of verl's per-row float32 statistics: each is a float32 sum of up to
            # `columns` terms, off by about columns * 2^-24 of its size (k3 reaches e^20 there),
            # which moves their std by as much.
            result[key] = allowance + 4 * columns * 2.0**-24 * extreme(metrics, key[:-len("std")])
        elif key.endswith("_std"):
            result[key] = allowance + 4 * 2.0**-12 * extreme(metrics, key[:-len("std")])
        elif key.endswith("chi2_seq") and valid.any():
            # verl's row sum s of log-ratios is a float32 sum, off by up to columns * 2^-24 of the
            # row's sum of |log-ratio|, and exp(2 s) doubles that into a relative error of its value
            # (1.6e15 from s = 17.5 with log-ratios near 50 missed 1e-5 relative by that alone).
            row_size = float(torch.where(valid, log_ratio.abs().double(), 0.0).sum(-1).max())
            result[key] = allowance + 2 * columns * 2.0**-24 * row_size * abs(metrics[key] + 1)
    return result


def extreme(metrics: dict, prefix: str) -> float:
    """The larger finite magnitude of the metrics ``prefix + "max"`` and ``prefix + "min"``."""
    return max((abs(metrics.get(prefix + end, 0.0)) for end in ("max", "min")
                if math.isfinite(metrics.get(prefix + end, 0.0))), default=0.0)


# ---- rejection ----------------------------------------------------------------------------------

@SETTINGS
@given(batch=batches(), config=rs_configs())
def test_rejection_mask_matches_verl(batch, config):
    logp_train, logp_roll, mask = batch
    log_ratio = logp_train - logp_roll
    rollout_rs, threshold = config

    def kwargs(scale):
        return dict(log_ratio=log_ratio, response_mask=mask, rollout_rs=rollout_rs, rollout_rs_threshold=threshold(scale))

    theirs = outcome(helper.compute_rollout_rejection_mask, **kwargs(1.0))
    ours = outcome(drop.compute_rollout_rejection_mask, **kwargs(1.0))
    if theirs[0] == "error" and isinstance(theirs[1], IndexError):
        # Rows of zero columns: verl's seq_max takes torch's max over an empty dimension and
        # crashes; trmask refuses the batch as having no valid token (docs/verl.md).
        assert log_ratio.shape[1] == 0 and isinstance(ours[1], drop.TrmaskError)
        return
    if not same_refusal(theirs, ours):
        return
    assume(no_tie(helper.compute_rollout_rejection_mask, kwargs, 0))
    (our_mask, our_metrics), (their_mask, their_metrics) = ours[1], theirs[1]
    assert_same_grid(our_mask, their_mask, "modified_response_mask", exact=True)
    assert_metrics(our_metrics, their_metrics, tolerances(their_metrics, log_ratio, mask), rows=mask.shape[0])


# ---- weights ------------------------------------------------------------------------------------

@SETTINGS
@given(batch=batches(), config=is_configs())
def test_correction_weights_match_verl(batch, config):
    logp_train, logp_roll, mask = batch
    log_ratio = logp_train - logp_roll
    level, threshold, normalize = config
    kwargs = dict(log_ratio=log_ratio, response_mask=mask, rollout_is=level, rollout_is_threshold=threshold(1.0),
                  rollout_is_batch_normalize=normalize)
    theirs = outcome(helper.compute_rollout_correction_weights, **kwargs)
    ours = outcome(drop.compute_rollout_correction_weights, **kwargs)
    if theirs[0] == "error" and isinstance(theirs[1], ZeroDivisionError):
        # verl divides 1 by a zero mean square when IcePop zeroes every weight; trmask returns an
        # effective sample size of +inf (docs/verl.md).
        assert ours[0] == "ok" and ours[1][1]["rollout_is_eff_sample_size"] == math.inf
        return
    if not same_refusal(theirs, ours):
        return
    (our_weights, our_metrics), (their_weights, their_metrics) = ours[1], theirs[1]
    assert_same_grid(our_weights, their_weights, "rollout_is_weights", exact=False)
    assert_metrics(our_metrics, their_metrics, tolerances(their_metrics, log_ratio, mask), rows=mask.shape[0])


# ---- the combined call and the off-policy metrics -----------------------------------------------

@SETTINGS
@given(batch=batches(), is_config=st.none() | is_configs(), rs_config=st.none() | rs_configs())
def test_combined_call_matches_verl(batch, is_config, rs_config):
    logp_train, logp_roll, mask = batch
    level, is_threshold, normalize = is_config or (None, lambda s: 2.0, False)
    rollout_rs, rs_threshold = rs_config or (None, lambda s: None)

    def kwargs(scale):
        return dict(old_log_prob=logp_train, rollout_log_prob=logp_roll, response_mask=mask, rollout_is=level,
                    rollout_is_threshold=is_threshold(1.0), rollout_is_batch_normalize=normalize,
                    rollout_rs=rollout_rs, rollout_rs_threshold=rs_threshold(scale))

    theirs = outcome(helper.compute_rollout_correction_and_rejection_mask, **kwargs(1.0))
    ours = outcome(drop.compute_rollout_correction_and_rejection_mask, **kwargs(1.0))
    if theirs[0] == "error" and isinstance(theirs[1], ZeroDivisionError):  # see the weights test
        assert ours[0] == "ok" and ours[1][2]["rollout_corr/rollout_is_eff_sample_size"] == math.inf
        return
    if not same_refusal(theirs, ours):
        return
    if rollout_rs is not None:
        assume(no_tie(helper.compute_rollout_correction_and_rejection_mask, kwargs, 1))
    (our_weights, our_mask, our_metrics), (their_weights, their_mask, their_metrics) = ours[1], theirs[1]
    assert (our_weights is None) == (their_weights is None)
    if their_weights is not None:
        assert type(our_weights) is type(their_weights)
        assert_same_grid(our_weights.batch["rollout_is_weights"], their_weights.batch["rollout_is_weights"],
                         "rollout_is_weights", exact=False)
    assert_same_grid(our_mask, their_mask, "modified_response_mask", exact=True)
    assert_metrics(our_metrics, their_metrics, tolerances(their_metrics, logp_train - logp_roll, mask), rows=mask.shape[0])


@SETTINGS
@given(batch=batches(), with_rollout=st.booleans())
def test_offpolicy_metrics_match_verl(batch, with_rollout):
    logp_train, logp_roll, mask = batch
    args = (logp_train, logp_roll if with_rollout else None, mask)
    theirs = outcome(helper.compute_offpolicy_metrics, *args)
    ours = outcome(drop.compute_offpolicy_metrics, *args)
    if not same_refusal(theirs, ours):
        return
    assert_metrics(ours[1], theirs[1], tolerances(theirs[1], logp_train - logp_roll, mask), rows=mask.shape[0])


# ---- refusals -----------------------------------------------------------------------------------

REFUSED_RS = [
    (None, "2.0"), (3, "2.0"), ("", "2.0"), ("token_k4", "2.0"), ("token_k2", None), ("token_k2", [2.0]),
    ("token_k2", "0"), ("token_k2", "-1"), ("token_k2", "0.1_0.2"), ("token_k2", "abc"), ("token_k2", ","),
    ("token_k1", "0.5"), ("token_k1", "0"), ("token_k1", "2_1"), ("token_k1", "0_1"), ("token_k1", "a_1"),
    ("token_k1", "inf"), ("token_k1,token_k2", "1,2,3"), ("seq_max_k1", "2"), ("token_k2", True),
]


@pytest.mark.parametrize("rollout_rs,threshold", REFUSED_RS)
def test_rejection_refusals_match_verl(rollout_rs, threshold):
    log_ratio = torch.zeros(2, 3)
    mask = torch.ones(2, 3)
    theirs = outcome(helper.compute_rollout_rejection_mask, log_ratio, mask, rollout_rs, threshold)
    ours = outcome(drop.compute_rollout_rejection_mask, log_ratio, mask, rollout_rs, threshold)
    assert theirs[0] == "error"
    same_refusal(theirs, ours)


REFUSED_IS = [("geometric", 2.0), (None, 2.0), ("token", True), ("token", [2.0]), ("token", ""), ("token", "x"),
              ("token", "0"), ("token", -1.0), ("token", "0_2"), ("token", "3_2"), ("token", "a_2")]


@pytest.mark.parametrize("level,threshold", REFUSED_IS)
def test_weight_refusals_match_verl(level, threshold):
    args = (torch.zeros(2, 3), torch.ones(2, 3), level, threshold)
    theirs = outcome(helper.compute_rollout_correction_weights, *args)
    ours = outcome(drop.compute_rollout_correction_weights, *args)
    assert theirs[0] == "error"
    same_refusal(theirs, ours)


def test_empty_batch_returns_the_mask_itself_like_verl():
    mask = torch.ones(0, 4)
    theirs = helper.compute_rollout_rejection_mask(torch.zeros(0, 4), mask, "token_k4", "2")
    ours = drop.compute_rollout_rejection_mask(torch.zeros(0, 4), mask, "token_k4", "2")
    assert theirs[0] is mask and ours[0] is mask and ours[1] == theirs[1] == {}


def test_nan_threshold_rejects_everything_like_verl():
    log_ratio, mask = torch.zeros(2, 3), torch.ones(2, 3)
    for option in ("token_k2", "seq_mean_k3", "token_k1"):
        theirs, _ = helper.compute_rollout_rejection_mask(log_ratio, mask, option, "nan")
        ours, _ = drop.compute_rollout_rejection_mask(log_ratio, mask, option, "nan")
        assert not theirs.any() and torch.equal(ours, theirs)


def test_icepop_zeroing_every_weight_gives_infinite_ess_where_verl_divides_by_zero():
    log_ratio, mask = torch.full((2, 3), 3.0), torch.ones(2, 3)
    with pytest.raises(ZeroDivisionError):
        helper.compute_rollout_correction_weights(log_ratio, mask, "token", "0.5_2.0")
    weights, metrics = drop.compute_rollout_correction_weights(log_ratio, mask, "token", "0.5_2.0")
    assert not weights.any() and metrics["rollout_is_eff_sample_size"] == math.inf


def test_parsed_configurations_are_memoised_and_refusals_kept():
    """A trainer passes the same configuration every step: it is parsed once. Refusals are never
    cached, ``True`` and ``1`` stay apart, and unhashable arguments are parsed (and refused) as
    before."""
    from trmask.integrations.verl import _config

    first = _config.parse_rejections("token_k1,seq_max_k2", "0.5_2.0,0.1")
    assert _config.parse_rejections("token_k1,seq_max_k2", "0.5_2.0,0.1") is first
    assert _config.parse_is_rule("token", 1).upper == 1.0
    for _ in range(2):
        with pytest.raises(_config.VerlTypeError):
            _config.parse_is_rule("token", True)
        with pytest.raises(_config.VerlTypeError):
            _config.parse_rejections("token_k1", [0.5])
