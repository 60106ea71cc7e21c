"""Rollout correction in verl's arithmetic (docs/rollout-correction.md) against the float64
reference (`trmask.reference.reference_correction`), over dtypes, weight masks, NaN/Inf, empty
rows, strides and the packed layout; determinism across thread counts; the refusals.

Tolerances, one reason each:

| quantity | rule | why |
|---|---|---|
| output mask, keep_row, weights | bitwise (NaN equal); float64 weights within 5e-16 relative | per-token arithmetic rounded like the reference, row sums added in the same order; in float64, libm's exp and numpy's may differ by an ulp |
| statistics | ``|got - ref| <= 1e-9 |ref| + 1e-12`` | float64 sums; the reference adds batch totals in numpy's pairwise order |
| ``std`` statistics | ``+ 1e-6`` absolute | ``sqrt(mean(c^2) - mean(c)^2)`` turns a float64 rounding of the variance near 0 into ~1e-8 |
"""

from __future__ import annotations

import ctypes
import hashlib
import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import trmask
from trmask import _ffi
from trmask.reference import reference_correction

DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
REJECTIONS = [("token", "k1", math.log(0.5), math.log(2.0)), ("token", "k3", -math.inf, 0.01),
              ("seq_sum", "k2", -math.inf, 0.05), ("seq_mean", "k3", -math.inf, 0.002),
              ("seq_mean", "k1", math.log(0.9), math.log(1.1)), ("seq_max", "k2", -math.inf, 0.02),
              ("seq_max", "k3", -math.inf, 0.02), ("seq_sum", "k1", math.log(0.5), math.log(2.0))]
WEIGHT_RULES = [("token", "truncate", None, 2.0), ("sequence", "truncate", None, 2.0), ("token", "mask", 0.5, 2.0),
                ("sequence", "mask", 0.5, 5.0)]


def _batch(seed, rows, cols, dtype="float32", mask_kind="bool", nonfinite=False, scale=0.1):
    rng = np.random.default_rng(seed)
    lr = rng.normal(-1.0, 0.5, (rows, cols))
    lt = lr + rng.normal(0.0, scale, (rows, cols)) * rng.choice([0.1, 1.0, 3.0], (rows, 1))
    valid = rng.random((rows, cols)) < 0.8
    if rows:
        valid[rng.integers(rows)] = False  # an empty row
    if nonfinite and rows * cols:
        for value in (np.nan, np.inf, -np.inf):
            lt.flat[rng.integers(rows * cols, size=2)] = value
    kinds = {"bool": valid, "uint8": valid.astype(np.uint8), "int64": valid.astype(np.int64) * rng.integers(1, 3, valid.shape),
             "int32": valid.astype(np.int32) * rng.integers(1, 3, valid.shape, dtype=np.int32),
             "float32": valid * rng.choice([0.25, 0.5, 1.0], valid.shape).astype(np.float32),
             "binary_float32": valid.astype(np.float32)}
    lt = lt.astype(DTYPES[dtype])
    lr = lr.astype(DTYPES[dtype])
    return lt, lr, kinds[mask_kind]


def _compute_name(lt):
    return "bfloat16" if lt.dtype == ml_dtypes.bfloat16 else lt.dtype.name


def _run(lt, lr, mask, rejections, rule, mask_weights, threads=0, normalize=False, **kwargs):
    return trmask.rollout_correction(
        lt, lr, mask, rejections=[trmask.Rejection(level, est, lo if math.isfinite(lo) else None, hi)
                                  for level, est, lo, hi in rejections],
        weights=None if rule is None else trmask.WeightRule(*rule), mask_weights=mask_weights, threads=threads,
        normalize=normalize, **kwargs)


def _expected(lt, lr, mask, rejections, rule, mask_weights, normalize=False, in_row=None):
    compute = _compute_name(lt)
    train, roll = lt.astype(np.float64), lr.astype(np.float64)
    mask64 = np.asarray(mask).astype(np.float64)
    float_mask = np.asarray(mask).dtype.kind == "f"
    mean_dtype = np.asarray(mask).dtype.name if float_mask else "float32"
    promote = lambda a, b: a if a == b else ("float64" if "float64" in (a, b) else "float32")
    sum_dtype = promote(compute, mean_dtype) if float_mask else compute
    weights_dtype = sum_dtype
    weights = None if rule is None else (rule[0], rule[1], 0.0 if rule[2] is None else rule[2], rule[3])
    return reference_correction(train - roll, mask64, np.ones(lt.shape, bool) if in_row is None else in_row, train=train,
                                roll=roll, rejections=rejections, weights=weights, mask_weights=mask_weights,
                                compute=compute, mean_dtype=mean_dtype, weights_dtype=weights_dtype, sum_dtype=sum_dtype,
                                normalize=normalize)


def _same_bits(got, want, rtol=0.0):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    both_nan = np.isnan(got) & np.isnan(want)
    with np.errstate(invalid="ignore"):
        bad = ~(both_nan | (got == want) | (np.abs(got - want) <= rtol * np.abs(want)))
    assert not bad.any(), f"first mismatch at {np.argwhere(bad)[:5].tolist()}: got {got[bad][:5]}, want {want[bad][:5]}"


def _close(got, want, key):
    atol = 1e-6 if key.endswith("std") else 1e-12
    if isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), (key, got)
    elif isinstance(want, float) and math.isinf(want):
        assert got == want, (key, got, want)
    else:
        assert abs(got - want) <= 1e-9 * abs(want) + atol, (key, got, want)


def _check_statistics(got, want):
    for key in ("n_rows", "n_rows_valid", "n_tokens_valid"):
        assert got[key] == want[key], key
    for key in ("mask_sum", "masked_fraction", "seq_masked_fraction"):
        _close(got[key], want[key], key)
    for key, value in want["offpolicy"].items():
        _close(got["offpolicy"][key], value, "offpolicy." + key)
    assert len(got["rejections"]) == len(want["rejections"])
    for index, (g, w) in enumerate(zip(got["rejections"], want["rejections"])):
        for key, value in w.items():
            _close(g[key], value, f"rejections[{index}].{key}")
    if want["weights"] is None:
        assert got["weights"] is None
    else:
        for key, value in want["weights"].items():
            _close(got["weights"][key], value, "weights." + key)


def _check(lt, lr, mask, rejections, rule, mask_weights, normalize=False, layout="contiguous", seed=0):
    """Runs the library on the batch laid out as `layout` and compares with the reference on the
    same values: ``contiguous``, ``transposed`` (column-major), ``reversed`` (negative row stride),
    ``broadcast_mask`` (a [1, T] mask, zero row stride), ``lengths``, ``packed`` (rows with gaps)."""
    rows, cols = lt.shape
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, cols + 1, rows) if layout in ("lengths", "packed") else np.full(rows, cols)
    in_row = np.arange(cols)[None, :] < lengths[:, None]
    if layout == "reversed":
        lt, lr, mask = lt[::-1], lr[::-1], mask[::-1]
    if layout == "broadcast_mask" and rows:
        mask = np.broadcast_to(mask[:1], mask.shape)
    want = _expected(lt, lr, mask, rejections, rule, mask_weights, normalize, in_row)
    if layout == "transposed":
        lt, lr, mask = (np.ascontiguousarray(x.T).T for x in (lt, lr, mask))
    if layout == "packed":
        offsets = np.concatenate([[1], 1 + np.cumsum(lengths)]).astype(np.int64)
        flat = [np.zeros(offsets[-1] + 2, x.dtype) for x in (lt, lr, mask)]
        for i in range(rows):
            for array, source in zip(flat, (lt, lr, mask)):
                array[offsets[i]:offsets[i + 1]] = source[i, :lengths[i]]
        got = _run(*flat, rejections, rule, mask_weights, normalize=normalize, offsets=offsets)
        grid = lambda x: np.array([np.concatenate([x[offsets[i]:offsets[i + 1]], np.zeros(cols - lengths[i], x.dtype)])
                                   for i in range(rows)]).reshape(rows, cols)
        assert (got.weights is None or not got.weights[[0, -1, -2]].any()) and not got.mask[[0, -1, -2]].any()
        got_mask, got_weights = grid(got.mask), None if got.weights is None else grid(got.weights)
    else:
        got = _run(lt, lr, mask, rejections, rule, mask_weights, normalize=normalize,
                   lengths=lengths if layout == "lengths" else None)
        got_mask, got_weights = got.mask, got.weights
    mask_values = np.where(in_row, np.asarray(mask), np.zeros((), np.asarray(mask).dtype))
    with np.errstate(invalid="ignore"):
        expected_mask = np.where(want["mask_keep"], mask_values, mask_values * 0 if mask_values.dtype.kind == "f" else 0)
    assert got.mask.dtype == np.asarray(mask).dtype
    _same_bits(got_mask.astype(np.float64), expected_mask.astype(np.float64))
    assert (got.keep_row == want["keep_row"]).all()
    if rule is not None:
        # float64 arithmetic: the library's exp (libm) and numpy's may differ in the last bit, and a
        # normalised weight is divided by a mean summed in another order than numpy's (a float32
        # mean is rounded to float32 on both sides, so it agrees): the two factors' own relative
        # difference, plus the division's half ulp, carries into the weights.
        rtol = 0.0
        if got_weights.dtype == np.float64:
            rtol = 5e-16
            if normalize:
                got_factor, want_factor = (got.statistics["weights"]["norm_factor"],
                                           want["statistics"]["weights"]["norm_factor"])
                rtol += abs(got_factor - want_factor) / want_factor + 2.0**-53
        _same_bits(got_weights.astype(np.float64), want["weights"], rtol=rtol)
    _check_statistics(got.statistics, want["statistics"])
    return got


LAYOUTS = ["contiguous", "transposed", "reversed", "broadcast_mask", "lengths", "packed"]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("mask_kind", ["bool", "uint8", "int64", "float32", "binary_float32"])
def test_matches_reference(dtype, mask_kind):
    lt, lr, mask = _batch(1, 7, 33, dtype, mask_kind)
    for rule in WEIGHT_RULES:
        _check(lt, lr, mask, REJECTIONS, rule, mask_weights=mask_kind != "bool")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_match_reference(layout):
    lt, lr, mask = _batch(8, 9, 25, "float32", "float32", nonfinite=True)
    for rule in WEIGHT_RULES:
        _check(lt, lr, mask, REJECTIONS, rule, True, normalize=True, layout=layout, seed=3)


@pytest.mark.parametrize("mask_weights", [False, True])
def test_nonfinite_and_normalize(mask_weights):
    lt, lr, mask = _batch(2, 9, 40, "float32", "float32", nonfinite=True)
    for rule in WEIGHT_RULES:
        _check(lt, lr, mask, REJECTIONS, rule, mask_weights, normalize=True)


def test_weight_mask_semantics_on_numbers():
    """A weight of 0.5 halves a token's share of the sums and survives into the output mask."""
    lt = np.array([[0.0, math.log(1.5), 0.0]], np.float32)
    lr = np.zeros_like(lt)
    mask = np.array([[1.0, 0.5, 0.0]], np.float32)
    got = trmask.rollout_correction(lt, lr, mask, mask_weights=True, rejections=[trmask.Rejection("seq_mean", "k1", hi=0.0)],
                                    weights=trmask.WeightRule("token", "truncate", hi=10.0))
    assert got.mask.tolist() == [[1.0, 0.5, 0.0]]  # the row mean of k1 is -0.135 <= 0: kept, values survive
    mean_k1 = -0.5 * float(np.float32(math.log(1.5))) / 1.5
    assert got.statistics["rejections"][0]["seq_mean"] == pytest.approx(mean_k1, rel=1e-6)
    assert got.weights[0].tolist() == pytest.approx([1.0, 0.75, 0.0], rel=1e-6)


def test_packed_equals_padded_and_gaps_are_zero():
    lt, lr, mask = _batch(3, 5, 12, "float32", "float32")
    lengths = np.array([12, 0, 7, 12, 3])
    offsets = np.concatenate([[2], 2 + np.cumsum(lengths)]).astype(np.int64)
    n = offsets[-1] + 3
    flat = [np.zeros(n, np.float32) for _ in range(3)]
    for i in range(5):
        for array, source in zip(flat, (lt, lr, mask)):
            array[offsets[i]:offsets[i + 1]] = source[i, :lengths[i]]
    padded_lengths = lengths.astype(np.int64)
    rule = trmask.WeightRule("sequence", "truncate", hi=2.0)
    rejections = [trmask.Rejection(*r[:2], None if not math.isfinite(r[2]) else r[2], r[3]) for r in REJECTIONS]
    packed = trmask.rollout_correction(flat[0], flat[1], flat[2], offsets=offsets, rejections=rejections, weights=rule,
                                       mask_weights=True)
    padded = trmask.rollout_correction(lt, lr, mask, lengths=padded_lengths, rejections=rejections, weights=rule,
                                       mask_weights=True)
    assert packed.statistics == padded.statistics or _same_dicts(packed.statistics, padded.statistics)
    assert (packed.keep_row == padded.keep_row).all()
    for i in range(5):
        _same_bits(packed.weights[offsets[i]:offsets[i + 1]], padded.weights[i, :lengths[i]])
        _same_bits(packed.mask[offsets[i]:offsets[i + 1]], padded.mask[i, :lengths[i]])
        assert (padded.weights[i, lengths[i]:] == 0).all() and (padded.mask[i, lengths[i]:] == 0).all()
    assert (packed.weights[:2] == 0).all() and (packed.weights[-3:] == 0).all() and (packed.mask[-3:] == 0).all()


def _same_dicts(a, b):
    for key in a:
        if isinstance(a[key], dict):
            _same_dicts(a[key], b[key])
        elif isinstance(a[key], list):
            for x, y in zip(a[key], b[key]):
                _same_dicts(x, y)
        else:
            assert a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key])), key
    return True


def test_strided_and_log_ratio_inputs():
    lt, lr, mask = _batch(4, 6, 20, "float32", "float32")
    direct = _run(lt, lr, mask, REJECTIONS, WEIGHT_RULES[0], True)
    lt_t, lr_t, mask_t = (np.ascontiguousarray(x.T).T for x in (lt, lr, mask))  # column-major views
    transposed = _run(lt_t, lr_t, mask_t, REJECTIONS, WEIGHT_RULES[0], True)
    reversed_rows = _run(lt[::-1], lr[::-1], mask[::-1], REJECTIONS, WEIGHT_RULES[0], True)
    _same_bits(transposed.weights, direct.weights)
    _same_bits(reversed_rows.weights[::-1], direct.weights)
    log_ratio = trmask.rollout_correction(log_ratio=lt - lr, mask=mask, mask_weights=True, weights=trmask.WeightRule(*WEIGHT_RULES[0]),
                                          rejections=[trmask.Rejection(*r[:2], None if not math.isfinite(r[2]) else r[2], r[3])
                                                      for r in REJECTIONS])
    _same_bits(log_ratio.weights, direct.weights)
    assert math.isnan(log_ratio.statistics["offpolicy"]["training_ppl"])
    assert log_ratio.statistics["offpolicy"]["kl"] == direct.statistics["offpolicy"]["kl"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("mask_kind", ["bool", "uint8", "int32", "int64", "float32", "binary_float32", None])
@pytest.mark.parametrize("rule", WEIGHT_RULES)
def test_chunk_and_element_passes_give_the_same_bits(dtype, mask_kind, rule):
    """Contiguous rows take the chunk pass (eight positions at a time, computed in float32 lanes
    rounded to the log-probs' dtype), column-major views the element pass (each row widened into
    scratch): every output and statistic is the same bits, with partial chunks (lengths, 37
    columns), NaN/Inf, weighted masks (integer values beyond float32's 2^24 too) and every option
    kind. (bfloat16 and float16 log-probs with a float32 mask have float32 weights, a mixed call
    both layouts take the element pass for.)"""
    lt, lr, mask = _batch(7, 9, 37, dtype, mask_kind or "bool", nonfinite=True, scale=1.0)
    lt[2, :5] = 25.0  # beyond the clamp: k3_kl takes exp of the unclamped log-ratio
    if mask_kind in ("int32", "int64"):
        mask[3, 2] = 2**30 + 1  # m is read exactly (float64) by both passes, not as float32
    mask = None if mask_kind is None else mask
    lengths = np.array([37, 0, 36, 29, 8, 1, 37, 16, 33])
    for log_ratio in (False, True):
        runs = []
        for transpose in (False, True):
            view = (lambda x: x) if not transpose else (lambda x: None if x is None else np.ascontiguousarray(x.T).T)
            inputs = dict(log_ratio=view(lt - lr)) if log_ratio else dict(logp_train=view(lt), logp_roll=view(lr))
            runs.append(trmask.rollout_correction(
                mask=view(mask), lengths=lengths, mask_weights=True, weights=trmask.WeightRule(*rule),
                rejections=[trmask.Rejection(level, est, lo if math.isfinite(lo) else None, hi) for level, est, lo, hi in REJECTIONS],
                **inputs))
        chunk, element = runs
        assert repr(chunk.statistics) == repr(element.statistics)
        for a, b in ((chunk.mask, element.mask), (chunk.weights, element.weights), (chunk.keep_row, element.keep_row)):
            assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def test_empty_batch_and_no_valid_token():
    empty = np.zeros((0, 4), np.float32)
    got = trmask.rollout_correction(empty, empty, np.zeros((0, 4), bool), weights=trmask.WeightRule("token", "truncate", hi=2.0),
                                    rejections=[trmask.Rejection("seq_mean", "k3", hi=0.002)])
    assert got.mask.shape == (0, 4) and got.statistics["n_rows"] == 0 and got.statistics["seq_masked_fraction"] == 0
    lt = np.zeros((2, 3), np.float32)
    got = trmask.rollout_correction(lt, lt, np.zeros((2, 3), bool), weights=trmask.WeightRule("token", "mask", lo=0.5, hi=2.0))
    assert got.statistics["n_tokens_valid"] == 0 and got.statistics["weights"]["eff_sample_size"] == math.inf


def _digest(result) -> str:
    h = hashlib.sha256()
    for array in (result.mask, result.keep_row, result.weights):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(repr(result.statistics).encode())
    return h.hexdigest()


def test_bit_identical_for_any_thread_count():
    lt, lr, mask = _batch(5, 64, 300, "float32", "float32", nonfinite=True)
    digests = {_digest(_run(lt, lr, mask, REJECTIONS, rule, True, threads=t, normalize=True))
               for t in (1, 2, 3, 8) for rule in WEIGHT_RULES[:1]}
    assert len(digests) == 1


def test_divide_weights_in_place():
    lt, lr, mask = _batch(6, 4, 10, "float32", "bool")
    got = _run(lt, lr, mask, [], WEIGHT_RULES[0], False)
    expected = (got.weights / np.float32(3.0)).astype(np.float32)
    assert trmask.divide_weights(got.weights, 3.0) is got.weights
    _same_bits(got.weights, expected)
    flat = np.ones(7, np.float32)
    trmask.divide_weights(flat, 2.0, offsets=np.array([1, 3, 5]))
    assert flat.tolist() == [1, 0.5, 0.5, 0.5, 0.5, 1, 1]
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(trmask.TrmaskError):
            trmask.divide_weights(flat, bad)


def test_normalize_matches_divide():
    lt, lr, mask = _batch(7, 8, 16, "float32", "float32")
    for rule in WEIGHT_RULES:
        plain = _run(lt, lr, mask, [], rule, True)
        normalized = _run(lt, lr, mask, [], rule, True, normalize=True)
        factor = plain.statistics["weights"]["norm_factor"]
        assert factor == normalized.statistics["weights"]["norm_factor"]
        if rule[0] == "token":
            assert factor == pytest.approx(plain.statistics["weights"]["norm_sum"] / (plain.statistics["weights"]["norm_count"] + 1e-8), rel=1e-6)
        trmask.divide_weights(plain.weights, factor)
        _same_bits(plain.weights, normalized.weights)


def _c_batch(array, source="log_ratio"):
    """A padded [2, 3] batch whose `source` view is `array`."""
    batch = _ffi.Batch()
    batch.struct_size, batch.layout, batch.n_rows, batch.n_cols = ctypes.sizeof(_ffi.Batch), _ffi.LAYOUT_PADDED, 2, 3
    setattr(batch, source, _ffi.View(array.ctypes.data, _ffi.DTYPE_F32, 0, 3, 1))
    return batch


def _c_config(rejections=None, weights=1):
    return _ffi.CorrectionConfig(ctypes.sizeof(_ffi.CorrectionConfig), _ffi.DTYPE_F32, _ffi.DTYPE_F32, 0, 20.0, 0,
                                 0 if rejections is None else 1, 0 if rejections is None else ctypes.addressof(rejections),
                                 weights, 0, _ffi.WeightRule(0, 0, 0.0, 2.0))


def _c_out(weights=None, stats=None):
    grid = _ffi.TypedOut(0, 0, 0, 0, 0) if weights is None else _ffi.TypedOut(weights.ctypes.data, _ffi.DTYPE_F32, 0, 3, 1)
    return _ffi.CorrectionOut(ctypes.sizeof(_ffi.CorrectionOut), 0, _ffi.TypedOut(0, 0, 0, 0, 0), _ffi.Out(0, 0, 0), grid,
                              0 if stats is None else ctypes.addressof(stats))


def _c_run(batch, config, out):
    return _ffi.lib.trm_rollout_correction(ctypes.byref(batch), ctypes.byref(config), ctypes.byref(out))


def _ctypes_call(config_changes=(), out_changes=()):
    lt = np.zeros((2, 3), np.float32)
    rejection = (_ffi.CRejection * 1)(_ffi.CRejection(0, 3, -math.inf, 0.1))
    config = _c_config(rejection)
    for key, value in config_changes:
        if key == "rejection":
            rejection[0] = value
        else:
            setattr(config, key, value)
    weights = np.full((2, 3), -7.0, np.float32)
    out = _c_out(weights)
    for key, value in out_changes:
        setattr(out, key, value)
    return _c_run(_c_batch(lt), config, out), weights


def test_new_statuses_are_reached_and_outputs_untouched():
    assert _ctypes_call()[0] == 0
    cases = [
        ([("rejection", _ffi.CRejection(7, 3, -math.inf, 0.1))], 30),  # unknown level
        ([("rejection", _ffi.CRejection(0, 5, -math.inf, 0.1))], 30),  # ratio is not k1/k2/k3
        ([("rejection", _ffi.CRejection(0, 3, 1.0, 0.5))], 30),  # lo > hi
        ([("n_rejections", 17)], 30),
        ([("weight_rule", _ffi.WeightRule(2, 0, 0.0, 2.0))], 31),  # geometric
        ([("weight_rule", _ffi.WeightRule(0, 1, 0.5, 2.0))], 31),  # clip
        ([("weight_rule", _ffi.WeightRule(0, 2, 0.0, 2.0))], 31),  # mask without lo > 0
        ([("weight_rule", _ffi.WeightRule(0, 0, 0.0, math.nan))], 31),
        ([("compute_dtype", _ffi.DTYPE_U8)], 4),
        ([("clamp", 0.0)], 16),
        ([("mask_weights", 2)], 16),
        ([("weights", 0)], 16),  # a weights output without weights
    ]
    for changes, code in cases:
        status, weights = _ctypes_call(changes)
        assert status == code, (changes, status)
        assert (weights == -7.0).all()
    mask_grid = np.zeros((2, 3), np.uint8)
    out_cases = [
        ([("struct_size", 8)], 2),  # TRM_E_BAD_STRUCT_SIZE
        ([("reserved", 1)], 16),
        ([("mask", _ffi.TypedOut(mask_grid.ctypes.data, 99, 0, 3, 1))], 4),  # unknown dtype
        ([("mask", _ffi.TypedOut(mask_grid.ctypes.data, _ffi.DTYPE_U8, 0, 0, 1))], 5),  # rows overlap
        ([("keep_row", _ffi.Out(mask_grid.ctypes.data, 1, 1))], 5),  # a 1-D output with a column stride
    ]
    for changes, code in out_cases:
        status, weights = _ctypes_call(out_changes=changes)
        assert status == code, (changes, status)
        assert (weights == -7.0).all() and not mask_grid.any()
    grid = np.ones((2, 3), np.float32)
    view = _ffi.TypedOut(grid.ctypes.data, _ffi.DTYPE_F32, 0, 3, 1)
    assert _ffi.lib.trm_weights_divide(_ffi.LAYOUT_PADDED, 2, 3, _ffi.View(0, 0, 0, 0, 0), 0.0, view) == 32
    assert _ffi.lib.trm_weights_divide(_ffi.LAYOUT_PADDED, 2, 3, _ffi.View(0, 0, 0, 0, 0), 2.0,
                                       _ffi.TypedOut(grid.ctypes.data, _ffi.DTYPE_I32, 0, 3, 1)) == 4
    assert _ffi.lib.trm_weights_divide(7, 2, 3, _ffi.View(0, 0, 0, 0, 0), 2.0, view) == 8  # TRM_E_BAD_LAYOUT
    flat_view = _ffi.TypedOut(grid.ctypes.data, _ffi.DTYPE_F32, 0, 0, 1)
    assert _ffi.lib.trm_weights_divide(_ffi.LAYOUT_PACKED, 1, 6, _ffi.View(0, 0, 0, 0, 0), 2.0, flat_view) == 14  # no offsets
    assert _ffi.lib.trm_weights_divide(_ffi.LAYOUT_PACKED, 1, 6, _ffi.View(0, 0, 0, 0, 0), 2.0, view) == 5  # row stride
    assert (grid == 1).all()
    for code, name in ((30, "TRM_E_BAD_REJECTION"), (31, "TRM_E_BAD_CORRECTION_WEIGHTS"), (32, "TRM_E_BAD_DIVISOR")):
        assert _ffi.lib.trm_status_name(code).decode() == name and _ffi.lib.trm_status_string(code)


def test_aliased_and_stats_struct_refusals():
    lt = np.zeros((2, 3), np.float32)
    assert _c_run(_c_batch(lt, "values"), _c_config(weights=0), _c_out()) == 9  # TRM_E_BAD_INPUTS: needs a log-ratio
    assert _c_run(_c_batch(lt), _c_config(), _c_out(weights=lt)) == 7  # TRM_E_ALIASING: weights over the input
    stats = _ffi.CorrectionStats()
    stats.struct_size = 16
    assert _c_run(_c_batch(lt), _c_config(), _c_out(stats=stats)) == 2
    stats.struct_size, stats.reserved = ctypes.sizeof(_ffi.CorrectionStats), 1
    assert _c_run(_c_batch(lt), _c_config(), _c_out(stats=stats)) == 16
    assert stats.n_rows == 0  # untouched on error


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(0, 6), cols=st.integers(0, 40),
       dtype=st.sampled_from(list(DTYPES)), mask_kind=st.sampled_from(["bool", "uint8", "int64", "float32", "binary_float32"]),
       nonfinite=st.booleans(), scale=st.sampled_from([1e-4, 0.05, 1.0]),
       rejections=st.lists(st.sampled_from(REJECTIONS), max_size=4, unique=True),
       rule=st.sampled_from(WEIGHT_RULES + [None]), mask_weights=st.booleans(), normalize=st.booleans(),
       layout=st.sampled_from(LAYOUTS))
@example(
    seed=6,
    rows=6,
    cols=33,
    dtype='float64',
    mask_kind='bool',
    nonfinite=False,
    scale=1.0,
    rejections=[],
    rule=('token', 'truncate', None, 2.0),
    mask_weights=False,
    normalize=True,
    layout='contiguous',
).via('discovered failure')
def test_hypothesis_matches_reference(seed, rows, cols, dtype, mask_kind, nonfinite, scale, rejections, rule, mask_weights,
                                      normalize, layout):
    lt, lr, mask = _batch(seed, rows, cols, dtype, mask_kind, nonfinite, scale)
    _check(lt, lr, mask, rejections, rule, mask_weights, normalize=normalize and rule is not None, layout=layout, seed=seed)
