"""Exact KL, TV, token log-probs and the top-k bound from logits (SPEC §6), and the exact TRM,
against the shared vectors and the float64 reference (`trmask.reference`).

Tolerances (got vs the float64 reference on the same float32/bfloat16/float16 logits), one reason
each:

- KL and the top-k bound: ``1e-4 * ref + 1e-8`` (SPEC §6, the contract). The kernel measures
  ~1e-7 relative; the bound leaves room for float32 rounding of ``(a - b) / tau`` per entry.
- TV: ``1e-5 * ref + 1e-8``: sums of ``p |expm1(.)|`` with float32 terms, no cancellation.
- token log-probabilities: ``1e-6 * |ref| + 2e-7``: ``x_y - logsumexp``, float32 output of a
  float64 difference whose log-sum-exp is accurate to about 1e-7.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trmask
from trmask.errors import TrmaskError
from trmask.reference import reference_exact_kl, reference_topk_kl_lower_bound

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None
try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

VECTORS = Path(__file__).resolve().parents[2] / "Tests" / "vectors"
LOGIT_CASES = json.load(open(VECTORS / "logits.json"))

KL_TOL = (1e-4, 1e-8)
TV_TOL = (1e-5, 1e-8)
LOGP_TOL = (1e-6, 2e-7)


def num(x) -> np.ndarray:
    return np.array(x, dtype=object).astype(np.float64)


def assert_close(got, expected, what: str, tol) -> None:
    """Equal NaN and infinity patterns, else ``|got - exp| <= rtol |exp| + atol``. On failure,
    prints the first differing positions with both values."""
    rtol, atol = tol
    got = np.asarray(got, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    assert got.shape == exp.shape, f"{what}: shape {got.shape} != expected {exp.shape}"
    with np.errstate(invalid="ignore"):
        ok = (np.isnan(got) & np.isnan(exp)) | (got == exp) | (np.abs(got - exp) <= rtol * np.abs(exp) + atol)
    bad = np.argwhere(~ok)
    if bad.size:
        lines = []
        for index in bad[:5]:
            g, e = got[tuple(index)], exp[tuple(index)]
            flag = " (non-finite on one side only)" if np.isfinite(g) != np.isfinite(e) else ""
            lines.append(f"  at {tuple(index)}: got {g!r}, expected {e!r}, diff {abs(g - e):.3g}{flag}")
        pytest.fail(f"{what}: {len(bad)} of {got.size} differ (rtol {rtol}, atol {atol}):\n" + "\n".join(lines))


def f64(x) -> np.ndarray:
    """The exact float64 values of an array of any float dtype (numpy, ml_dtypes or torch)."""
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).numpy()
    return np.asarray(x).astype(np.float64)


def check_against_reference(a, b, temperature=1.0, token_ids=None, tv=True, threads=0, **kwargs):
    result = trmask.exact_kl(b, a, temperature=temperature, token_ids=token_ids, tv=tv, threads=threads, **kwargs)
    ids = None if token_ids is None else f64(token_ids).astype(np.int64)
    ref = reference_exact_kl(f64(b), f64(a), temperature=temperature, token_ids=ids)
    assert_close(f64(result.kl), ref["kl"], "kl", KL_TOL)
    # KL alone takes the float32-difference fast path (TV and token log-probs need the exact one)
    alone = trmask.exact_kl(b, a, temperature=temperature, threads=threads, **kwargs)
    assert_close(f64(alone.kl), ref["kl"], "kl (alone)", KL_TOL)
    if tv:
        assert_close(f64(result.tv), ref["tv"], "tv", TV_TOL)
    if token_ids is not None:
        assert_close(f64(result.logp_roll_token), ref["logp_roll_token"], "logp_roll_token", LOGP_TOL)
        assert_close(f64(result.logp_train_token), ref["logp_train_token"], "logp_train_token", LOGP_TOL)
    return result, ref


def top_k(logits: np.ndarray, temperature: float, k: int):
    """The rollout's top-k log-probabilities and ids, as vLLM returns them (float64)."""
    z = logits.astype(np.float64) / temperature
    m = np.max(z, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = z - (m + np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True)))
    ids = np.argsort(-logp, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(logp, ids, axis=-1), ids


# ---------------------------------------------------------------------------------------------
# The shared known answers.


@pytest.mark.parametrize("case", LOGIT_CASES, ids=[c["name"] for c in LOGIT_CASES])
def test_vectors(case):
    a = num(case["rollout_logits"]).astype(np.float32)
    b = num(case["train_logits"]).astype(np.float32)
    ids = np.array(case["token_ids"], dtype=np.int64)
    t = case["temperature"]
    result = trmask.exact_kl(b, a, temperature=t, token_ids=ids, tv=True)
    expected = case["expected"]
    assert result.kl.dtype == np.float32 and result.kl.shape == (case["n"],)
    assert_close(result.kl, num(expected["kl"]), "kl", KL_TOL)
    assert_close(result.tv, num(expected["tv"]), "tv", TV_TOL)
    assert_close(result.logp_roll_token, num(expected["logp_roll_token"]), "logp_roll_token", LOGP_TOL)
    assert_close(result.logp_train_token, num(expected["logp_train_token"]), "logp_train_token", LOGP_TOL)
    lp, top_ids = top_k(a, t, 8)
    bound = trmask.topk_kl_lower_bound(b, lp, top_ids, temperature=t)
    assert_close(bound, num(expected["topk8_kl_lower_bound"]), "topk8_kl_lower_bound", KL_TOL)
    # the bound never exceeds the KL it bounds
    assert np.all(bound <= result.kl * (1 + 1e-5) + 1e-8)


# ---------------------------------------------------------------------------------------------
# Property tests against the float64 reference.

VOCABS = st.sampled_from([1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 100, 257, 1000, 4099])
NOISES = st.sampled_from([0.0, 1e-7, 1e-5, 1e-3, 0.05, 0.3, 1.0, 5.0])


@st.composite
def logit_pairs(draw, dtype=np.float32):
    n = draw(st.integers(1, 4))
    v = draw(VOCABS)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = draw(st.sampled_from(["normal", "wide", "peaked", "uniform60"]))
    if shape == "normal":
        a = rng.normal(0, 3, (n, v))
    elif shape == "wide":
        a = rng.normal(0, 15, (n, v))
    elif shape == "peaked":
        a = rng.normal(-20, 5, (n, v))
        a[np.arange(n), rng.integers(0, v, n)] = 30
    else:
        a = rng.uniform(-60, 60, (n, v))
    noise = draw(NOISES)
    b = a + rng.normal(0, noise, (n, v)) + draw(st.sampled_from([0.0, 0.0, 3.0, -40.0]))
    if draw(st.booleans()):  # runs of -inf (masked vocabulary), on one side or both
        start = rng.integers(0, v, n)
        for i in range(n):
            run = slice(start[i], min(v, start[i] + rng.integers(1, max(2, v // 3))))
            side = rng.integers(0, 3)
            if side in (0, 2):
                a[i, run] = -np.inf
            if side in (1, 2):
                b[i, run] = -np.inf
    a = np.clip(a, -60, 60, where=np.isfinite(a), out=a)
    b = np.clip(b, -60, 60, where=np.isfinite(b), out=b)
    return a.astype(dtype), b.astype(dtype)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=logit_pairs(), temperature=st.sampled_from([1.0, 1.0, 0.7, 0.5, 2.0, 1.3]), data=st.data())
def test_against_reference(pair, temperature, data):
    a, b = pair
    ids = data.draw(st.lists(st.integers(0, a.shape[1] - 1), min_size=a.shape[0], max_size=a.shape[0]))
    check_against_reference(a, b, temperature, token_ids=np.array(ids, dtype=np.int32))


@settings(max_examples=60, deadline=None)
@given(pair=logit_pairs(), k=st.integers(1, 12), temperature=st.sampled_from([1.0, 0.7, 2.0]))
def test_topk_against_reference(pair, k, temperature):
    a, b = pair
    k = min(k, a.shape[1])
    lp, ids = top_k(a, temperature, k)
    got = trmask.topk_kl_lower_bound(b, lp, ids, temperature=temperature)
    ref = reference_topk_kl_lower_bound(b.astype(np.float64), lp, ids, temperature)
    # A rollout row that is -inf everywhere has NaN log-probs: the kernel fails closed (NaN) where
    # the reference's masks happen to give 0.
    no_rollout = np.any(np.isnan(lp), axis=-1)
    ref[no_rollout] = np.nan
    # 1 - Q below its float64 resolution (~1e-14 per token) is rounding noise on both sides: the
    # kernel takes it at that resolution, the reference at whatever its sum gave (even 0 and
    # +inf). Compare only where 1 - Q is resolved.
    z = b.astype(np.float64) / temperature
    with np.errstate(invalid="ignore"):  # a training row of -inf logits has NaN log-probs
        logq = z - (np.max(z, -1, keepdims=True) + np.log(np.sum(np.exp(z - np.max(z, -1, keepdims=True)), -1, keepdims=True)))
    lq = np.take_along_axis(logq, ids, -1)
    rest_q = 1 - np.sum(np.exp(lq), -1)
    unresolved = rest_q < 1e-12
    ref[unresolved] = got[unresolved]
    # A remainder 1 - P at the rounding level (<= 1e-12) is dropped by the kernel (documented):
    # compare with the head alone there.
    full = (1 - np.sum(np.exp(lp), axis=-1)) <= 1e-12
    if np.any(full):
        with np.errstate(invalid="ignore"):
            head = np.sum(np.where(np.exp(lp) > 0, np.exp(lp) * (lp - lq), 0.0), -1)
        ref[full & ~no_rollout] = head[full & ~no_rollout]
    assert_close(got, ref, "topk bound", KL_TOL)
    lp32 = lp.astype(np.float32)
    got32 = trmask.topk_kl_lower_bound(b, lp32, ids.astype(np.int32), temperature=temperature)
    ref32 = reference_topk_kl_lower_bound(b.astype(np.float64), lp32.astype(np.float64), ids, temperature)
    ref32[no_rollout] = np.nan
    # Rounding the log-probs to float32 leaves a spurious remainder 1 - P ~ 1e-7; when every token
    # is listed (k = V) the true 1 - Q is 0 and the bound is +inf for the kernel and rounding
    # noise for the reference: compare only k < V.
    keep = ((1 - np.sum(np.exp(lp32.astype(np.float64)), axis=-1)) > 1e-12) & (k < a.shape[1]) & ~unresolved
    assert_close(got32[keep], ref32[keep], "topk bound (float32 log-probs)", KL_TOL)


@pytest.mark.skipif(ml_dtypes is None, reason="ml_dtypes is not installed")
@settings(max_examples=60, deadline=None)
@given(pair=logit_pairs(), mix=st.sampled_from(["bf16", "f16", "bf16-f32", "f32-f16", "f16-bf16"]),
       temperature=st.sampled_from([1.0, 0.7]))
def test_dtypes_against_reference(pair, mix, temperature):
    a, b = pair
    kinds = {"bf16": ml_dtypes.bfloat16, "f16": np.float16, "f32": np.float32}
    left, _, right = mix.partition("-")
    a = a.astype(kinds[left])
    b = b.astype(kinds[right or left])
    check_against_reference(a, b, temperature)


def test_layouts_strided_transposed_reversed_3d():
    rng = np.random.default_rng(7)
    a = (rng.normal(0, 4, (6, 301))).astype(np.float32)
    b = (a + rng.normal(0, 0.1, a.shape)).astype(np.float32)
    for name, x, y in [
        ("contiguous", a, b),
        ("reversed vocab", a[:, ::-1], b[:, ::-1]),
        ("every other position", a[::2], b[::2]),
        ("strided vocab", a[:, ::3], b[:, ::3]),
        ("transposed storage", np.asfortranarray(a), b),
        ("3-D", a.reshape(2, 3, 301), b.reshape(2, 3, 301)),
        ("3-D transposed", a.reshape(3, 2, 301).transpose(1, 0, 2), b.reshape(3, 2, 301).transpose(1, 0, 2)),
    ]:
        result, ref = check_against_reference(x, y, 0.9, token_ids=np.zeros(x.shape[:-1], dtype=np.int64))
        assert result.kl.shape == x.shape[:-1], name


def test_vocabulary_of_one_and_one_hot():
    a = np.array([[3.0], [-60.0]], dtype=np.float32)
    result, _ = check_against_reference(a, a + 5, token_ids=np.zeros(2, dtype=np.int64))
    assert np.all(result.kl == 0) and np.all(result.tv == 0) and np.all(result.logp_roll_token == 0)
    one_hot = np.full((3, 40), -np.inf, dtype=np.float32)
    one_hot[:, 5] = 0.0
    other = one_hot.copy()
    other[1, 6] = 0.0  # q spreads over two tokens: KL = log 2
    other[2, 5], other[2, 7] = -np.inf, 0.0  # q = 0 where p = 1: KL = +inf
    result, _ = check_against_reference(one_hot, other)
    assert result.kl[0] == 0 and abs(result.kl[1] - np.log(2)) < 1e-7 and result.kl[2] == np.inf
    assert result.tv[2] == 1


def test_near_identical_and_shift_give_zero():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 8, (4, 151936)).astype(np.float32)
    for b in (a.copy(), (a + np.float32(7.25)).astype(np.float32), (a - np.float32(33.0)).astype(np.float32)):
        result, ref = check_against_reference(a, b)
        assert np.all(np.abs(result.kl.astype(np.float64) - ref["kl"]) <= 1e-8)
        assert np.all(result.kl <= 1e-8)
    # one ulp apart everywhere: the naive formula cancels here
    b = np.nextafter(a, np.float32(np.inf))
    check_against_reference(a, b)
    b = (a + rng.normal(0, 1e-4, a.shape)).astype(np.float32)
    check_against_reference(a, b)


def test_one_token_differs_first_or_last():
    v = 20000
    a = np.zeros((2, v), dtype=np.float32)
    a[:, 0] = 1.0
    b = a.copy()
    b[0, 0] = 2.0   # the odd token is the first one (the reference entry's neighbourhood)
    b[1, -1] = 0.5  # or the last one (the scalar tail)
    check_against_reference(a, b)


def test_largest_vocabulary_with_extreme_logits():
    rng = np.random.default_rng(11)
    v = 262144
    a = rng.uniform(-60, 60, (3, v)).astype(np.float32)
    b = np.empty_like(a)
    b[0] = a[0] + rng.normal(0, 1e-3, v)
    b[1] = np.clip(a[1] + rng.normal(0, 0.5, v), -60, 60)
    b[2] = rng.uniform(-60, 60, v)
    check_against_reference(a, b, token_ids=rng.integers(0, v, 3))
    z = rng.normal(0, 2, (2, v)).astype(np.float32)
    check_against_reference(z, (z + rng.normal(0, 0.02, z.shape)).astype(np.float32), temperature=0.6)


def test_mask_skips_positions_without_reading_them():
    rng = np.random.default_rng(5)
    a = rng.normal(0, 3, (3, 4, 50)).astype(np.float32)
    b = (a + rng.normal(0, 0.2, a.shape)).astype(np.float32)
    mask = rng.random((3, 4)) < 0.6
    mask[0, 0] = True
    a[~mask] = np.nan  # never read: a read would give NaN outputs
    b[~mask] = np.nan
    ids = rng.integers(0, 50, (3, 4))
    ids[~mask] = -100  # padding labels are not checked either
    result = trmask.exact_kl(b, a, mask=mask, token_ids=ids, tv=True)
    for out in (result.kl, result.tv, result.logp_roll_token, result.logp_train_token):
        assert np.all(out[~mask] == 0)
    ref = reference_exact_kl(b[mask], a[mask], token_ids=ids[mask])
    assert_close(result.kl[mask], ref["kl"], "kl", KL_TOL)
    assert_close(result.logp_train_token[mask], ref["logp_train_token"], "logp_train_token", LOGP_TOL)
    bound = trmask.topk_kl_lower_bound(b, *top_k(np.nan_to_num(a), 1.0, 4), mask=mask)
    assert np.all(bound[~mask] == 0)


def test_nan_and_inf_logits_give_nan_where_no_distribution():
    a = np.zeros((4, 20), dtype=np.float32)
    b = np.zeros((4, 20), dtype=np.float32)
    a[0, 3] = np.nan
    b[1, 19] = np.inf
    a[2, :] = -np.inf
    b[3, :] = -np.inf
    result = trmask.exact_kl(b, a, tv=True, token_ids=np.zeros(4, dtype=np.int64))
    assert np.all(np.isnan(result.kl)) and np.all(np.isnan(result.tv))
    assert np.isnan(result.logp_roll_token[0]) and np.isnan(result.logp_train_token[3])


def test_determinism_across_threads():
    rng = np.random.default_rng(9)
    a = rng.normal(0, 4, (64, 3001)).astype(np.float32)
    b = (a + rng.normal(0, 0.2, a.shape)).astype(np.float32)
    b[::7, 100:140] = -np.inf
    digests = set()
    for threads in (1, 2, 3, 8):
        r = trmask.exact_kl(b, a, tv=True, token_ids=np.arange(64) * 13, threads=threads)
        alone = trmask.exact_kl(b, a, threads=threads)  # the float32-difference path
        bound = trmask.topk_kl_lower_bound(b, *top_k(a, 1.0, 5), threads=threads)
        h = hashlib.sha256()
        for x in (r.kl, r.tv, r.logp_roll_token, r.logp_train_token, alone.kl, bound):
            h.update(np.ascontiguousarray(x).tobytes())
        digests.add(h.hexdigest())
    assert len(digests) == 1


@pytest.mark.skipif(torch is None, reason="torch is not installed")
def test_torch_tensors_bf16_in_torch_out():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 500, generator=g) * 3
    b = a + 0.05 * torch.randn(2, 3, 500, generator=g)
    mask = torch.ones(2, 3, dtype=torch.bool)
    mask[1, 2] = False
    leaf = a.clone().requires_grad_(True)  # logits straight from a training forward pass
    for x, y in [(a, b), (leaf, b), (a.bfloat16(), b), (a.bfloat16(), b.bfloat16()), (a.half(), b.bfloat16())]:
        result = trmask.exact_kl(y, x, mask=mask, token_ids=torch.zeros(2, 3, dtype=torch.int64), tv=True)
        assert isinstance(result.kl, torch.Tensor) and result.kl.dtype == torch.float32
        ref = reference_exact_kl(f64(y), f64(x), token_ids=np.zeros((2, 3), dtype=np.int64))
        m = mask.numpy()
        assert_close(result.kl.numpy()[m], ref["kl"][m], "kl", KL_TOL)
        assert result.kl[1, 2] == 0
        # torch's own exact KL, for the direction (KL(p_roll || p_train))
        lp, lq = torch.log_softmax(f64_t(x), -1), torch.log_softmax(f64_t(y), -1)
        kl_torch = (lp.exp() * (lp - lq)).sum(-1)
        assert torch.allclose(result.kl[m].double(), kl_torch[m], rtol=1e-4, atol=1e-7)


def f64_t(x):
    return x.detach().to(torch.float64)


def test_exact_trust_region_mask_matches_reference_criteria():
    rng = np.random.default_rng(2)
    a = rng.normal(0, 3, (5, 6, 200)).astype(np.float32)
    noise = np.array([0.001, 0.01, 0.05, 0.3, 1.0])[:, None, None]
    b = (a + rng.normal(0, 1, a.shape) * noise).astype(np.float32)
    mask = np.ones((5, 6), dtype=bool)
    mask[2, 4:] = False
    result = trmask.exact_trust_region_mask(b, a, mask)
    ref = reference_exact_kl(b, a)["kl"]
    keep = [bool(np.max(ref[i][mask[i]]) <= 0.1 and np.mean(ref[i][mask[i]]) <= 0.002) for i in range(5)]
    assert list(result.keep_row) == keep
    assert result.kl.shape == (5, 6) and np.all(result.kl[~mask] == 0)
    assert [str(c) for c in result.criteria] == ["max:value<=0.1", "mean:value<=0.002"]
    custom = trmask.exact_trust_region_mask(b, a, mask, criteria="max:value<=0.5")
    assert list(custom.keep_row) == [bool(np.max(ref[i][mask[i]]) <= 0.5) for i in range(5)]
    # packed rows: the same positions as [N, V] with offsets
    flat = trmask.exact_trust_region_mask(b[mask], a[mask], offsets=np.array([0, 6, 12, 16, 22, 28]))
    assert list(flat.keep_row) == keep


def test_bad_arguments_reach_every_new_status():
    a = np.zeros((2, 8), dtype=np.float32)
    with pytest.raises(TrmaskError) as error:
        trmask.exact_kl(a, a, temperature=1e-50)  # finite and > 0, but 1/tau overflows float32
    assert error.value.status_name == "TRM_E_BAD_TEMPERATURE"
    with pytest.raises(TrmaskError, match="temperature"):
        trmask.exact_kl(a, a, temperature=0.0)
    with pytest.raises(TrmaskError) as error:
        trmask.exact_kl(a, a, token_ids=np.array([0, 8]))
    assert error.value.status_name == "TRM_E_BAD_TOKEN_ID"
    with pytest.raises(TrmaskError) as error:
        trmask.topk_kl_lower_bound(a, np.full((2, 2), -1.0), np.array([[1, 1], [0, 2]]))
    assert error.value.status_name == "TRM_E_BAD_TOKEN_ID"
    with pytest.raises(TrmaskError, match="float32, bfloat16 or float16"):
        trmask.exact_kl(a.astype(np.float64), a)
    with pytest.raises(TrmaskError, match="shape"):
        trmask.exact_kl(a, np.zeros((2, 9), dtype=np.float32))
    with pytest.raises(TrmaskError, match="`mask` has dtype int32; expected bool or uint8"):
        trmask.exact_kl(a, a, mask=np.ones(2, np.int32))
    with pytest.raises(TrmaskError) as error:
        trmask.exact_kl(np.zeros((2, 0), dtype=np.float32), np.zeros((2, 0), dtype=np.float32))
    assert error.value.status_name == "TRM_E_BAD_SIZE"
    empty = trmask.exact_kl(np.zeros((0, 5), dtype=np.float32), np.zeros((0, 5), dtype=np.float32), tv=True)
    assert empty.kl.shape == (0,) and empty.tv.shape == (0,)


def _guarded(shape, dtype):
    """An array whose last byte ends right before a PROT_NONE page: a read past the end faults."""
    import ctypes
    import mmap
    itemsize = np.dtype(dtype).itemsize
    nbytes = int(np.prod(shape)) * itemsize
    page = mmap.PAGESIZE
    total = (nbytes + page - 1) // page * page + page
    region = mmap.mmap(-1, total, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(base + total - page, page, 0) == 0
    start = total - page - nbytes
    array = np.frombuffer(region, dtype=np.uint8, count=nbytes, offset=start).view(dtype).reshape(shape)
    return array, region


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("v", [1, 15, 16, 17, 33, 1000])
def test_no_read_past_the_logits(dtype, v):
    """Buffers end at a guard page, so a vector load past the last logit crashes the test."""
    if dtype == "bfloat16":
        if ml_dtypes is None:
            pytest.skip("ml_dtypes is not installed")
        dtype = ml_dtypes.bfloat16
    rng = np.random.default_rng(v)
    a, keep_a = _guarded((3, v), dtype)
    b, keep_b = _guarded((3, v), dtype)
    a[...] = rng.normal(0, 2, (3, v)).astype(dtype)
    b[...] = (a.astype(np.float32) + rng.normal(0, 0.1, (3, v))).astype(dtype)
    ids = np.full(3, v - 1)
    result, _ = check_against_reference(a, b, token_ids=ids)
    lp, top = top_k(a.astype(np.float64), 1.0, min(v, 4))
    trmask.topk_kl_lower_bound(b, lp, top)
    # reversed vocabulary: the first logit is the one next to the guard page
    check_against_reference(a[:, ::-1], b[:, ::-1])
    del keep_a, keep_b


def test_training_side_first_everywhere():
    """One argument order (CHANGELOG 0.2.0): training first, rollout second, as in
    trust_region_mask(logp_train, logp_roll); the KL stays KL(pi_roll || pi_theta), and keyword
    arguments name each side."""
    import inspect

    for function in (trmask.exact_kl, trmask.exact_trust_region_mask, trmask.topk_kl_lower_bound):
        first, second = list(inspect.signature(function).parameters)[:2]
        assert first == "train_logits" and second.startswith("rollout_"), function.__name__
    rng = np.random.default_rng(11)
    roll = rng.normal(0, 2, (3, 40)).astype(np.float32)
    train = (roll + rng.normal(0, 0.5, roll.shape)).astype(np.float32)
    got = trmask.exact_kl(train_logits=train, rollout_logits=roll).kl
    lp = np.log(np.exp(roll.astype(np.float64)) / np.exp(roll.astype(np.float64)).sum(-1, keepdims=True))
    lq = np.log(np.exp(train.astype(np.float64)) / np.exp(train.astype(np.float64)).sum(-1, keepdims=True))
    forward = (np.exp(lp) * (lp - lq)).sum(-1)  # KL(pi_roll || pi_theta): expectation under the rollout
    reverse = (np.exp(lq) * (lq - lp)).sum(-1)
    assert_close(got, forward, "KL(roll || train)", KL_TOL)
    assert not np.allclose(forward, reverse, rtol=1e-2)  # the test tells the two directions apart
    assert np.array_equal(trmask.exact_kl(train, roll).kl, got)
    positions = trmask.exact_trust_region_mask(train[None], roll[None], criteria="max:value<=100").kl
    assert np.array_equal(positions[0], got)


# Hypothesis found this pair (temperature 0.5): the training row's logits are all below -13 while
# the rollout row's largest logit, 30, sits where the training row is -inf, so the running scale
# jumps to 60 and every training weight of the fast float32 path lands near or below float32's
# normal range (e^-87), where it keeps fewer bits. Such a position is recomputed in float64
# (`trainMassIsFarBelowScale` in ExactKL.swift); before, the training token's log-prob was off by
# 1.3e-6 relative (the promise is 1e-6).
def test_token_logp_when_the_scale_comes_from_the_other_side():
    a = np.array([
        [-19.99384880065918, -18.506271362304688, -21.370689392089844, -24.452959060668945, -22.273353576660156, -24.958232879638672, -19.699281692504883, -13.29892349243164, -22.46103286743164, -23.102375030517578, -17.55078887939453, 30.0, -19.472929000854492, -24.652339935302734, -20.146259307861328, -16.523483276367188, -26.721073150634766, -22.28807830810547, -29.506113052368164, -26.447689056396484, -29.208675384521484, -21.17545509338379, -26.33723258972168, -18.643678665161133, -19.216243743896484, -20.934654235839844, -32.583797454833984, -22.693464279174805, -20.242504119873047, -19.433454513549805, -27.650678634643555, -22.38876724243164],
        [-24.892595291137695, -24.044185638427734, -14.695507049560547, -24.037673950195312, -20.162609100341797, -15.57805061340332, -22.91800308227539, 30.0, -19.44767951965332, -19.68109130859375, -26.12527847290039, -19.619298934936523, -13.205883026123047, -27.7357234954834, -15.703086853027344, -19.403230667114258, -23.207351684570312, -9.997917175292969, -16.188701629638672, -25.996444702148438, -19.627418518066406, -17.116552352905273, -20.943910598754883, -16.58544921875, -20.33258628845215, -16.66376304626465, -12.807387351989746, -23.378311157226562, -18.98430633544922, -22.316537857055664, -19.363656997680664, -25.935972213745117]], dtype=np.float32)
    b = np.array([
        [-19.99384880065918, -18.506271362304688, -21.370689392089844, -24.452959060668945, -22.273353576660156, -24.958232879638672, -19.699281692504883, -13.29892349243164, -22.46103286743164, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -22.28807830810547, -29.506113052368164, -26.447689056396484, -29.208675384521484, -21.17545509338379, -26.33723258972168, -18.643678665161133, -19.216243743896484, -20.934654235839844, -32.583797454833984, -22.693464279174805, -20.242504119873047, -19.433454513549805, -27.650678634643555, -22.38876724243164],
        [-24.892595291137695, -24.044185638427734, -14.695507049560547, -24.037673950195312, -20.162609100341797, -15.57805061340332, -22.91800308227539, 30.0, -19.44767951965332, -19.68109130859375, -26.12527847290039, -19.619298934936523, -13.205883026123047, -27.7357234954834, -15.703086853027344, -19.403230667114258, -23.207351684570312, -9.997917175292969, -16.188701629638672, -25.996444702148438, -19.627418518066406, -17.116552352905273, -20.943910598754883, -16.58544921875, -20.33258628845215, -16.66376304626465, -12.807387351989746, -23.378311157226562, -18.98430633544922, -22.316537857055664, -np.inf, -np.inf]], dtype=np.float32)
    check_against_reference(a, b, 0.5, token_ids=np.array([1, 0], dtype=np.int32))


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("q_at_the_peak", ["-inf", "finite"])
def test_training_mass_far_below_the_rollout_scale(temperature, q_at_the_peak):
    """One rollout logit far above the rest sets the scale; the training logits follow the
    rollout's 60 lower (so most entries take the fast path) and are -inf or far lower at that
    peak. Every training weight then sits near or below float32's normal range: before the
    float64 recomputation the training log-probs were off by 2.4 nats at temperature 0.5, and
    TV came out as 6.2 (above its maximum 1)."""
    rng = np.random.default_rng(3)
    v = 1000
    roll = rng.normal(0, 1, (2, v)).astype(np.float32)
    train = (roll - 60 + rng.normal(0, 0.01, roll.shape)).astype(np.float32)
    roll[:, 5] = 60.0
    train[:, 5] = -np.inf if q_at_the_peak == "-inf" else -200.0
    result, _ = check_against_reference(roll, train, temperature, token_ids=np.array([3, 700], dtype=np.int32))
    assert np.all(f64(result.tv) <= 1.0)
