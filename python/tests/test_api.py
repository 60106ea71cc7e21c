"""The Python API: argument errors that name the argument, criteria strings, torch tensors in and
out, determinism across thread counts, no copies of inputs, reads that stay inside the caller's
buffers (guard pages)."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import trmask
from trmask import Criterion, TrmaskError


def batch(rows=4, cols=33, seed=0):
    rng = np.random.default_rng(seed)
    lr = -rng.exponential(1.0, (rows, cols)).astype(np.float32)
    lt = (lr + rng.normal(0, 0.05, (rows, cols))).astype(np.float32)
    mask = rng.random((rows, cols)) < 0.9
    return lt, lr, mask


@pytest.mark.parametrize("call,fragment", [
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr.astype(np.int64)),
     "`logp_roll` has dtype int64; expected float32, float64, float16 or bfloat16"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr[:, :5]), "`logp_roll` has shape (4, 5); expected (4, 33)"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, m[:2]), "`mask` has shape (2, 33)"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, m.astype(np.complex64)), "`mask` has dtype complex64"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, lengths=[1, 2]), "`lengths` has shape (2,)"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, lengths=np.ones(4, np.uint64)), "`lengths` has dtype uint64"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt), "pass logp_train and logp_roll"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, log_ratio=lt), "exactly one source"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt[0], lr[0]), "expected [rows, tokens]"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, nan_policy="drop"), "`nan_policy` is 'drop'"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, clamp=0), "`clamp` is 0"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, threads=-1), "`threads` is -1"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, criteria="max:k9<=1"), "estimator 'k9' is unknown"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, criteria="median:k2<=1"), "aggregation 'median' is unknown"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, criteria="max:k2<0.1"), "cannot parse criterion"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, criteria="max:value<=0.1"), "pass it as values="),
    (lambda lt, lr, m: trmask.trust_region_mask(values=lt, criteria="max:k2<=0.1"), "use estimator 'value'"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt.reshape(-1), lr.reshape(-1), offsets=[0, 5, 3]), "TRM_E_BAD_OFFSETS"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, offsets=[0, 5]), "must be 1-D"),
    (lambda lt, lr, m: trmask.trust_region_mask(lt, lr, lengths=np.array([1, 2, 3, 99])), "TRM_E_BAD_LENGTHS"),
    (lambda lt, lr, m: trmask.token_values(lt, lr, "k7"), "`estimator` is 'k7'"),
    (lambda lt, lr, m: trmask.token_values(lt, lr, "k3", out=np.zeros((4, 33))), "`out` has dtype float64"),
    (lambda lt, lr, m: trmask.token_values(lt, lr, "k3", out=np.zeros((4, 3), np.float32)), "`out` has shape (4, 3)"),
    (lambda lt, lr, m: trmask.token_values(lt, lr, "k3", out=lt), "`out` shares memory with the input `logp_train`"),
    (lambda lt, lr, m: trmask.token_values(lt, lr, "k3", out=np.broadcast_to(np.float32(0), lt.shape)), "read-only"),
])
def test_errors_name_the_argument(call, fragment):
    lt, lr, mask = batch()
    with pytest.raises(TrmaskError) as info:
        call(lt, lr, mask)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_error_carries_the_status():
    lt, lr, _ = batch()
    with pytest.raises(TrmaskError) as info:
        trmask.trust_region_mask(lt.reshape(-1), lr.reshape(-1), offsets=[0, 5, 3])
    assert info.value.status == 14 and info.value.status_name == "TRM_E_BAD_OFFSETS"


@pytest.mark.parametrize("args,fragment", [
    (("max", "k2", 0.0, math.nan), "NaN"),
    (("max", "k2", 1.0, 0.5), "greater than hi"),
    (("mean", "k3", -math.inf, -0.1), "never negative"),
    (("token", "ratio", -0.5, 2.0), "ratio space"),
])
def test_criterion_threshold_errors(args, fragment):
    with pytest.raises(TrmaskError, match=fragment):
        Criterion(*args)


def test_criteria_strings():
    assert trmask.parse_criteria("max:k2<=0.1, mean:k3<=0.002") == trmask.DEFAULT_CRITERIA
    assert trmask.parse_criteria("-0.01<=mean:delta<=0.01") == (Criterion("mean", "delta", -0.01, 0.01),)
    assert trmask.parse_criteria("min:delta>=-9.2") == (Criterion("min", "delta", lo=-9.2),)
    assert trmask.parse_criteria("0.5<=token:ratio<=2") == (Criterion("token", "ratio", 0.5, 2.0),)
    assert trmask.parse_criteria("max:K2<=1e-1") == (Criterion("max", "k2", hi=0.1),)
    for c in (Criterion("sum", "delta", -0.5, 0.5), Criterion("max", "abs"), Criterion("min", "ratio", lo=0.25)):
        assert trmask.parse_criteria(str(c)) == (c,)
    with pytest.raises(TrmaskError, match="two lower bounds"):
        trmask.parse_criteria("0.1<=mean:tv>=0.2")
    with pytest.raises(TrmaskError, match="empty"):
        trmask.parse_criteria(" ")


def test_default_criteria_are_the_papers():
    lt, lr, mask = batch()
    default = trmask.trust_region_mask(lt, lr, mask)
    explicit = trmask.trust_region_mask(lt, lr, mask, criteria="max:k2<=0.1,mean:k3<=0.002")
    assert default.criteria == trmask.DEFAULT_CRITERIA
    np.testing.assert_array_equal(default.keep_row, explicit.keep_row)


def test_result_contents():
    lt, lr, mask = batch()
    lt[1, 3] = lr[1, 3] + 2.0  # a spike rejects row 1 under max k2 <= 0.1
    mask[1, 3] = True
    result = trmask.trust_region_mask(lt, lr, mask, criteria="max:k2<=0.1,0.5<=token:ratio<=2")
    assert result.keep_row.dtype == np.bool_ and result.keep_row.shape == (4,)
    assert not result.keep_row[1] and result.rejected[0] >= 1
    assert result.count.dtype == np.int64 and list(result.count) == list(mask.sum(1))
    assert len(result.row_stats) == 1 and result.row_stats[0].dtype == np.float32
    assert result.keep_token.dtype == np.bool_ and result.keep_token.shape == lt.shape
    assert not result.keep_token[1].any()
    assert not (result.keep_token & ~mask).any()
    assert "kept 3/4 rows" in repr(result)


def test_sequence_stats_and_token_values_agree():
    lt, lr, mask = batch()
    stats = trmask.sequence_stats(lt, lr, mask, estimators=("k3", "delta"))
    values = trmask.token_values(lt, lr, "k3")
    for i in range(4):
        row = values[i][mask[i]]
        assert stats.stats["k3"]["max"][i] == row.max() and stats.stats["k3"]["min"][i] == row.min()
        np.testing.assert_allclose(stats.stats["k3"]["sum"][i], row.astype(np.float64).sum(), rtol=1e-6)
    np.testing.assert_allclose(stats.stats["delta"]["mean"], ((lt - lr) * mask).sum(1) / mask.sum(1), rtol=1e-5)
    out = np.empty_like(lt)
    assert trmask.token_values(lt, lr, "k3", out=out) is out
    np.testing.assert_array_equal(out, values)


def test_one_dimensional_token_values():
    lt, lr, _ = batch()
    np.testing.assert_array_equal(trmask.token_values(lt[2], lr[2], "k2"), trmask.token_values(lt, lr, "k2")[2])


def _digest(result) -> str:
    h = hashlib.sha256()
    for array in (result.keep_row, result.count, result.nonfinite, *result.row_stats, result.keep_token):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(repr(result.rejected).encode())
    return h.hexdigest()


def test_bit_identical_for_every_thread_count():
    rng = np.random.default_rng(1)
    lt, lr, mask = batch(rows=97, cols=1000, seed=2)
    lt[rng.random(lt.shape) < 0.001] = np.nan
    criteria = "max:k2<=0.1,mean:k3<=0.002,-0.01<=mean:delta<=0.01,sum:tv<=3,min:ratio>=0.5,0.5<=token:ratio<=2"
    digests = {t: _digest(trmask.trust_region_mask(lt, lr, mask, criteria=criteria, threads=t)) for t in (1, 2, 3, 8)}
    assert len(set(digests.values())) == 1, digests
    values = {t: trmask.token_values(lt, lr, "tv", threads=t).tobytes() for t in (1, 2, 3, 8)}
    assert len(set(values.values())) == 1


def test_inputs_are_not_copied():
    rows, cols = 512, 16384  # 32 MiB per float32 input
    lt = np.zeros((rows, cols), np.float32)
    lr = np.full((rows, cols), -0.01, np.float32)
    mask = np.ones((rows, cols), np.bool_)
    trmask.trust_region_mask(lt[:2], lr[:2], mask[:2])  # warm up any lazy imports
    tracemalloc.start()
    trmask.trust_region_mask(lt, lr, mask)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    keep_token = rows * cols  # the bool token grid is an output, written by the call
    assert peak < (1 << 20) + keep_token, f"peak Python allocation {peak} bytes for 80 MiB of inputs"


def test_reads_stay_inside_the_buffers():
    """Arrays that end right before an inaccessible page: any read past the end would crash the
    child process."""
    script = textwrap.dedent("""
        import ctypes, mmap, numpy as np, trmask
        page = mmap.PAGESIZE
        region = mmap.mmap(-1, 4 * page)
        base = ctypes.addressof(ctypes.c_char.from_buffer(region))
        libc = ctypes.CDLL(None)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        assert libc.mprotect(base + 3 * page, page, 0) == 0        # PROT_NONE after the data
        def tail(n, dtype):                                          # n elements ending at the guard page
            itemsize = np.dtype(dtype).itemsize
            return np.frombuffer(region, dtype=dtype, count=n, offset=3 * page - n * itemsize)
        for rows, cols in [(1, 1), (1, 15), (3, 17), (7, 31), (2, 64), (5, 3)]:
            n = rows * cols
            lt = tail(n, np.float32).reshape(rows, cols)
            lt[...] = -0.5
            for layout in ("rows", "cols"):
                a = lt if layout == "rows" else tail(n, np.float32).reshape(cols, rows).T
                lr = np.full((rows, cols), -0.4, np.float32)
                trmask.trust_region_mask(a, lr, criteria="max:k2<=0.1,mean:k3<=0.002,0.5<=token:ratio<=2").keep_token
                trmask.trust_region_mask(lr, a).keep_row
                trmask.token_values(a, lr, "k3")
                trmask.token_values(log_ratio=a, estimator="tv")
            mask = tail(n, np.uint8).reshape(rows, cols)
            mask[...] = 1
            trmask.trust_region_mask(np.zeros((rows, cols), np.float32), np.zeros((rows, cols), np.float32), mask).keep_token
            out = tail(n, np.float32).reshape(rows, cols)
            trmask.token_values(np.zeros((rows, cols), np.float32), np.zeros((rows, cols), np.float32), "k3", out=out)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


torch = pytest.importorskip("torch", reason="torch is optional")


def test_torch_tensors_in_and_out_without_copies():
    lt, lr, mask = batch()
    tlt, tlr, tmask = torch.from_numpy(lt), torch.from_numpy(lr), torch.from_numpy(mask)
    result = trmask.trust_region_mask(tlt, tlr, tmask)
    reference = trmask.trust_region_mask(lt, lr, mask)
    assert isinstance(result.keep_row, torch.Tensor) and result.keep_row.dtype == torch.bool
    assert isinstance(result.count, torch.Tensor) and result.count.dtype == torch.int64
    np.testing.assert_array_equal(result.keep_row.numpy(), reference.keep_row)
    np.testing.assert_array_equal(result.keep_token.numpy(), reference.keep_token)
    np.testing.assert_array_equal(result.row_stats[1].numpy(), reference.row_stats[1])
    # Views of tensors (transposed, sliced, expanded) are read in place.
    wide = torch.zeros(4, 66)
    wide[:, ::2] = tlt
    sliced = trmask.trust_region_mask(wide[:, ::2], tlr.T.contiguous().T, tmask)
    np.testing.assert_array_equal(sliced.row_stats[0].numpy(), reference.row_stats[0])
    expanded = trmask.trust_region_mask(tlt, tlr[0].expand(4, 33))
    np.testing.assert_array_equal(expanded.keep_row.numpy(),
                                  trmask.trust_region_mask(lt, np.broadcast_to(lr[0], lt.shape)).keep_row)
    values = trmask.token_values(tlt, tlr, "k3")
    assert isinstance(values, torch.Tensor) and values.dtype == torch.float32


def test_torch_tensor_requiring_grad_is_read_not_detached():
    lt, lr, _ = batch()
    tlt = torch.from_numpy(lt).requires_grad_(True)
    result = trmask.trust_region_mask(tlt, torch.from_numpy(lr))
    assert result.keep_row.shape == (4,)
    with pytest.raises(TrmaskError, match="requires grad"):
        trmask.token_values(lt, lr, "k3", out=torch.zeros(4, 33, requires_grad=True))


# ---------------------------------------------------------------------------------------------
# Results hold outputs only (issue 14): computed during the call, no reference to the inputs.


def _fields(result) -> dict:
    """Every public field of a result, copied (arrays as numpy)."""
    names = ("keep_row", "keep_token", "count", "nonfinite", "rejected", "row_stats", "weights", "metrics", "kl")
    out = {}
    for name in names:
        if hasattr(result, name):
            value = getattr(result, name)
            out[name] = [np.array(v) for v in value] if name == "row_stats" else (
                dict(value) if isinstance(value, dict) else (np.array(value) if value is not None else None))
    return out


def _assert_same_fields(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if name == "row_stats":
            assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a[name], b[name])), name
        elif isinstance(a[name], dict):
            assert a[name].keys() == b[name].keys() and all(
                a[name][k] == b[name][k] or (math.isnan(a[name][k]) and math.isnan(b[name][k])) for k in a[name]), name
        elif a[name] is None:
            assert b[name] is None, name
        else:
            assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name


RESULT_CALLS = {
    "fast path": lambda d: trmask.trust_region_mask(d["lt"], d["lr"], d["mask"]),
    "general path": lambda d: trmask.trust_region_mask(
        d["lt"], d["lr"], d["mask"], lengths=d["lengths"], criteria="max:k2<=0.1,mean:k3<=0.002,0.5<=token:ratio<=2",
        weights=trmask.WeightRule("sequence", "truncate", hi=2.0), metrics=True),
    "packed": lambda d: trmask.trust_region_mask(d["lt"].reshape(-1), d["lr"].reshape(-1),
                                                 d["mask"].reshape(-1), offsets=d["offsets"]),
    "sequence_stats": lambda d: trmask.sequence_stats(d["lt"], d["lr"], d["mask"]),
    "importance_weights": lambda d: trmask.importance_weights(d["lt"], d["lr"], d["mask"], level="sequence", hi=2.0),
    "row_partials": lambda d: trmask.row_partials(d["lt"], d["lr"], d["mask"]),
    "keep_from_partials": lambda d: trmask.keep_from_partials(trmask.merge_partials(
        trmask.row_partials(d["lt"][:, :10], d["lr"][:, :10], d["mask"][:, :10]),
        trmask.row_partials(d["lt"][:, 10:], d["lr"][:, 10:], d["mask"][:, 10:]))),
    "exact_trust_region_mask": lambda d: trmask.exact_trust_region_mask(d["train_logits"], d["roll_logits"], d["mask"]),
    "exact_kl": lambda d: trmask.exact_kl(d["train_logits"], d["roll_logits"], mask=d["mask"], tv=True),
}


def _inputs(torch_module=None) -> dict:
    lt, lr, mask = batch(rows=6, cols=33, seed=3)
    lt[2, 4] = 1.0  # a spike: row 2 is rejected
    rng = np.random.default_rng(4)
    roll_logits = rng.normal(0, 2, (6, 33, 20)).astype(np.float32)
    train_logits = (roll_logits + rng.normal(0, 0.05, roll_logits.shape)).astype(np.float32)
    train_logits[2] += rng.normal(0, 3, train_logits[2].shape).astype(np.float32)  # row 2 is rejected
    d = dict(lt=lt, lr=lr, mask=mask, lengths=np.array([33, 0, 20, 33, 5, 31]), offsets=np.arange(7) * 33,
             roll_logits=roll_logits, train_logits=train_logits)
    if torch_module is not None:
        d = {k: torch_module.from_numpy(v) for k, v in d.items()}
    return d


def _plain(result):
    """What to snapshot of a result: the object, or the arrays a function returns directly."""
    if isinstance(result, trmask.RowPartials):
        return {"count": result.count, "nonfinite": result.nonfinite, "sum": result.sum, "max": result.max, "min": result.min}
    if isinstance(result, trmask.SequenceStats):
        return {"count": result.count, **{f"{e}_{a}": v for e, s in result.stats.items() for a, v in s.items()}}
    if isinstance(result, trmask.ExactKLResult):
        return {"kl": result.kl, "tv": result.tv}
    if not hasattr(result, "keep_row"):
        return {"weights": result}
    return result


def _snapshot(result) -> dict:
    plain = _plain(result)
    if isinstance(plain, dict):
        return {k: np.array(v) for k, v in plain.items()}
    return _fields(plain)


@pytest.mark.parametrize("call", list(RESULT_CALLS), ids=list(RESULT_CALLS))
def test_results_do_not_change_when_the_inputs_are_reused(call):
    """Trainers overwrite their buffers after a call: a result must not see that."""
    d = _inputs()
    result = RESULT_CALLS[call](d)
    before = _snapshot(result)
    for name, array in d.items():  # reuse every buffer for the next batch
        array[...] = np.nan if array.dtype.kind == "f" else 0
    after = _snapshot(result)
    if "keep_row" in before:
        _assert_same_fields(before, after)
        keep = before["keep_row"]
        assert keep.any() and not keep.all()
        if "keep_token" in before:
            grid = before["keep_token"].reshape(len(keep), -1)  # packed rows here are equally long
            assert not grid[~keep].any() and grid[keep].any()
    else:
        for key in before:
            assert np.array_equal(before[key], after[key], equal_nan=True), key


@pytest.mark.parametrize("use_torch", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("call", list(RESULT_CALLS), ids=list(RESULT_CALLS))
def test_results_keep_no_reference_to_the_inputs(call, use_torch):
    import gc
    import weakref

    torch = pytest.importorskip("torch") if use_torch else None
    d = _inputs(torch)
    refs = {name: weakref.ref(array) for name, array in d.items()}
    result = RESULT_CALLS[call](d)
    del d
    gc.collect()
    alive = [name for name, ref in refs.items() if ref() is not None]
    assert not alive, f"the result of {call} keeps {alive} alive"
    assert result is not None


def test_keep_token_agrees_with_keep_row_after_the_inputs_change():
    """The report that opened issue 14: keep_row said rows were kept while keep_token, read after
    the mask buffer was cleared, had no token."""
    lt, lr, mask = batch()
    result = trmask.trust_region_mask(lt, lr, mask)
    mask[...] = False
    assert result.keep_row.any()
    np.testing.assert_array_equal(result.keep_token.any(axis=1), result.keep_row & result.keep_token.any(axis=1))
    assert result.keep_token.sum() > 0
    assert type(result.rejected[0]) is int


# ---------------------------------------------------------------------------------------------
# Inputs that cannot be read in place are refused with TrmaskError (issue 14).


def test_big_endian_arrays_are_refused_with_the_fix():
    lt, lr, _ = batch()
    with pytest.raises(TrmaskError, match=r"`logp_roll` is big-endian \(>f4\); use \.astype\('<f4'\)"):
        trmask.trust_region_mask(lt, lr.astype(">f4"))
    with pytest.raises(TrmaskError, match=r"`mask` is big-endian \(>i4\); use \.astype\('<i4'\)"):
        trmask.trust_region_mask(lt, lr, np.ones(lt.shape, ">i4"))


def test_torch_sparse_and_negated_views_are_refused():
    torch = pytest.importorskip("torch")
    lt, lr, mask = (torch.from_numpy(x) for x in batch())
    with pytest.raises(TrmaskError, match=r"`logp_train` is a sparse_coo tensor; .*logp_train\.to_dense\(\)"):
        trmask.trust_region_mask(lt.to_sparse(), lr)
    with pytest.raises(TrmaskError, match=r"`logp_roll` is a lazily negated view .*logp_roll\.resolve_neg\(\)"):
        trmask.trust_region_mask(lt, (-lr)._neg_view())
    imag = torch.complex(lr, lt).conj().imag  # a real tensor whose memory holds -lt
    assert imag.is_neg()
    with pytest.raises(TrmaskError, match="lazily negated"):
        trmask.trust_region_mask(imag, lr)
    with pytest.raises(TrmaskError, match="lazily negated"):
        trmask.exact_kl(torch.zeros(2, 5)._neg_view(), torch.zeros(2, 5))
    resolved = trmask.trust_region_mask(imag.resolve_neg(), lr, mask)  # the fix the message gives
    np.testing.assert_array_equal(resolved.keep_row.numpy(),
                                  trmask.trust_region_mask(-lt.numpy(), lr.numpy(), mask.numpy()).keep_row)


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint16", "int32", "uint32", "int64", "uint64"])
def test_every_integer_mask_type_means_nonzero(dtype):
    lt, lr, mask = batch(seed=5)
    want = trmask.trust_region_mask(lt, lr, mask, criteria="max:k2<=0.001,0.99<=token:ratio<=1.01")
    high = np.iinfo(dtype).max  # a nonzero value whose low byte may be 0xff or 0: read as a whole
    wide = np.where(mask, high if dtype.startswith("u") else np.iinfo(dtype).min, 0).astype(dtype)
    got = trmask.trust_region_mask(lt, lr, wide, criteria="max:k2<=0.001,0.99<=token:ratio<=1.01")
    np.testing.assert_array_equal(got.keep_token, want.keep_token)
    np.testing.assert_array_equal(got.count, want.count)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, dtype):
        tgot = trmask.trust_region_mask(lt, lr, torch.from_numpy(wide), criteria="max:k2<=0.001")
        np.testing.assert_array_equal(tgot.count, want.count)


def test_ragged_lists_are_refused_with_trmask_error():
    with pytest.raises(TrmaskError, match="`logp_train` is a list that is not an array"):
        trmask.trust_region_mask([[0.0, 1.0], [0.0]], [[0.0, 1.0], [0.0, 0.0]])


def test_numpy_masked_arrays_are_refused():
    lt, lr, mask = batch()
    with pytest.raises(TrmaskError, match="`logp_train` is a numpy masked array"):
        trmask.trust_region_mask(np.ma.masked_array(lt, ~mask), lr)


def test_lists_are_read_through_one_documented_copy():
    lt, lr, mask = batch(rows=3, cols=5)
    from_lists = trmask.trust_region_mask(lt.tolist(), lr.tolist(), mask.tolist())
    from_arrays = trmask.trust_region_mask(lt.astype(np.float64), lr.astype(np.float64), mask)
    np.testing.assert_array_equal(from_lists.keep_token, from_arrays.keep_token)
    np.testing.assert_array_equal(from_lists.row_stats[0], from_arrays.row_stats[0])
