"""Rows split across context-parallel shards (SPEC §3, partial rows): random rows cut at random
points into 2-4 shards (some empty), each shard scanned as its own batch (padded with lengths,
padded with a mask, packed), merged in a random order, decided; against the unsharded
`trust_region_mask` (counts, max, min, keep decisions and rejections exactly) and the float64
reference (sums and means within SPEC §3's tolerance, conftest.py). Also NaN policies, empty rows,
reject_empty, dtypes, torch, and every status of the new entry points straight through ctypes.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trmask
from conftest import EXP_ESTIMATORS, SUM_RTOL, TOKEN_RTOL, report
from test_status_codes import HEADER_STATUS
from trmask import Criterion, RowPartials, TrmaskError, _ffi
from trmask.reference import estimator_values, reference_mask, reference_merge, reference_partials
from trmask.reference._batch import prepare_batch

lib = _ffi.lib

ROW_CRITERIA = [
    Criterion("max", "k2", hi=0.1),
    Criterion("mean", "k3", hi=0.002),
    Criterion("max", "abs", hi=0.3),
    Criterion("min", "delta", lo=math.log(0.1)),
    Criterion("sum", "delta", lo=-math.log(2), hi=math.log(2)),
    Criterion("mean", "delta", lo=-0.01, hi=0.01),
    Criterion("mean", "tv", hi=0.05),
    Criterion("max", "ratio", hi=2.0),
    Criterion("min", "k3", hi=1e-4),
    Criterion("min", "tv", hi=0.01),
    Criterion("max", "k1", hi=1.0),
    Criterion("min", "ratio", lo=0.5),
    Criterion("sum", "k2", hi=0.5),
    Criterion("sum", "abs", hi=2.0),
]
SHARD_LAYOUTS = ("lengths", "mask", "packed")


def whole_rows(seed, rows, cols, special, mask_kind):
    """Unsharded padded rows: log-probs (float32) and an optional bool mask."""
    rng = np.random.default_rng(seed)
    lr = -rng.exponential(1.0, (rows, cols))
    d = rng.normal(0.0, 0.02, (rows, cols))
    big = rng.random((rows, cols)) < 0.05
    d[big] = rng.normal(0.0, 2.0, int(big.sum()))
    if special:
        pick = rng.random((rows, cols))
        d[pick < 0.03] = np.nan
        d[(pick >= 0.03) & (pick < 0.05)] = np.inf
        d[(pick >= 0.05) & (pick < 0.07)] = -np.inf
    with np.errstate(invalid="ignore"):
        lt = (lr + d).astype(np.float32)
    lt[np.isnan(d)] = np.nan
    mask = None
    if mask_kind == "bool":
        mask = rng.random((rows, cols)) < 0.8
        if rows:
            mask[rng.random(rows) < 0.2] = False
    return {"logp_train": lt, "logp_roll": lr.astype(np.float32)}, mask


def cut(rng, rows, cols, shards):
    """Per shard, per row, the span `(start, stop)` of the row's tokens it holds: each row cut at
    `shards - 1` random points (equal points make empty shards)."""
    points = np.sort(rng.integers(0, cols + 1, size=(rows, shards - 1)), axis=1)
    edges = np.concatenate([np.zeros((rows, 1), np.int64), points, np.full((rows, 1), cols)], axis=1)
    return [[(int(edges[i, j]), int(edges[i, j + 1])) for i in range(rows)] for j in range(shards)]


def shard_inputs(rng, spans, arrays, mask, layout):
    """One shard as its own batch of the same rows: padded and cut by `lengths` (with NaN garbage
    and a random mask past each row's end), padded and cut by the mask (NaN garbage), or packed."""
    rows = len(spans)
    lengths = np.array([stop - start for start, stop in spans], np.int64)
    if layout == "packed":
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        data = {name: np.concatenate([a[i, s:e] for i, (s, e) in enumerate(spans)] + [a[:0].reshape(-1)])
                for name, a in arrays.items()}
        packed_mask = None if mask is None else np.concatenate([mask[i, s:e] for i, (s, e) in enumerate(spans)] + [mask[:0].reshape(-1)])
        return dict(data, mask=packed_mask, offsets=offsets)
    width = int(lengths.max(initial=0)) + int(rng.integers(0, 3))
    data = {}
    for name, a in arrays.items():
        padded = np.full((rows, width), np.nan, a.dtype)
        for i, (s, e) in enumerate(spans):
            padded[i, : e - s] = a[i, s:e]
        data[name] = padded
    inside = np.arange(width)[None, :] < lengths[:, None]
    shard_mask = np.ones((rows, width), bool) if mask is None else np.zeros((rows, width), bool)
    if mask is not None:
        for i, (s, e) in enumerate(spans):
            shard_mask[i, : e - s] = mask[i, s:e]
    if layout == "lengths":
        shard_mask = np.where(inside, shard_mask, rng.random((rows, width)) < 0.5)
        return dict(data, mask=shard_mask, lengths=lengths)
    return dict(data, mask=shard_mask & inside)


def sharded(seed, arrays, mask, shards, layout, estimators, **options):
    """Each shard's partials, merged in a random order."""
    rng = np.random.default_rng(seed + 1)
    rows, cols = arrays["logp_train"].shape
    parts = []
    for spans in cut(rng, rows, cols, shards):
        shard_layout = layout if layout != "mixed" else SHARD_LAYOUTS[int(rng.integers(0, 3))]
        parts.append(trmask.row_partials(**shard_inputs(rng, spans, arrays, mask, shard_layout), estimators=estimators,
                                         **options))
    order = rng.permutation(len(parts))
    return trmask.merge_partials(*[parts[k] for k in order]), parts


def sum_tolerance(arrays, mask, estimator, agg, count, clamp, policy):
    """SPEC §3's tolerance of a row sum (or mean) against the float64 reference."""
    batch = prepare_batch(arrays["logp_train"], arrays["logp_roll"], None, None, mask, None, None, policy)
    terms = np.abs(estimator_values(estimator, batch.x, clamp=clamp))
    terms = np.where(batch.counted & np.isfinite(terms), terms, 0.0)
    sums = np.array([terms[s:e].sum() for s, e in zip(batch.starts, batch.stops)])
    tol = (SUM_RTOL + (TOKEN_RTOL if estimator in EXP_ESTIMATORS else 0.0)) * sums + 1e-30
    return tol / np.maximum(np.asarray(count), 1) if agg == "mean" else tol


def same(got, want, what):
    """Equal as numbers, NaN matching NaN (the sign of a zero extreme is not compared)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    ok = (got == want) | (np.isnan(got) & np.isnan(want))
    assert ok.all(), f"{what}: got {got[~ok][:5]}, want {want[~ok][:5]} at {np.flatnonzero(~ok)[:5]}"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 8), cols=st.integers(0, 90), shards=st.integers(2, 4),
       layout=st.sampled_from(SHARD_LAYOUTS + ("mixed",)), mask_kind=st.sampled_from(("none", "bool")),
       special=st.booleans(), policy=st.sampled_from(("reject", "skip", "zero")), clamp=st.sampled_from((None, 0.5, 20.0)),
       reject_empty=st.booleans(),
       picks=st.lists(st.integers(0, len(ROW_CRITERIA) - 1), min_size=1, max_size=4, unique=True))
def test_sharded_rows_decide_as_whole_rows(seed, rows, cols, shards, layout, mask_kind, special, policy, clamp,
                                           reject_empty, picks):
    arrays, mask = whole_rows(seed, rows, cols, special, mask_kind)
    criteria = [ROW_CRITERIA[i] for i in picks]
    estimators = tuple(dict.fromkeys(c.estimator for c in criteria))
    options = dict(nan_policy=policy, clamp=clamp)
    merged, parts = sharded(seed, arrays, mask, shards, layout, estimators, **options)
    whole = trmask.trust_region_mask(**arrays, mask=mask, criteria=criteria, reject_empty=reject_empty, **options)
    decision = trmask.keep_from_partials(merged, criteria, reject_empty=reject_empty)
    ref = reference_mask(**arrays, mask=mask, criteria=[(c.agg, c.estimator, c.lo, c.hi) for c in criteria],
                         reject_empty=reject_empty, **options)

    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_array_equal(merged.nonfinite, whole.nonfinite)
    np.testing.assert_array_equal(decision.count, whole.count)
    np.testing.assert_array_equal(decision.nonfinite, whole.nonfinite)
    borderline = np.zeros(rows, bool)
    for column, c in enumerate(criteria):
        got = np.asarray(decision.row_stats[column], np.float64)
        if c.agg in ("max", "min"):
            same(got, whole.row_stats[column], f"{c} ({layout}, {shards} shards)")
            continue
        tol = sum_tolerance(arrays, mask, c.estimator, c.agg, whole.count, clamp, policy)
        report(got, ref["row_stat"][column], tol, f"{c} ({layout}, {shards} shards)")
        with np.errstate(invalid="ignore"):
            # Both answers are within `tol` of the reference: either may fall on either side of a bound.
            borderline |= (np.abs(ref["row_stat"][column] - c.lo) <= 2 * tol) | (np.abs(ref["row_stat"][column] - c.hi) <= 2 * tol)
    decided = ~borderline
    np.testing.assert_array_equal(np.asarray(decision.keep_row)[decided], np.asarray(whole.keep_row)[decided])
    if not borderline.any():
        assert decision.rejected == whole.rejected

    # The merged partials themselves: counts, extremes exactly those of the whole rows; sums within
    # SPEC §3 of the float64 reference, and the reference's own merge of its shard partials agrees.
    stats = trmask.sequence_stats(**arrays, mask=mask, estimators=estimators, **options)
    ref_stats = reference_partials(**arrays, mask=mask, estimators=estimators, **options)
    for k, estimator in enumerate(estimators):
        same(np.asarray(merged.max)[:, k], stats.stats[estimator]["max"], f"max {estimator}")
        same(np.asarray(merged.min)[:, k], stats.stats[estimator]["min"], f"min {estimator}")
        tol = sum_tolerance(arrays, mask, estimator, "sum", whole.count, clamp, policy)
        report(np.asarray(merged.sum)[:, k], ref_stats["stats"][estimator]["sum"], tol, f"sum {estimator}")


def test_reference_merge_agrees_with_the_library():
    """The float64 oracle's shard partials and merge (reference_partials, reference_merge) against
    the library's, shard by shard, on rows with NaN and empty shards."""
    arrays, mask = whole_rows(11, 6, 60, True, "bool")
    rng = np.random.default_rng(12)
    acc_ref = None
    parts = []
    for spans in cut(rng, 6, 60, 3):
        inputs = shard_inputs(rng, spans, arrays, mask, "packed")
        parts.append(trmask.row_partials(**inputs, estimators=("k3", "delta"), nan_policy="reject"))
        shard_ref = reference_partials(**inputs, estimators=("k3", "delta"), nan_policy="reject")
        acc_ref = shard_ref if acc_ref is None else reference_merge(acc_ref, shard_ref)
    merged = trmask.merge_partials(*parts)
    np.testing.assert_array_equal(merged.count, acc_ref["count"])
    for k, estimator in enumerate(("k3", "delta")):
        for what in ("max", "min"):
            got, want = np.asarray(getattr(merged, what))[:, k], acc_ref["stats"][estimator][what]
            report(got, want, (np.abs(want) * TOKEN_RTOL if estimator == "k3" else 0) + 1.5e-45, f"{what} {estimator}")


def test_default_criteria_are_the_papers_and_need_k2_and_k3():
    arrays, mask = whole_rows(3, 9, 200, False, "bool")
    arrays["logp_train"][2, 150] += 1.0  # a spike: TRM-Max rejects row 2
    merged, _ = sharded(3, arrays, mask, 3, "mixed", ("k2", "k3"))
    decision = trmask.keep_from_partials(merged)
    whole = trmask.trust_region_mask(**arrays, mask=mask)
    assert decision.criteria == trmask.DEFAULT_CRITERIA
    np.testing.assert_array_equal(decision.keep_row, whole.keep_row)
    assert not decision.keep_row[2] and decision.rejected == whole.rejected
    assert "kept" in repr(decision) and "k2" in repr(merged)
    only_k3 = trmask.row_partials(**arrays, mask=mask, estimators="k3")
    with pytest.raises(TrmaskError, match=r"needs the 'k2' partials, but these hold \('k3',\)"):
        trmask.keep_from_partials(only_k3)


def test_empty_rows_and_reject_empty():
    """A row empty in one shard takes the other's values (the identity); a row empty in every
    shard has count 0 and statistics 0, kept unless reject_empty (no criterion charged)."""
    lt = np.array([[-1.0, -1.2, -0.5], [-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]], np.float32)
    lr = np.array([[-1.1, -1.0, -0.45], [-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]], np.float32)
    mask_a = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
    mask_b = np.array([[0, 0, 1], [1, 1, 0], [0, 0, 0]], bool)
    a = trmask.row_partials(lt, lr, mask_a, estimators=("delta", "k2"))
    b = trmask.row_partials(lt, lr, mask_b, estimators=("delta", "k2"))
    assert list(a.count) == [2, 0, 0] and list(b.count) == [1, 2, 0]
    assert (np.asarray(a.sum)[1:] == 0).all() and (np.asarray(a.max)[1:] == 0).all()
    merged = trmask.merge_partials(a, b)
    whole = trmask.sequence_stats(lt, lr, mask_a | mask_b, estimators=("delta", "k2"))
    same(np.asarray(merged.max)[:, 0], whole.stats["delta"]["max"], "max delta")
    same(np.asarray(merged.min)[:, 0], whole.stats["delta"]["min"], "min delta")  # not min(..., 0) of the empty side
    criteria = "max:k2<=0.1,-0.5<=mean:delta<=0.5"
    kept = trmask.keep_from_partials(merged, criteria)
    rejected = trmask.keep_from_partials(merged, criteria, reject_empty=True)
    assert list(kept.keep_row) == [True, True, True]
    assert list(rejected.keep_row) == [True, True, False] and rejected.rejected == (0, 0)
    assert [float(s[2]) for s in rejected.row_stats] == [0.0, 0.0]
    empty = RowPartials(("delta", "k2"), np.zeros(3, np.int64), np.zeros(3, np.int64), np.zeros((3, 2)),
                        np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32))
    for x, y in ((merged, trmask.merge_partials(merged, empty)), (merged, trmask.merge_partials(empty, merged))):
        for name in ("count", "nonfinite", "sum", "max", "min"):
            assert np.asarray(getattr(x, name)).tobytes() == np.asarray(getattr(y, name)).tobytes(), name


@pytest.mark.parametrize("policy", ["reject", "skip", "zero"])
def test_nan_in_one_shard(policy):
    """reject: a NaN in any shard makes the merged row's statistics NaN and fails every criterion
    (fail closed); skip: the NaN token is not counted; zero: it counts as delta = 0."""
    lt = np.full((2, 6), -1.0, np.float32)
    lr = np.full((2, 6), -1.0, np.float32)
    lt[0, 4] = np.nan
    parts = [trmask.row_partials(lt[:, :3], lr[:, :3], nan_policy=policy), trmask.row_partials(lt[:, 3:], lr[:, 3:], nan_policy=policy)]
    merged = trmask.merge_partials(*parts)
    whole = trmask.trust_region_mask(lt, lr, nan_policy=policy)
    decision = trmask.keep_from_partials(merged)
    np.testing.assert_array_equal(decision.keep_row, whole.keep_row)
    assert decision.rejected == whole.rejected
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_array_equal(merged.nonfinite, [1, 0])
    if policy == "reject":
        assert np.isnan(np.asarray(merged.max)[0]).all() and np.isnan(np.asarray(merged.sum)[0]).all()
        assert list(decision.keep_row) == [False, True] and decision.rejected == (1, 1)
        # NaN stays NaN whichever side it is on, also against an extreme of the other side.
        other = trmask.row_partials(lt[:, :3] + 0.5, lr[:, :3], nan_policy=policy)
        assert np.isnan(np.asarray(trmask.merge_partials(other, parts[1]).max)[0]).all()
    else:
        assert list(decision.keep_row) == [True, True]
        assert list(merged.count) == ([5, 6] if policy == "skip" else [6, 6])


def test_values_source_and_dtypes():
    """Sharded exact TRM (estimator `value`) and a bfloat16 trainer against a float32 rollout."""
    rng = np.random.default_rng(5)
    kl = np.abs(rng.normal(0, 0.002, (4, 64))).astype(np.float32)
    merged = trmask.merge_partials(trmask.row_partials(values=kl[:, :10]), trmask.row_partials(values=kl[:, 10:]))
    assert merged.estimators == ("value",)
    decision = trmask.keep_from_partials(merged, trmask.DEFAULT_EXACT_CRITERIA)
    np.testing.assert_array_equal(decision.keep_row, trmask.trust_region_mask(values=kl, criteria=trmask.DEFAULT_EXACT_CRITERIA).keep_row)
    torch = pytest.importorskip("torch")
    lr = torch.from_numpy(-rng.exponential(1.0, (3, 50)).astype(np.float32))
    lt = (lr + torch.from_numpy(rng.normal(0, 0.05, (3, 50)).astype(np.float32))).to(torch.bfloat16)
    parts = [trmask.row_partials(lt[:, :17], lr[:, :17]), trmask.row_partials(lt[:, 17:], lr[:, 17:])]
    merged = trmask.merge_partials(*parts)
    assert all(isinstance(getattr(merged, n), torch.Tensor) for n in ("count", "nonfinite", "sum", "max", "min"))
    assert merged.sum.dtype == torch.float64 and merged.max.dtype == torch.float32
    decision = trmask.keep_from_partials(merged)
    assert isinstance(decision.keep_row, torch.Tensor) and decision.keep_row.dtype == torch.bool
    whole = trmask.trust_region_mask(lt, lr)
    np.testing.assert_array_equal(decision.keep_row.numpy(), whole.keep_row.numpy())
    np.testing.assert_array_equal(merged.max[:, 0].numpy(), whole.row_stats[0].numpy())


def test_gathered_arrays_rebuild_partials():
    """Partials sent between ranks as arrays (e.g. all_gather) are rebuilt with RowPartials(...)
    and merge like the originals; strided views of them are read in place."""
    arrays, _ = whole_rows(7, 5, 40, False, "none")
    a = trmask.row_partials(**{k: v[:, :25] for k, v in arrays.items()}, estimators=("k3", "k2"))
    b = trmask.row_partials(**{k: v[:, 25:] for k, v in arrays.items()}, estimators=("k3", "k2"))
    stacked = {n: np.stack([getattr(a, n), getattr(b, n)]) for n in ("count", "nonfinite", "sum", "max", "min")}
    rebuilt = [RowPartials(("k3", "k2"), *(stacked[n][r] for n in ("count", "nonfinite", "sum", "max", "min"))) for r in range(2)]
    want = trmask.merge_partials(a, b)
    got = trmask.merge_partials(*rebuilt)
    transposed = RowPartials(("k3", "k2"), a.count, a.nonfinite, np.asfortranarray(a.sum), np.asfortranarray(a.max),
                             np.asfortranarray(a.min))
    for x in (got, trmask.merge_partials(transposed, b)):
        for name in ("count", "nonfinite", "sum", "max", "min"):
            np.testing.assert_array_equal(getattr(x, name), getattr(want, name))
    assert rebuilt[0].column("k2") == 1
    with pytest.raises(TrmaskError, match="not 'tv'"):
        rebuilt[0].column("tv")


@pytest.mark.parametrize("call,fragment", [
    (lambda a, b: trmask.row_partials(a.lt, a.lr, estimators=("k2", "k2")), "each estimator may appear once"),
    (lambda a, b: trmask.row_partials(a.lt, a.lr, estimators=("k9",)), "`estimators` has 'k9'"),
    (lambda a, b: trmask.row_partials(a.lt, a.lr, estimators=("value",)), "pass it as values="),
    (lambda a, b: trmask.row_partials(values=a.lt, estimators=("k2",)), "use estimator 'value'"),
    (lambda a, b: trmask.row_partials(a.lt, a.lr, nan_policy="drop"), "`nan_policy` is 'drop'"),
    (lambda a, b: trmask.merge_partials(a.p, trmask.row_partials(b.lt, b.lr, estimators=("k3", "k2"))), "same estimators in the same order"),
    (lambda a, b: trmask.merge_partials(a.p, trmask.row_partials(b.lt[:2], b.lr[:2])), "has 2 rows, argument 0 has 3"),
    (lambda a, b: trmask.merge_partials(a.p, "b"), "argument 1 is str; expected RowPartials"),
    (lambda a, b: trmask.merge_partials(a.p, RowPartials(("k2", "k3"), a.p.count, a.p.nonfinite, a.p.sum[:, :1], a.p.max, a.p.min)),
     "`partials 1.sum` has shape (3, 1); expected (3, 2)"),
    (lambda a, b: trmask.merge_partials(a.p, RowPartials(("k2", "k3"), a.p.count, a.p.nonfinite, a.p.sum.astype(np.float32), a.p.max, a.p.min)),
     "`partials 1.sum` has dtype float32; expected float64"),
    (lambda a, b: trmask.merge_partials(a.p, RowPartials(("k2", "k3"), -a.p.count, a.p.nonfinite, a.p.sum, a.p.max, a.p.min)),
     "TRM_E_BAD_PARTIALS"),
    (lambda a, b: trmask.keep_from_partials(a.p, "0.5<=token:ratio<=2"), "judges single tokens"),
    (lambda a, b: trmask.keep_from_partials(a.p, "max:tv<=0.1"), "needs the 'tv' partials"),
    (lambda a, b: trmask.keep_from_partials(a.p, "max:k2<=-1"), "never negative"),
    (lambda a, b: trmask.keep_from_partials(a.lt), "`partials` is ndarray; expected RowPartials"),
    (lambda a, b: RowPartials(("k2", "abs", "k2"), *[None] * 5), "each estimator may appear once"),
])
def test_errors_name_the_argument(call, fragment):
    class Case:
        pass
    a, b = Case(), Case()
    rng = np.random.default_rng(0)
    for case in (a, b):
        case.lr = -rng.exponential(1.0, (3, 8)).astype(np.float32)
        case.lt = (case.lr + rng.normal(0, 0.01, (3, 8))).astype(np.float32)
    a.p = trmask.row_partials(a.lt, a.lr)
    with pytest.raises(TrmaskError) as info:
        call(a, b)
    assert fragment in str(info.value)


# ---- Status codes straight through ctypes (bypassing the Python checks), outputs untouched. ----

def _out(a):
    strides = [s // a.itemsize for s in a.strides]
    return _ffi.Out(a.ctypes.data, *(strides if a.ndim == 2 else strides + [0]))


class Partials:
    """Arrays of partials for 3 rows and estimators (k2, k3), filled with sentinels, and their
    struct; `codes` may be edited before `struct()`."""

    def __init__(self, rows=3, fill=True):
        self.codes = (ctypes.c_int32 * 2)(_ffi.ESTIMATORS["k2"], _ffi.ESTIMATORS["k3"])
        self.count = np.full(rows, 2 if fill else -1, np.int64)
        self.nonfinite = np.full(rows, 0 if fill else -1, np.int64)
        self.sum = np.full((rows, 2), 0.25 if fill else 7.0)
        self.max = np.full((rows, 2), 0.01 if fill else 7.0, np.float32)
        self.min = np.full((rows, 2), 0.0 if fill else 7.0, np.float32)
        self.rows = rows
        self.struct = _ffi.Partials(ctypes.sizeof(_ffi.Partials), 0, rows, 2, self.codes, _out(self.count), _out(self.nonfinite),
                                    _out(self.sum), _out(self.max), _out(self.min))

    def untouched(self):
        return ((self.count == -1).all() and (self.nonfinite == -1).all() and (self.sum == 7).all()
                and (self.max == 7).all() and (self.min == 7).all())


class Compute:
    """A valid trm_partials_compute call; tests break one thing each."""

    def __init__(self):
        from test_status_codes import Call
        self.call = Call()  # its batch: 3 rows of 5 float32 log-probs with a uint8 mask
        self.out = Partials(fill=False)
        self.null = None

    def run(self):
        c = self.call
        return lib.trm_partials_compute(None if self.null == "batch" else ctypes.byref(c.batch),
                                        None if self.null == "options" else ctypes.byref(c.options),
                                        None if self.null == "out" else ctypes.byref(self.out.struct))


COMPUTE_BREAKS = {
    "TRM_E_NULL_POINTER": [
        lambda c: setattr(c, "null", "batch"), lambda c: setattr(c, "null", "options"), lambda c: setattr(c, "null", "out"),
        lambda c: setattr(c.out.struct, "estimators", None),
        lambda c: setattr(c.out.struct.sum, "data", None),
    ],
    "TRM_E_BAD_STRUCT_SIZE": [lambda c: setattr(c.out.struct, "struct_size", 8)],
    "TRM_E_BAD_SIZE": [lambda c: setattr(c.out.struct, "n_estimators", -1), lambda c: setattr(c.out.struct, "n_estimators", 9)],
    "TRM_E_BAD_STRIDE": [lambda c: setattr(c.out.struct.count, "stride_col", 1), lambda c: setattr(c.out.struct.sum, "stride_row", 0)],
    "TRM_E_OUT_OF_RANGE": [lambda c: setattr(c.out.struct.max, "stride_row", 2**61)],
    "TRM_E_ALIASING": [lambda c: setattr(c.out.struct.min, "data", c.out.max.ctypes.data),
                       lambda c: setattr(c.out.struct.count, "data", c.call.lt.ctypes.data)],
    "TRM_E_BAD_ESTIMATOR": [lambda c: c.out.codes.__setitem__(1, 99), lambda c: c.out.codes.__setitem__(1, 2),
                            lambda c: c.out.codes.__setitem__(0, _ffi.ESTIMATORS["value"])],
    "TRM_E_BAD_NAN_POLICY": [lambda c: setattr(c.call.options, "nan_policy", 7)],
    "TRM_E_BAD_OPTION": [lambda c: setattr(c.out.struct, "reserved", 1), lambda c: setattr(c.call.options, "clamp", -1.0)],
    "TRM_E_BAD_INPUTS": [lambda c: setattr(c.call.batch, "log_ratio", c.call.view(c.call.lt))],
    "TRM_E_BAD_PARTIALS": [lambda c: setattr(c.out.struct, "n_rows", 2)],
}


@pytest.mark.parametrize("name,index", [(n, i) for n, b in COMPUTE_BREAKS.items() for i in range(len(b))])
def test_compute_status_writes_nothing(name, index):
    case = Compute()
    COMPUTE_BREAKS[name][index](case)
    assert lib.trm_status_name(case.run()).decode() == name
    assert case.out.untouched() and case.call.untouched()


def test_compute_valid_call():
    case = Compute()
    assert case.run() == 0
    assert list(case.out.count) == [5, 5, 5]


class Merge:
    def __init__(self):
        self.a, self.b, self.out = Partials(), Partials(), Partials(fill=False)
        self.null = None

    def run(self):
        args = [None if self.null == k else ctypes.byref(p.struct) for k, p in (("a", self.a), ("b", self.b), ("out", self.out))]
        return lib.trm_partials_merge(*args)


MERGE_BREAKS = {
    "TRM_E_NULL_POINTER": [lambda m: setattr(m, "null", "a"), lambda m: setattr(m, "null", "out"),
                           lambda m: setattr(m.b.struct.count, "data", None)],
    "TRM_E_BAD_STRUCT_SIZE": [lambda m: setattr(m.b.struct, "struct_size", 4)],
    "TRM_E_BAD_SIZE": [lambda m: setattr(m.a.struct, "n_rows", -1), lambda m: setattr(m.b.struct, "n_estimators", 12)],
    "TRM_E_BAD_STRIDE": [lambda m: setattr(m.a.struct.nonfinite, "stride_col", 3),
                         lambda m: (setattr(m.out.struct.max, "stride_row", 1), setattr(m.out.struct.max, "stride_col", 1))],
    "TRM_E_OUT_OF_RANGE": [lambda m: setattr(m.b.struct.sum, "stride_col", -(2**62))],
    "TRM_E_ALIASING": [
        lambda m: setattr(m.out.struct.sum, "data", m.a.max.ctypes.data),
        # In place is allowed only as the very same array: a shifted view of `a.count` is refused.
        lambda m: (setattr(m.out.struct.count, "data", m.a.count.ctypes.data + 8), setattr(m.out.struct, "n_rows", 2),
                   setattr(m.a.struct, "n_rows", 2), setattr(m.b.struct, "n_rows", 2)),
        lambda m: (setattr(m.out.struct, "count", m.a.struct.count), setattr(m.out.struct, "nonfinite", m.a.struct.count)),
    ],
    "TRM_E_BAD_ESTIMATOR": [lambda m: m.a.codes.__setitem__(0, -1), lambda m: m.out.codes.__setitem__(0, 3)],
    "TRM_E_BAD_OPTION": [lambda m: setattr(m.a.struct, "reserved", 2)],
    "TRM_E_BAD_PARTIALS": [
        lambda m: setattr(m.b.struct, "n_rows", 2),
        lambda m: (setattr(m.b.struct, "n_estimators", 1)),
        lambda m: m.b.codes.__setitem__(1, _ffi.ESTIMATORS["tv"]),
        lambda m: m.a.count.__setitem__(1, -1),
        lambda m: m.b.nonfinite.__setitem__(2, -5),
        lambda m: (m.a.count.__setitem__(0, 2**62), m.b.count.__setitem__(0, 2**62)),
    ],
}


@pytest.mark.parametrize("name,index", [(n, i) for n, b in MERGE_BREAKS.items() for i in range(len(b))])
def test_merge_status_writes_nothing(name, index):
    case = Merge()
    MERGE_BREAKS[name][index](case)
    assert lib.trm_status_name(case.run()).decode() == name
    assert case.out.untouched()


def test_merge_in_place_accumulates():
    """`trm_partials_merge(&acc, &shard, &acc)`: the output may be an input itself."""
    arrays, mask = whole_rows(21, 5, 80, True, "bool")
    rng = np.random.default_rng(22)
    shards = [trmask.row_partials(**shard_inputs(rng, spans, arrays, mask, "packed"), estimators=("k2", "delta"))
              for spans in cut(rng, 5, 80, 4)]
    acc = RowPartials(("k2", "delta"), *(np.array(getattr(shards[0], n)) for n in ("count", "nonfinite", "sum", "max", "min")))
    acc_struct, keep = acc._struct("acc")
    for shard in shards[1:]:
        shard_struct, keep_shard = shard._struct("shard")
        assert lib.trm_partials_merge(ctypes.byref(acc_struct), ctypes.byref(shard_struct), ctypes.byref(acc_struct)) == 0
        # The shard as the second input and the output: also in place.
    want = trmask.merge_partials(*shards)
    for name in ("count", "nonfinite", "sum", "max", "min"):
        assert np.asarray(getattr(acc, name)).tobytes() == np.asarray(getattr(want, name)).tobytes(), name
    other = RowPartials(("k2", "delta"), *(np.array(getattr(shards[1], n)) for n in ("count", "nonfinite", "sum", "max", "min")))
    other_struct, keep_other = other._struct("other")
    first_struct, keep_first = shards[0]._struct("first")
    assert lib.trm_partials_merge(ctypes.byref(first_struct), ctypes.byref(other_struct), ctypes.byref(other_struct)) == 0
    pair = trmask.merge_partials(shards[0], shards[1])
    assert np.asarray(other.sum).tobytes() == np.asarray(pair.sum).tobytes()


class Decide:
    def __init__(self):
        self.p = Partials()
        self.criteria = (_ffi.CCriterion * 2)(_ffi.CCriterion(0, 2, -math.inf, 0.1), _ffi.CCriterion(3, 3, -math.inf, 0.002))
        self.n_criteria = 2
        self.options = _ffi.Options(ctypes.sizeof(_ffi.Options), 0, math.inf, 0, 0)
        self.keep = np.full(3, 7, np.uint8)
        self.count = np.full(3, -1, np.int64)
        self.stats = np.full((3, 2), 7.0, np.float32)
        self.rejected = np.full(2, -1, np.int64)
        self.grid = np.full(3, 7, np.uint8)
        self.weights = np.full(3, 7.0, np.float32)
        self.metrics = _ffi.Metrics(ctypes.sizeof(_ffi.Metrics), 0, -7)
        self.out = _ffi.MaskOut(ctypes.sizeof(_ffi.MaskOut), 0, _out(self.keep), _out(self.count), _ffi.Out(None, 0, 0),
                                _out(self.stats), _ffi.Out(None, 0, 0), self.rejected.ctypes.data)
        self.null = None

    def run(self):
        return lib.trm_partials_decide(None if self.null == "partials" else ctypes.byref(self.p.struct),
                                       None if self.null == "criteria" else self.criteria, self.n_criteria,
                                       None if self.null == "options" else ctypes.byref(self.options),
                                       None if self.null == "out" else ctypes.byref(self.out))

    def untouched(self):
        return ((self.keep == 7).all() and (self.count == -1).all() and (self.stats == 7).all()
                and (self.rejected == -1).all() and (self.grid == 7).all() and (self.weights == 7).all()
                and self.metrics.n_rows == -7)


DECIDE_BREAKS = {
    "TRM_E_NULL_POINTER": [lambda d: setattr(d, "null", "partials"), lambda d: setattr(d, "null", "criteria"),
                           lambda d: setattr(d, "null", "options"), lambda d: setattr(d, "null", "out"),
                           lambda d: setattr(d.p.struct.min, "data", None)],
    "TRM_E_BAD_STRUCT_SIZE": [lambda d: setattr(d.out, "struct_size", 1), lambda d: setattr(d.options, "struct_size", 0)],
    "TRM_E_BAD_SIZE": [lambda d: setattr(d, "n_criteria", 65), lambda d: setattr(d, "n_criteria", -2),
                       lambda d: setattr(d.p.struct, "n_rows", -3)],
    "TRM_E_BAD_STRIDE": [lambda d: setattr(d.out.keep_row, "stride_col", 1), lambda d: setattr(d.p.struct.count, "stride_col", 2)],
    "TRM_E_OUT_OF_RANGE": [lambda d: setattr(d.p.struct.max, "stride_row", 2**61)],
    "TRM_E_ALIASING": [lambda d: setattr(d.out.count, "data", d.p.count.ctypes.data),
                       lambda d: setattr(d.out, "rejected", d.count.ctypes.data)],
    "TRM_E_BAD_ESTIMATOR": [lambda d: setattr(d.criteria[0], "estimator", _ffi.ESTIMATORS["tv"]),
                            lambda d: setattr(d.criteria[1], "estimator", 42), lambda d: d.p.codes.__setitem__(1, 2)],
    "TRM_E_BAD_AGGREGATION": [lambda d: setattr(d.criteria[0], "aggregation", 9)],
    "TRM_E_BAD_NAN_POLICY": [lambda d: setattr(d.options, "nan_policy", -1)],
    "TRM_E_BAD_THRESHOLD": [lambda d: setattr(d.criteria[0], "hi", -0.5), lambda d: setattr(d.criteria[1], "lo", math.nan)],
    "TRM_E_BAD_OPTION": [lambda d: setattr(d.options, "reject_empty", 3), lambda d: setattr(d.out, "reserved", 1),
                         lambda d: setattr(d.p.struct, "reserved", 1)],
    "TRM_E_NEEDS_TOKENS": [lambda d: setattr(d.criteria[1], "aggregation", _ffi.AGGREGATIONS["token"]),
                           lambda d: setattr(d.out, "keep_token", _out(d.grid)),
                           lambda d: (setattr(d.criteria[1], "aggregation", _ffi.AGGREGATIONS["ln_trm"]),
                                      setattr(d.criteria[1], "kl_max", 0.01)),
                           lambda d: (setattr(d.out, "weights", _out(d.weights)), setattr(d.out.weight_rule, "hi", 2.0)),
                           lambda d: setattr(d.out, "metrics", ctypes.addressof(d.metrics))],
    "TRM_E_BAD_LENGTH_NEUTRAL": [lambda d: setattr(d.criteria[0], "kl_max", 0.1)],
    "TRM_E_BAD_PARTIALS": [lambda d: d.p.count.__setitem__(2, -1), lambda d: d.p.nonfinite.__setitem__(0, -1)],
}


@pytest.mark.parametrize("name,index", [(n, i) for n, b in DECIDE_BREAKS.items() for i in range(len(b))])
def test_decide_status_writes_nothing(name, index):
    case = Decide()
    DECIDE_BREAKS[name][index](case)
    assert lib.trm_status_name(case.run()).decode() == name
    assert case.untouched()


def test_decide_valid_call_and_every_new_status_is_reached():
    case = Decide()
    assert case.run() == 0
    # max k2 = 0.01 passes; mean k3 = sum / count = 0.125 fails every row.
    assert list(case.keep) == [0, 0, 0] and list(case.count) == [2, 2, 2]
    np.testing.assert_array_equal(case.stats[:, 1], np.float32(0.25 / 2))
    assert list(case.rejected) == [0, 3]
    reached = set(COMPUTE_BREAKS) | set(MERGE_BREAKS) | set(DECIDE_BREAKS)
    assert {"TRM_E_NEEDS_TOKENS", "TRM_E_BAD_PARTIALS"} <= reached
    assert HEADER_STATUS["TRM_E_NEEDS_TOKENS"] == 23 and HEADER_STATUS["TRM_E_BAD_PARTIALS"] == 24


def test_empty_batch_and_no_estimators():
    none = trmask.row_partials(np.zeros((0, 5), np.float32), np.zeros((0, 5), np.float32))
    assert len(none.count) == 0 and none.sum.shape == (0, 2)
    merged = trmask.merge_partials(none, none)
    assert len(trmask.keep_from_partials(merged).keep_row) == 0
    counts_only = trmask.row_partials(np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32), estimators=())
    assert list(counts_only.count) == [4, 4, 4] and counts_only.sum.shape == (3, 0)
    decision = trmask.keep_from_partials(trmask.merge_partials(counts_only, counts_only), criteria=(), reject_empty=True)
    assert list(decision.keep_row) == [True] * 3 and list(decision.count) == [8] * 3


def _partial_bytes(p):
    return [np.asarray(getattr(p, name)).tobytes() for name in ("count", "nonfinite", "sum", "max", "min")]


def test_partials_identical_for_every_thread_count_and_layout():
    """Bit-identical for threads 1, 2, 3, 8, and for column-major batches (the column-tile scan,
    rows as lanes) against contiguous ones."""
    arrays, mask = whole_rows(31, 150, 300, True, "bool")
    estimators = ("k2", "k3", "delta", "tv", "ratio")
    digests = {t: _partial_bytes(trmask.row_partials(**arrays, mask=mask, estimators=estimators, nan_policy="skip", threads=t))
               for t in (1, 2, 3, 8)}
    assert all(d == digests[1] for d in digests.values())
    column_major = {k: np.asfortranarray(v) for k, v in arrays.items()}
    for policy in ("reject", "zero"):
        a = trmask.row_partials(**column_major, mask=np.asfortranarray(mask), estimators=estimators, nan_policy=policy, threads=2)
        b = trmask.row_partials(**arrays, mask=mask, estimators=estimators, nan_policy=policy, threads=1)
        assert _partial_bytes(a) == _partial_bytes(b)


def test_ser_decides_from_tv_partials_and_ln_trm_is_refused():
    """SER is a mean of tv, so it merges; LN-TRM weighs tokens by their place in the whole row."""
    rng = np.random.default_rng(11)
    lr = -rng.exponential(1.0, (6, 90)).astype(np.float32)
    lt = (lr + rng.normal(0, 0.08, lr.shape)).astype(np.float32)
    criteria = [trmask.Criterion("ser", "tv", hi=0.06), trmask.Criterion("max", "k2", hi=0.05)]
    whole = trmask.trust_region_mask(lt, lr, criteria=criteria)
    merged = trmask.merge_partials(trmask.row_partials(lt[:, :40], lr[:, :40], estimators=("tv", "k2")),
                                   trmask.row_partials(lt[:, 40:], lr[:, 40:], estimators=("tv", "k2")))
    decision = trmask.keep_from_partials(merged, criteria)
    np.testing.assert_array_equal(decision.keep_row, whole.keep_row)
    np.testing.assert_allclose(decision.row_stats[0], whole.row_stats[0], rtol=1e-5)
    with pytest.raises(trmask.TrmaskError, match="position in the whole row"):
        trmask.keep_from_partials(merged, [trmask.Criterion("ln_trm", "tv", hi=0.1, kl_max=0.01)])
