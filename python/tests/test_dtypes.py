"""Input dtypes (SPEC §10): float32, bfloat16, float16 and float64 log-probs, log-ratios and
values, mixed pairs (a bfloat16 trainer against a float32 rollout), masks of any numeric dtype,
numpy (``ml_dtypes.bfloat16``) and torch, without copies.

Tolerance table, one row per data dtype. ``got`` is the library, ``ref`` the float64 reference
(``trmask.reference``) on the same input values; the rules are those of conftest.py:

| dtype    | per token       | row sum / mean       | reason |
|----------|-----------------|----------------------|--------|
| float32  | conftest rules  | 2e-6 sum|term|       | the main dtype |
| bfloat16 | conftest rules  | 2e-6 sum|term|       | widened exactly to float32 (its top half), then computed as float32: the reference sees the same values |
| float16  | conftest rules  | 2e-6 sum|term|       | widened exactly to float32 (every binary16 value is a float32 value) |
| float64  | conftest rules  | 2e-6 sum|term|       | delta is rounded once to float32: the float64 difference of two log-probs (the reference's ``log_ratio`` does the same), a float64 log-ratio or value itself (the reference is given the same float32 rounding) |

Mixed pairs follow the wider side: two narrow inputs are subtracted in float32 (exact operands,
one rounding); if either is float64, in float64 and rounded once to float32. Beyond the tolerance
rules, every narrow dtype gives the same bits as float32 holding the same values, and float64
gives the same bits as float32 holding its rounded delta (``test_same_bits_as_float32``).
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trmask
from conftest import EXP_ESTIMATORS, SUM_RTOL, TOKEN_RTOL, random_deltas, report, token_tolerance
from trmask import TrmaskError
from trmask.reference import estimator_values, log_ratio, reference_mask, reference_stats
from trmask.reference._batch import prepare_batch

try:
    import ml_dtypes
except ImportError:  # optional: bfloat16 numpy arrays
    ml_dtypes = None
try:
    import torch
except ImportError:  # optional
    torch = None

#: (dtype, token tolerance scale, sum tolerance scale, reason): scales multiply conftest's rules.
TOLERANCES = [
    ("float32", 1.0, 1.0, "the main dtype"),
    ("bfloat16", 1.0, 1.0, "widened exactly to float32, then computed as float32"),
    ("float16", 1.0, 1.0, "widened exactly to float32, then computed as float32"),
    ("float64", 1.0, 1.0, "delta rounded once to float32; the reference rounds the same way"),
]
DTYPES = tuple(row[0] for row in TOLERANCES)
SCALE = {dtype: (token, total) for dtype, token, total, _ in TOLERANCES}
#: Memory layouts; "broadcast" reads `logp_roll` (or a single source's columns) through zero strides.
LAYOUTS = ("contiguous", "sliced", "transposed", "reversed", "broadcast", "packed")
MASK_KINDS = ("none", "bool", "uint8", "float32", "int64")

CRITERIA = [
    trmask.Criterion("max", "k2", hi=0.1),
    trmask.Criterion("mean", "k3", hi=0.002),
    trmask.Criterion("min", "delta", lo=math.log(0.1)),
    trmask.Criterion("sum", "delta", lo=-math.log(2), hi=math.log(2)),
    trmask.Criterion("mean", "tv", hi=0.05),
    trmask.Criterion("max", "ratio", hi=2.0),
    trmask.Criterion("min", "k2"),
    trmask.Criterion("sum", "abs", hi=2.0),
    trmask.Criterion("token", "ratio", lo=0.5, hi=2.0),
]
VALUE_CRITERIA = [
    trmask.Criterion("max", "value", hi=0.05),
    trmask.Criterion("mean", "value", hi=0.002),
    trmask.Criterion("min", "value"),
    trmask.Criterion("sum", "value", hi=0.1),
    trmask.Criterion("token", "value", hi=0.02),
]


def have(dtype: str, kind: str = "numpy") -> bool:
    if kind == "torch":
        return torch is not None
    return dtype != "bfloat16" or ml_dtypes is not None


def cast(x: np.ndarray, dtype: str, kind: str = "numpy"):
    """`x` (float64) rounded to `dtype`, as a numpy array (bfloat16 through ml_dtypes) or a torch
    tensor."""
    if kind == "torch":
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(getattr(torch, dtype))
    if dtype == "bfloat16":
        return x.astype(ml_dtypes.bfloat16)
    return x.astype(dtype)


def exact(a) -> np.ndarray:
    """A numpy array the reference reads: the same values in a dtype it accepts (float32 holds
    every bfloat16 and float16 value exactly; float64 stays float64)."""
    if torch is not None and isinstance(a, torch.Tensor):
        return a.numpy() if a.dtype == torch.float64 else a.float().numpy()
    return np.asarray(a)


def relayout(a, layout: str):
    """The same values in another memory layout: a view of a differently shaped buffer."""
    if layout == "sliced":
        if torch is not None and isinstance(a, torch.Tensor):
            wide = torch.zeros((a.shape[0], 2 * a.shape[1] + 1), dtype=a.dtype)
        else:
            wide = np.zeros((a.shape[0], 2 * a.shape[1] + 1), dtype=a.dtype)
        wide[:, 1::2] = a
        return wide[:, 1::2]
    if layout == "transposed":
        return a.T.contiguous().T if torch is not None and isinstance(a, torch.Tensor) else np.ascontiguousarray(a.T).T
    if layout == "reversed":
        if torch is not None and isinstance(a, torch.Tensor):
            return a.flip(0, 1).contiguous().flip(0, 1)  # torch flips copy: this is the values, contiguous
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    return a


def make_mask(rng, shape, kind: str):
    """A validity mask of `kind` and the bool it means (nonzero = valid, NaN is nonzero)."""
    if kind == "none":
        return None
    valid = rng.random(shape) < 0.8
    if shape[0]:
        valid[rng.random(shape[0]) < 0.2] = False  # some all-masked rows
    if kind == "bool":
        return valid
    if kind == "uint8":
        return valid.astype(np.uint8) * rng.integers(1, 256, size=shape).astype(np.uint8)
    if kind == "float32":  # weights, -0.0 as invalid, NaN as valid
        mask = np.where(valid, rng.choice([1.0, 0.5, -2.0, np.nan], size=shape), rng.choice([0.0, -0.0], size=shape))
        return mask.astype(np.float32)
    return np.where(valid, rng.choice([1, -1, 7], size=shape), 0).astype(np.int64)  # int64


def case(seed, rows, cols, source, dtypes, layout="contiguous", mask_kind="bool", kind="numpy", special=False,
         lengths=False):
    """Inputs (`source`: "logprobs", "log_ratio" or "values") of the given dtype(s) in `layout`,
    and the reference's inputs holding the same values (padded, or packed for "packed")."""
    rng = np.random.default_rng(seed)
    if source == "logprobs":
        lr = -rng.exponential(1.0, size=(rows, cols))
        with np.errstate(invalid="ignore"):
            lt = lr + random_deltas(rng, (rows, cols), special)
        arrays = {"logp_train": cast(lt, dtypes[0], kind), "logp_roll": cast(lr, dtypes[1], kind)}
        reference = {name: exact(a) for name, a in arrays.items()}
    else:
        x = random_deltas(rng, (rows, cols), special)
        if source == "values":
            x = np.abs(x) * 0.05
        arrays = {source: cast(x, dtypes[0], kind)}
        held = exact(arrays[source])
        # A float64 log-ratio or value is rounded once to float32 by the kernels: give the
        # reference that rounding (SPEC §10: computation in float32 or wider).
        reference = {source: held.astype(np.float32) if held.dtype == np.float64 else held}
    if layout == "broadcast":
        name = "logp_roll" if source == "logprobs" else source
        a = arrays[name]
        part = a[:1] if source == "logprobs" else a[:, :1]
        arrays[name] = part.expand(a.shape) if kind == "torch" else np.broadcast_to(part, a.shape)
        reference[name] = np.broadcast_to(reference[name][:1] if source == "logprobs" else reference[name][:, :1], a.shape)
    mask = make_mask(rng, (rows, cols), mask_kind)
    reference["mask"] = mask
    lens = rng.integers(0, cols + 1, size=rows).astype(np.int64) if lengths else None
    reference["lengths"] = lens
    if layout == "packed":
        cuts = np.sort(rng.integers(0, rows * cols + 1, size=max(rows - 1, 0)))
        offsets = np.concatenate([[0], cuts, [rows * cols]] if rows else [[0]]).astype(np.int64)
        if lengths:
            lens = np.minimum(lens, np.diff(offsets)).astype(np.int64)
        flat = {name: a.reshape(-1) for name, a in arrays.items()}
        inputs = dict(flat, mask=None if mask is None else mask.reshape(-1), lengths=lens, offsets=offsets)
        reference = {name: (a.reshape(-1) if a is not None and name not in ("lengths",) else a)
                     for name, a in reference.items()}
        reference.update(lengths=lens, offsets=offsets)
        return inputs, reference
    inputs = {name: relayout(a, layout) for name, a in arrays.items()}
    inputs.update(mask=None if mask is None else relayout(mask, layout), lengths=lens)
    return inputs, reference


def check_against_reference(inputs, reference, criteria, *, scale=(1.0, 1.0), nan_policy="reject", clamp=None,
                            reject_empty=False, what=""):
    """trust_region_mask against reference_mask: counts exact; statistics within the tolerance
    (scaled per dtype); max/min bitwise equal to the extremes of the library's own per-token
    values; keep decisions and rejections exact away from the bounds. Returns the result."""
    options = dict(nan_policy=nan_policy, clamp=clamp, reject_empty=reject_empty)
    got = trmask.trust_region_mask(**inputs, criteria=criteria, **options)
    ref = reference_mask(**reference, criteria=[(c.agg, c.estimator, c.lo, c.hi) for c in criteria], **options)
    np.testing.assert_array_equal(np.asarray(got.count), ref["count"], err_msg=what)
    np.testing.assert_array_equal(np.asarray(got.nonfinite), ref["nonfinite"], err_msg=what)
    batch = prepare_batch(reference.get("logp_train"), reference.get("logp_roll"), reference.get("log_ratio"),
                          reference.get("values"), reference.get("mask"), reference.get("lengths"),
                          reference.get("offsets"), nan_policy)
    source = "values" if batch.is_values else "log_ratio"
    rows = len(ref["count"])
    borderline = np.zeros(rows, dtype=bool)
    for column, c in enumerate(c for c in criteria if c.is_row):
        stat, expected = np.asarray(got.row_stats[column], np.float64), ref["row_stat"][column]
        terms = np.abs(estimator_values(c.estimator, batch.x, clamp=clamp))
        terms = np.where(batch.counted & np.isfinite(terms), terms, 0.0)
        term_sums = np.array([terms[s:e].sum() for s, e in zip(batch.starts, batch.stops)])
        if c.agg in ("sum", "mean"):
            tol = scale[1] * (SUM_RTOL + (TOKEN_RTOL if c.estimator in EXP_ESTIMATORS else 0)) * term_sums + 1e-30
            if c.agg == "mean":
                tol = tol / np.maximum(ref["count"], 1)
        else:
            tol = scale[0] * token_tolerance(c.estimator, expected)
            values = trmask.token_values(**{source: batch.x.astype(np.float32)}, estimator=c.estimator, clamp=clamp)
            for i, (s, e) in enumerate(zip(batch.starts, batch.stops)):
                row = values[s:e][batch.counted[s:e]]
                if row.size and not batch.nan_row[i]:
                    want = row.max() if c.agg == "max" else row.min()
                    assert np.float32(stat[i]) == want, f"{what} {c} row {i}: {stat[i]!r} is not the token {c.agg} {want!r}"
        report(stat, expected, tol, f"{what} {c}")
        with np.errstate(invalid="ignore"):
            borderline |= (np.abs(expected - c.lo) <= tol) | (np.abs(expected - c.hi) <= tol)
    decided = ~borderline
    np.testing.assert_array_equal(np.asarray(got.keep_row)[decided], ref["keep_row"][decided], err_msg=what)
    if not borderline.any():
        assert [r for r, c in zip(got.rejected, criteria) if c.is_row] == \
            [r for r, c in zip(ref["rejected"], criteria) if c.is_row], what
        if nan_policy != "zero" or all(c.is_row for c in criteria):
            np.testing.assert_array_equal(np.asarray(got.keep_token), ref["keep_token"], err_msg=what)
    return got


def wider(*dtypes: str) -> str:
    """The dtype whose tolerance row applies: float64 if either side is float64."""
    return "float64" if "float64" in dtypes else dtypes[0]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("train,roll", list(itertools.product(DTYPES, DTYPES)))
def test_log_prob_pairs_match_reference(train, roll, layout):
    """Every pair of dtypes (a bfloat16 trainer against a float32 rollout, and the rest), every
    layout: contiguous, stride 2, column-major, reversed, packed."""
    if not (have(train) and have(roll)):
        pytest.skip("ml_dtypes is not installed")
    for seed, special in ((1, False), (2, True)):
        inputs, reference = case(seed, 7, 75, "logprobs", (train, roll), layout, special=special, lengths=special)
        check_against_reference(inputs, reference, CRITERIA, scale=SCALE[wider(train, roll)],
                                what=f"{train}-{roll} {layout}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("source", ["log_ratio", "values"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_single_sources_match_reference(dtype, source, layout):
    if not have(dtype):
        pytest.skip("ml_dtypes is not installed")
    criteria = VALUE_CRITERIA if source == "values" else CRITERIA
    for seed, special in ((3, False), (4, True)):
        inputs, reference = case(seed, 6, 70, source, (dtype,), layout, special=special, lengths=special)
        check_against_reference(inputs, reference, criteria, scale=SCALE[dtype], nan_policy="skip" if special else "reject",
                                what=f"{source} {dtype} {layout}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 9), cols=st.integers(0, 70),
       train=st.sampled_from(DTYPES), roll=st.sampled_from(DTYPES), source=st.sampled_from(("logprobs", "log_ratio")),
       layout=st.sampled_from(LAYOUTS), mask_kind=st.sampled_from(MASK_KINDS), lengths=st.booleans(),
       special=st.booleans(), policy=st.sampled_from(("reject", "skip", "zero")), clamp=st.sampled_from((None, 0.5, 20.0)),
       reject_empty=st.booleans(), picks=st.lists(st.integers(0, len(CRITERIA) - 1), min_size=1, max_size=4, unique=True))
def test_hypothesis_dtypes_match_reference(seed, rows, cols, train, roll, source, layout, mask_kind, lengths, special,
                                           policy, clamp, reject_empty, picks):
    if not (have(train) and have(roll)):
        return
    dtypes = (train, roll) if source == "logprobs" else (train,)
    inputs, reference = case(seed, rows, cols, source, dtypes, layout, mask_kind, special=special, lengths=lengths)
    check_against_reference(inputs, reference, [CRITERIA[i] for i in picks], scale=SCALE[wider(*dtypes)],
                            nan_policy=policy, clamp=clamp, reject_empty=reject_empty,
                            what=f"{source} {dtypes} {layout} mask={mask_kind}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequence_stats_and_token_values_match_reference(dtype):
    if not have(dtype):
        pytest.skip("ml_dtypes is not installed")
    inputs, reference = case(5, 5, 90, "logprobs", (dtype, "float32"), special=True)
    estimators = ("delta", "k1", "k2", "k3", "abs", "ratio", "tv")
    got = trmask.sequence_stats(inputs["logp_train"], inputs["logp_roll"], inputs["mask"], estimators=estimators,
                                nan_policy="skip")
    ref = reference_stats(reference["logp_train"], reference["logp_roll"], mask=reference["mask"],
                          estimators=estimators, nan_policy="skip")
    np.testing.assert_array_equal(got.count, ref["count"])
    for estimator in estimators:
        for agg in ("max", "min"):
            expected = ref["stats"][estimator][agg]
            report(got.stats[estimator][agg], expected, token_tolerance(estimator, expected), f"{dtype} {agg} {estimator}")
        values = trmask.token_values(inputs["logp_train"], inputs["logp_roll"], estimator)
        expected = estimator_values(estimator, log_ratio(reference["logp_train"], reference["logp_roll"]))
        report(values, expected, token_tolerance(estimator, expected), f"{dtype} token {estimator}")


def _same_bits(a, b, what):
    for name in ("keep_row", "count", "nonfinite"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=f"{what} {name}")
    for x, y in zip(a.row_stats, b.row_stats):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), what
    np.testing.assert_array_equal(np.asarray(a.keep_token), np.asarray(b.keep_token), err_msg=what)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_same_bits_as_float32(layout):
    """Narrow dtypes give the bits of float32 holding the same values (exact widening); float64
    gives the bits of float32 holding its delta rounded once."""
    criteria = CRITERIA
    for train, roll in itertools.product(DTYPES, DTYPES):
        if not (have(train) and have(roll)):
            continue
        inputs, reference = case(6, 9, 130, "logprobs", (train, roll), layout, special=True, lengths=True)
        got = trmask.trust_region_mask(**inputs, criteria=criteria)
        if "float64" in (train, roll):
            with np.errstate(invalid="ignore"):
                delta = (reference["logp_train"].astype(np.float64) - reference["logp_roll"].astype(np.float64))
            same = {k: v for k, v in inputs.items() if k not in ("logp_train", "logp_roll")}
            want = trmask.trust_region_mask(log_ratio=delta.astype(np.float32), **same, criteria=criteria)
        else:
            same = dict(inputs, logp_train=reference["logp_train"].astype(np.float32),
                        logp_roll=reference["logp_roll"].astype(np.float32))
            want = trmask.trust_region_mask(**same, criteria=criteria)
        _same_bits(got, want, f"{train}-{roll} {layout}")
    for dtype in DTYPES:
        if not have(dtype):
            continue
        inputs, reference = case(7, 9, 130, "log_ratio", (dtype,), layout, special=True)
        same = dict(inputs, log_ratio=reference["log_ratio"].astype(np.float32))
        _same_bits(trmask.trust_region_mask(**inputs, criteria=criteria), trmask.trust_region_mask(**same, criteria=criteria),
                   f"log_ratio {dtype} {layout}")


@pytest.mark.parametrize("kind", MASK_KINDS[1:])
def test_masks_of_every_dtype_mean_nonzero(kind):
    """bool, uint8 (any nonzero byte), float32 (weights, -0.0 invalid, NaN valid) and int64 masks
    give the bits of the bool mask `mask != 0`."""
    inputs, reference = case(8, 11, 77, "logprobs", ("float32", "float32"), mask_kind=kind, special=True)
    for layout in ("contiguous", "sliced", "transposed"):
        laid = dict(inputs, mask=relayout(inputs["mask"], layout))
        as_bool = dict(inputs, mask=np.asarray(inputs["mask"]) != 0)
        _same_bits(trmask.trust_region_mask(**laid, criteria=CRITERIA), trmask.trust_region_mask(**as_bool, criteria=CRITERIA),
                   f"{kind} mask {layout}")
    check_against_reference(inputs, reference, CRITERIA, what=f"{kind} mask")


def test_dtype_errors_name_the_argument():
    lt = np.zeros((2, 3), np.float32)
    for bad, name in ((lt.astype(np.int32), "logp_train"), (lt.astype(np.complex64), "logp_train")):
        with pytest.raises(TrmaskError, match=f"`{name}` has dtype .*; expected float32, float64, float16 or bfloat16"):
            trmask.trust_region_mask(bad, lt)
    with pytest.raises(TrmaskError, match="`log_ratio` has dtype uint8"):
        trmask.trust_region_mask(log_ratio=lt.astype(np.uint8))
    with pytest.raises(TrmaskError, match="`mask` has dtype complex64"):
        trmask.trust_region_mask(lt, lt, lt.astype(np.complex64))
    with pytest.raises(TrmaskError, match="`lengths` has dtype float32"):
        trmask.trust_region_mask(lt, lt, lengths=np.ones(2, np.float32))


@pytest.mark.skipif(ml_dtypes is None, reason="ml_dtypes is not installed")
def test_ml_dtypes_bfloat16_is_not_copied():
    rows, cols = 512, 16384  # 16 MiB per bfloat16 input
    lt = np.zeros((rows, cols), ml_dtypes.bfloat16)
    lr = np.full((rows, cols), -0.01, ml_dtypes.bfloat16)
    mask = np.ones((rows, cols), np.float32)  # a per-element mask path, also read in place
    trmask.trust_region_mask(lt[:2], lr[:2], mask[:2])  # warm up any lazy imports
    tracemalloc.start()
    result = trmask.trust_region_mask(lt, lr, mask)
    trmask.trust_region_mask(log_ratio=lt[:, ::2], mask=mask[:, ::2])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    keep_token = rows * cols + rows * cols // 2  # the two calls' bool token grids are outputs
    assert peak < (1 << 20) + keep_token, f"peak Python allocation {peak} bytes for 64 MiB of inputs"
    assert result.count[0] == cols


@pytest.mark.skipif(torch is None, reason="torch is optional")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_torch_tensors_of_each_dtype(dtype):
    """torch bfloat16/float16/float64 tensors in (contiguous, strided, transposed, mixed with a
    float32 rollout); torch tensors out; the numbers of the reference."""
    for layout in ("contiguous", "sliced", "transposed", "packed"):
        inputs, reference = case(9, 6, 70, "logprobs", (dtype, "float32"), layout, kind="torch", special=True)
        got = check_against_reference(inputs, reference, CRITERIA, scale=SCALE[wider(dtype, "float32")],
                                       what=f"torch {dtype} {layout}")
        for name in ("keep_row", "count", "nonfinite", "keep_token"):
            assert isinstance(getattr(got, name), torch.Tensor), name
        assert got.keep_row.dtype == torch.bool and got.row_stats[0].dtype == torch.float32
        stats = trmask.sequence_stats(inputs["logp_train"], inputs["logp_roll"], offsets=inputs.get("offsets"))
        assert isinstance(stats.stats["k2"]["max"], torch.Tensor)
        values = trmask.token_values(inputs["logp_train"], inputs["logp_roll"], "k3")
        assert isinstance(values, torch.Tensor) and values.dtype == torch.float32
    # A torch bfloat16 log-ratio and values, and a bool mask tensor.
    inputs, reference = case(10, 5, 40, "log_ratio", (dtype,), kind="torch")
    inputs["mask"] = torch.from_numpy(np.asarray(inputs["mask"]))
    check_against_reference(inputs, reference, CRITERIA, scale=SCALE[dtype], what=f"torch log_ratio {dtype}")
    inputs, reference = case(11, 5, 40, "values", (dtype,), kind="torch")
    check_against_reference(inputs, reference, VALUE_CRITERIA, scale=SCALE[dtype], what=f"torch values {dtype}")


@pytest.mark.skipif(ml_dtypes is None, reason="ml_dtypes is not installed")
def test_reads_stay_inside_the_buffers_for_every_dtype():
    """Arrays of each dtype (unit stride, stride 2, column-major, packed), and masks of each
    dtype, that end right before an inaccessible page: a read past the end would crash the child."""
    script = textwrap.dedent("""
        import ctypes, mmap, numpy as np, ml_dtypes, trmask
        page = mmap.PAGESIZE
        region = mmap.mmap(-1, 8 * page)
        base = ctypes.addressof(ctypes.c_char.from_buffer(region))
        libc = ctypes.CDLL(None)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        assert libc.mprotect(base + 7 * page, page, 0) == 0         # PROT_NONE after the data
        def tail(n, dtype):                                           # n elements ending at the guard page
            itemsize = np.dtype(dtype).itemsize
            return np.frombuffer(region, dtype=dtype, count=n, offset=7 * page - n * itemsize)
        criteria = "max:k2<=0.1,mean:k3<=0.002,min:delta>=-5,0.5<=token:ratio<=2"
        dtypes = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
        for rows, cols in [(1, 1), (1, 15), (3, 17), (7, 31), (2, 64), (9, 3)]:
            n = rows * cols
            for dtype in dtypes:
                for other in dtypes:
                    roll = np.full((rows, cols), -0.4, other)
                    a = tail(n, dtype).reshape(rows, cols)
                    a[...] = -0.5
                    views = [a, tail(n, dtype).reshape(cols, rows).T, tail(2 * n, dtype).reshape(rows, 2 * cols)[:, 1::2]]
                    for view in views:
                        trmask.trust_region_mask(view, roll, criteria=criteria).keep_token
                        trmask.trust_region_mask(roll, view, criteria=criteria).keep_token
                    trmask.trust_region_mask(a.reshape(-1), roll.reshape(-1), offsets=[0, n // 2, n], criteria=criteria)
                trmask.trust_region_mask(log_ratio=tail(2 * n, dtype).reshape(rows, 2 * cols)[:, 1::2], criteria=criteria)
                # Both sides at stride 2 without token criteria: the scan's hot loop reads vectors.
                even = tail(2 * n, dtype).reshape(rows, 2 * cols)[:, 1::2]
                trmask.trust_region_mask(even, even).keep_row
                trmask.trust_region_mask(log_ratio=even).keep_row
                trmask.token_values(log_ratio=tail(2 * n, dtype)[1::2], estimator="k3")
            for mask_dtype in (np.uint8, np.bool_, np.int64, np.float32, np.float16):
                for mask in (tail(n, mask_dtype).reshape(rows, cols), tail(2 * n, mask_dtype).reshape(rows, 2 * cols)[:, 1::2]):
                    zeros = np.zeros((rows, cols), np.float32)
                    trmask.trust_region_mask(zeros, zeros, mask, criteria=criteria).keep_token
                    trmask.trust_region_mask(zeros, zeros, mask).keep_row  # the hot loop
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
