"""Tests of the error-bound calculator through the C ABI (`trmask.bounds`, SPEC §7) and of the
plug-in bounds from a batch (`trmask.plugin_bounds`).

Tolerances (relative), one reason each:
- 1e-12 against Tests/vectors/bounds.json and against the float64 oracle `reference_bounds`: both
  are float64 sums of rounded terms; the library is a few ulps (its closed forms and Neumaier
  sums), the oracle correctly rounded (fsum), so any real difference is far above 1e-12.
- exact equality where the same float32 row statistics feed the same call (plug-in paths).
- 2e-6 for a plug-in ``kl_seq`` rebuilt from float32 row means times counts (SPEC §3: float32
  outputs of float64 sums).
"""

from __future__ import annotations

import ctypes
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trmask
from trmask import _ffi
from trmask._api import raise_for_status
from trmask.reference.bounds import reference_bounds

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "Tests" / "vectors" / "bounds.json").read_text())
RTOL = 1e-12


def _rel(got: float, want: float) -> float:
    return abs(got - want) / abs(want) if want != 0 else abs(got)


def _worst(got: dict, want: dict) -> list:
    """Keys off by more than RTOL relative. Differences below the smallest normal float64 pass:
    subnormal results (a bound from eps ~ 1e-310) keep only a few significant bits, so two correct
    evaluations can differ there by far more than RTOL relative."""
    return [(k, got[k], want[k]) for k in trmask.BOUND_KEYS
            if _rel(got[k], want[k]) > RTOL and abs(got[k] - want[k]) >= sys.float_info.min]


# ---------------------------------------------------------------------------------------------
# The calculator
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", range(len(VECTORS)))
def test_vectors_through_the_c_abi(index):
    case = VECTORS[index]
    kwargs = {k: case[k] for k in ("eps", "tv_seq") if case[k] != "derived"}
    got = trmask.bounds(case["T"], case["delta"], case["kl_seq"], **kwargs)
    assert tuple(got) == trmask.BOUND_KEYS == tuple(case["expected"])
    assert not _worst(got, case["expected"]), f"case {index}: (key, got, want) {_worst(got, case['expected'])}"


@settings(max_examples=150, deadline=None)
@given(T=st.integers(1, 2000),
       kl_max=st.one_of(st.just(0.0), st.floats(1e-9, 5.0)),
       kl_seq=st.floats(0.0, 5.0),
       eps=st.one_of(st.none(), st.floats(0.0, 2.0)),
       tv_seq=st.one_of(st.none(), st.floats(0.0, 1.5)),
       reward_range=st.floats(1e-3, 1e3),
       with_dbar=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_against_the_float64_oracle(T, kl_max, kl_seq, eps, tv_seq, reward_range, with_dbar, seed):
    dbar = np.random.default_rng(seed).uniform(0.0, 0.2, T) if with_dbar else None
    got = trmask.bounds(T, kl_max, kl_seq, eps=eps, tv_seq=tv_seq, dbar=dbar, reward_range=reward_range)
    want = reference_bounds(T, kl_max, kl_seq, eps=eps, tv_seq=tv_seq, dbar=dbar, reward_range=reward_range)
    assert not _worst(got, want)


def test_huge_T_is_closed_form():
    """Without dbar every bound is a closed form in T (a loop to T = 2^62 would never return)."""
    for T in (10**7, 10**9, 2**62):
        got = trmask.bounds(T, 1e-4, 0.01)
        assert all(math.isfinite(v) and v >= 0 for v in got.values())
        assert got == trmask.bounds(T, 1e-4, 0.01)
    # T = 10^7 with a dbar array equal to eps everywhere gives the closed form's adaptive bound.
    got = trmask.bounds(10**7, 1e-4, 0.01, dbar=np.full(10**7, math.sqrt(0.5e-4)))
    assert _rel(got["adaptive"], trmask.bounds(10**7, 1e-4, 0.01)["adaptive"]) < 1e-12


def test_dbar_accepts_lists_float32_and_torch():
    want = trmask.bounds(5, 0.01, 0.1, dbar=np.array([0.1, 0.2, 0.0, 0.05, 0.3]))
    assert trmask.bounds(5, 0.01, 0.1, dbar=[0.1, 0.2, 0.0, 0.05, 0.3]) == want
    as32 = np.array([0.1, 0.2, 0.0, 0.05, 0.3], dtype=np.float32)
    assert trmask.bounds(5, 0.01, 0.1, dbar=as32)["linear"] == pytest.approx(4 * float(as32.astype(float).sum()), rel=1e-15)
    torch = pytest.importorskip("torch")
    assert trmask.bounds(5, 0.01, 0.1, dbar=torch.tensor([0.1, 0.2, 0.0, 0.05, 0.3], dtype=torch.float64)) == want


def test_numpy_scalars_are_accepted():
    assert trmask.bounds(np.int64(4096), np.float32(1e-4), np.float64(0.01)) == trmask.bounds(
        4096, float(np.float32(1e-4)), 0.01)


@pytest.mark.parametrize("name,value", [
    ("T", 0), ("T", -1), ("T", 2**63), ("T", 2.0), ("T", True), ("T", "4096"), ("T", None),
    ("kl_max", -1e-12), ("kl_max", math.nan), ("kl_max", math.inf), ("kl_max", "0.1"), ("kl_max", None),
    ("kl_seq", -1.0), ("kl_seq", math.nan), ("kl_seq", -math.inf), ("kl_seq", True),
    ("eps", -0.1), ("eps", math.nan), ("eps", math.inf),
    ("tv_seq", -0.1), ("tv_seq", math.nan), ("tv_seq", math.inf),
    ("reward_range", 0.0), ("reward_range", -1.0), ("reward_range", math.inf), ("reward_range", math.nan),
    ("dbar", [0.1] * 9), ("dbar", np.zeros((2, 5))), ("dbar", [0.1] * 9 + [math.nan]),
    ("dbar", [0.1] * 9 + [-1e-9]), ("dbar", [0.1] * 9 + [math.inf]), ("dbar", ["a"] * 10),
])
def test_every_bad_input_is_named(name, value):
    args = {"T": 10, "kl_max": 0.01, "kl_seq": 0.1}
    args[name] = value
    T, kl_max, kl_seq = args.pop("T"), args.pop("kl_max"), args.pop("kl_seq")
    with pytest.raises(trmask.TrmaskError, match=f"`{name}(\\[\\d+\\])?`") as info:
        trmask.bounds(T, kl_max, kl_seq, **args)
    assert info.value.status == 0  # refused by the Python checks, before the library


# ---------------------------------------------------------------------------------------------
# The C entry point behind the Python checks
# ---------------------------------------------------------------------------------------------

def _request(**fields):
    values = dict(struct_size=ctypes.sizeof(_ffi.BoundInputs), reserved=0, T=10, kl_max=0.01, kl_seq=0.1,
                  eps=math.nan, tv_seq=math.nan, reward_range=1.0, dbar=None, dbar_count=0)
    values.update(fields)
    return _ffi.BoundInputs(**values)


def _call(request, out=None):
    out = out if out is not None else _ffi.BoundsOut(ctypes.sizeof(_ffi.BoundsOut), 0)
    return _ffi.lib.trm_bounds_compute(ctypes.byref(request), ctypes.byref(out)), out


@pytest.mark.parametrize("fields", [
    {"T": 0}, {"T": -5}, {"kl_max": -1.0}, {"kl_max": math.nan}, {"kl_seq": math.inf}, {"eps": -1.0},
    {"eps": math.inf}, {"tv_seq": -math.inf}, {"reward_range": -1.0}, {"reward_range": math.nan},
])
def test_status_20_from_the_c_abi(fields):
    status, out = _call(_request(**fields))
    assert status == 20
    assert _ffi.lib.trm_status_name(status) == b"TRM_E_BAD_BOUND_INPUT"
    assert out.unified == 0.0  # untouched
    with pytest.raises(trmask.TrmaskError, match="error-bound input") as info:
        raise_for_status(status, "bounds")
    assert (info.value.status, info.value.status_name) == (20, "TRM_E_BAD_BOUND_INPUT")


def test_status_20_for_bad_dbar_from_the_c_abi():
    values = (ctypes.c_double * 3)(0.1, math.nan, 0.1)
    assert _call(_request(T=3, dbar=values, dbar_count=3))[0] == 20
    assert _call(_request(T=4, dbar=values, dbar_count=3))[0] == 20
    good = (ctypes.c_double * 3)(0.1, 0.2, 0.1)
    status, out = _call(_request(T=3, dbar=good, dbar_count=3))
    assert status == 0 and out.linear == pytest.approx(1.6, rel=1e-15)


def test_other_statuses_of_trm_bounds_compute():
    out = _ffi.BoundsOut(ctypes.sizeof(_ffi.BoundsOut), 0)
    assert _ffi.lib.trm_bounds_compute(None, ctypes.byref(out)) == 1
    assert _ffi.lib.trm_bounds_compute(ctypes.byref(_request()), None) == 1
    assert _call(_request(struct_size=8))[0] == 2
    assert _call(_request(), _ffi.BoundsOut(8, 0))[0] == 2
    assert _call(_request(reserved=1))[0] == 16
    assert _call(_request(), _ffi.BoundsOut(ctypes.sizeof(_ffi.BoundsOut), 3))[0] == 16
    assert _call(_request(dbar_count=-1))[0] == 3
    assert _call(_request(dbar_count=10))[0] == 1  # NULL dbar with a count
    near_top = ctypes.cast(ctypes.c_void_p(2**64 - 16), ctypes.POINTER(ctypes.c_double))
    assert _call(_request(dbar=near_top, dbar_count=10))[0] == 6  # never dereferenced


def test_header_and_ctypes_agree():
    header = (ROOT / "include" / "trmask.h").read_text()
    assert re.search(r"#define TRM_E_BAD_BOUND_INPUT 20\b", header)
    for c_name, struct in (("trm_bound_inputs_t", _ffi.BoundInputs), ("trm_bounds_t", _ffi.BoundsOut)):
        body = re.search(rf"typedef struct {c_name} \{{(.*?)\}} {c_name};", header, re.S).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        fields = re.findall(r"(\w+)\s*;", body)
        assert fields == [name for name, _ in struct._fields_], c_name
    assert "trm_status_t trm_bounds_compute(const trm_bound_inputs_t *inputs, trm_bounds_t *out);" in header
    assert [k for k, _ in _ffi.BoundsOut._fields_[2:]] == list(trmask.BOUND_KEYS)


# ---------------------------------------------------------------------------------------------
# Plug-in bounds from a batch
# ---------------------------------------------------------------------------------------------

def _batch(seed=0, rows=24, cols=200):
    rng = np.random.default_rng(seed)
    lr = -rng.exponential(0.4, (rows, cols)).astype(np.float32)
    lt = (lr + rng.normal(0, 0.02, (rows, cols)) * rng.lognormal(0, 1, (rows, 1))).astype(np.float32)
    lengths = rng.integers(0, cols + 1, rows)
    lengths[:2] = (0, cols)
    mask = np.arange(cols)[None, :] < lengths[:, None]
    return lt, lr, mask


def _expected(stats_max, stats_sum, count, keep=None):
    use = (count > 0) & np.isfinite(stats_max) & np.isfinite(stats_sum)
    if keep is not None:
        use &= keep
    T = int(count[use].max())
    kl_max = float(stats_max[use].astype(np.float64).max())
    kl_seq = float(stats_sum[use].astype(np.float64).mean())
    return T, kl_max, kl_seq


def test_plugin_from_sequence_stats():
    lt, lr, mask = _batch()
    stats = trmask.sequence_stats(lt, lr, mask)
    got = trmask.plugin_bounds(stats, reward_range=2.0)
    T, kl_max, kl_seq = _expected(stats.stats["k2"]["max"], stats.stats["k3"]["sum"], stats.count)
    assert (got.T, got.kl_max, got.kl_seq) == (T, kl_max, kl_seq)
    assert got.T == int(mask.sum(1).max())
    assert got.bounds == trmask.bounds(T, kl_max, kl_seq, reward_range=2.0)
    assert (got.source, got.rows_used, got.estimators, got.excluded_rows) == ("sequence_stats", "all", ("k2", "k3"), 0)
    assert got.rows == int((mask.sum(1) > 0).sum())


def test_plugin_from_mask_result_sum_and_mean_criteria():
    lt, lr, mask = _batch(1)
    stats = trmask.plugin_bounds(trmask.sequence_stats(lt, lr, mask))
    with_sum = trmask.plugin_bounds(trmask.trust_region_mask(lt, lr, mask, criteria="max:k2<=0.1,sum:k3"))
    assert (with_sum.T, with_sum.kl_max, with_sum.kl_seq, with_sum.bounds) == (
        stats.T, stats.kl_max, stats.kl_seq, stats.bounds)
    assert with_sum.source == "row_stats"
    # The default criteria have mean:k3: the per-row sum is rebuilt as mean * count.
    with_mean = trmask.plugin_bounds(trmask.trust_region_mask(lt, lr, mask))
    assert (with_mean.T, with_mean.kl_max) == (stats.T, stats.kl_max)
    assert with_mean.kl_seq == pytest.approx(stats.kl_seq, rel=2e-6)


def test_plugin_kept_only_uses_kept_rows():
    lt, lr, mask = _batch(2)
    lt[3, 5] += 3.0  # a spike: row 3 fails max:k2 <= 0.1
    mask[3, 5] = True
    result = trmask.trust_region_mask(lt, lr, mask, criteria="max:k2<=0.1,sum:k3")
    assert not result.keep_row[3]
    kept = trmask.plugin_bounds(result, kept_only=True)
    everything = trmask.plugin_bounds(result)
    assert kept.rows_used == "kept" and kept.kl_max <= 0.1 < everything.kl_max
    T, kl_max, kl_seq = _expected(result.row_stats[0], result.row_stats[1], result.count, result.keep_row)
    assert (kept.T, kept.kl_max, kept.kl_seq) == (T, kl_max, kl_seq)


def test_plugin_leaves_out_non_finite_rows_and_counts_them():
    lt, lr, mask = _batch(3)
    lr[4, 0] = np.nan
    lt[5, 1] = -np.inf
    mask[4:6, :2] = True
    got = trmask.plugin_bounds(trmask.sequence_stats(lt, lr, mask))
    assert got.excluded_rows == 2
    assert all(math.isfinite(v) for v in got.bounds.values())
    assert "2 rows with a NaN or infinite statistic are left out" in str(got)


def test_plugin_from_values_input():
    rng = np.random.default_rng(4)
    kl = rng.exponential(1e-3, (6, 50)).astype(np.float32)
    got = trmask.plugin_bounds(trmask.trust_region_mask(values=kl, criteria="max:value<=1,sum:value"))
    assert got.estimators == ("value", "value")
    assert got.kl_max == float(kl.max()) and got.T == 50
    assert got.kl_seq == pytest.approx(float(kl.astype(np.float64).sum(1).mean()), rel=2e-6)


def test_plugin_from_metrics_when_row_stats_lack_the_criteria():
    lt, lr, mask = _batch(5)
    result = trmask.trust_region_mask(lt, lr, mask, criteria="max:abs<=1")
    with pytest.raises(trmask.TrmaskError, match="needs a max:k2 criterion"):
        trmask.plugin_bounds(result)
    result.metrics = {"plugin_kl_max": 0.02, "plugin_kl_seq": 0.3, "plugin_max_len": 150, "n_rows_nonempty": 20}
    got = trmask.plugin_bounds(result)
    assert (got.source, got.T, got.kl_max, got.kl_seq, got.rows) == ("metrics", 150, 0.02, 0.3, 20)
    assert got.bounds == trmask.bounds(150, 0.02, 0.3)
    result.metrics["plugin_kl_max"] = math.inf
    with pytest.raises(trmask.TrmaskError, match="plugin_kl_max inf"):
        trmask.plugin_bounds(result)


def test_plugin_errors_name_what_is_missing():
    lt, lr, mask = _batch(6)
    with pytest.raises(trmask.TrmaskError, match="sum:k3 or mean:k3"):
        trmask.plugin_bounds(trmask.trust_region_mask(lt, lr, mask, criteria="max:k2<=0.1"))
    with pytest.raises(trmask.TrmaskError, match="estimators k2 and k3"):
        trmask.plugin_bounds(trmask.sequence_stats(lt, lr, mask, estimators=("k2",)))
    with pytest.raises(trmask.TrmaskError, match="`kept_only` needs a MaskResult"):
        trmask.plugin_bounds(trmask.sequence_stats(lt, lr, mask), kept_only=True)
    with pytest.raises(trmask.TrmaskError, match="`result` has type dict"):
        trmask.plugin_bounds({"k2": 1})
    with pytest.raises(trmask.TrmaskError, match="`reward_range`"):
        trmask.plugin_bounds(trmask.sequence_stats(lt, lr, mask), reward_range=0)
    with pytest.raises(trmask.TrmaskError, match="no non-empty rows"):
        trmask.plugin_bounds(trmask.sequence_stats(lt, lr, np.zeros_like(mask)))


def test_plugin_from_torch_results():
    torch = pytest.importorskip("torch")
    lt, lr, mask = _batch(7)
    want = trmask.plugin_bounds(trmask.sequence_stats(lt, lr, mask))
    got = trmask.plugin_bounds(trmask.sequence_stats(torch.from_numpy(lt), torch.from_numpy(lr), torch.from_numpy(mask)))
    assert (got.T, got.kl_max, got.kl_seq, got.bounds) == (want.T, want.kl_max, want.kl_seq, want.bounds)


def test_every_plugin_output_carries_the_caveat():
    lt, lr, mask = _batch(8)
    got = trmask.plugin_bounds(trmask.sequence_stats(lt, lr, mask))
    assert "plug-in estimate" in str(got) and "plug-in estimate" in repr(got)
    assert got.to_dict()["caveat"] == trmask.PLUGIN_CAVEAT
    assert "not the maximum token KL over all reachable contexts" in trmask.PLUGIN_CAVEAT
    for documented in (trmask.plugin_bounds, trmask.PluginBounds, trmask.bounds):
        assert "plug-in estimate" in " ".join(documented.__doc__.split())
