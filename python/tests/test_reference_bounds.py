"""Tests of the float64 error-bound oracle (SPEC §7) against the known answers.

Tolerances: bounds.json is float64 from an independent implementation, so 1e-12 relative (the sums
run over up to 1e5 terms, each rounded once); the SPEC §7 tables print 4 to 7 significant digits,
so they are compared at half a unit of their last printed digit.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from trmask.reference.bounds import reference_bounds

VECTORS = Path(__file__).resolve().parents[2] / "Tests" / "vectors" / "bounds.json"
KEYS = [
    "classical_tv",
    "classical_kl",
    "coupling",
    "pm_kl",
    "pm_tv",
    "mixed_kl",
    "mixed_tv",
    "linear",
    "adaptive",
    "unified",
]
RTOL = 1e-12


def _cases():
    return json.loads(VECTORS.read_text())


def _run(case, **extra):
    kw = {}
    if case["eps"] != "derived":
        kw["eps"] = case["eps"]
    if case["tv_seq"] != "derived":
        kw["tv_seq"] = case["tv_seq"]
    kw.update(extra)
    return reference_bounds(case["T"], case["delta"], case["kl_seq"], **kw)


def _rel(got, want):
    return abs(got - want) / abs(want) if want != 0 else abs(got)


@pytest.mark.parametrize("index", range(len(_cases())))
def test_vectors(index):
    case = _cases()[index]
    got = _run(case)
    assert list(got) == KEYS
    want = case["expected"]
    bad = [(k, got[k], want[k]) for k in KEYS if _rel(got[k], want[k]) > RTOL]
    assert not bad, f"case {index} (T={case['T']}, delta={case['delta']}): (key, got, want) {bad}"


def test_vectors_worst_error_report(capsys):
    worst = max(_rel(_run(c)[k], c["expected"][k]) for c in _cases() for k in KEYS)
    with capsys.disabled():
        print(f"\nreference_bounds vs bounds.json: worst relative error {worst:.3e}")
    assert worst <= RTOL


# SPEC §7 known answers, T = 4096, delta = 1e-4, kl_seq = 0.01, as printed (digits, value).
SPEC_KL_ONLY = {
    "classical_kl": "1677.312",
    "classical_tv": "1677.312",
    "coupling": "113.8382",
    "pm_kl": "34.94609",
    "pm_tv": "34.94609",
    "mixed_kl": "8.192",
    "mixed_tv": "8.192",
    "linear": "115.8524",
    "adaptive": "34.94609",
    "unified": "8.192",
}
SPEC_KL_TV = {
    "classical_tv": "838.656",
    "classical_kl": "1677.312",
    "coupling": "79.910",
    "pm_kl": "34.94609",
    "pm_tv": "24.71062",
    "mixed_kl": "8.192",
    "mixed_tv": "4.096",
    "linear": "81.920",
    "adaptive": "24.71058",
    "unified": "4.096",
}


def _matches_printed(value, printed):
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(value - float(printed)) <= 0.5 * 10.0 ** (-decimals) + 1e-12 * abs(value)


@pytest.mark.parametrize(
    "kwargs,table",
    [({}, SPEC_KL_ONLY), ({"eps": 5e-3, "tv_seq": 0.05}, SPEC_KL_TV)],
    ids=["kl_only", "kl_tv"],
)
def test_spec_table(kwargs, table):
    got = reference_bounds(4096, 1e-4, 0.01, **kwargs)
    bad = [(k, got[k], v) for k, v in table.items() if not _matches_printed(got[k], v)]
    assert not bad, bad


def test_spec_large_regime():
    got = reference_bounds(4096, 1.0, 1.0)
    assert _matches_printed(got["classical_kl"], "16773120")
    assert _matches_printed(got["classical_tv"], "16773120")
    assert _matches_printed(got["pm_kl"], "11581.58")
    assert _matches_printed(got["mixed_kl"], "8192")
    assert _matches_printed(got["mixed_tv"], "8192")
    assert _matches_printed(got["linear"], "11585.24")
    # The paper's (4/3) T^1.5 delta is the closed-form upper bound of PM-KL, not its value.
    small = reference_bounds(4096, 1e-4, 0.01)
    assert small["pm_kl"] < 4.0 / 3.0 * 4096**1.5 * 1e-4
    assert _matches_printed(4.0 / 3.0 * 4096**1.5 * 1e-4, "34.95")


def test_reward_range_scales_every_bound():
    base = reference_bounds(300, 0.01, 0.2, eps=0.03)
    scaled = reference_bounds(300, 0.01, 0.2, eps=0.03, reward_range=2.5)
    for k in KEYS:
        assert scaled[k] == pytest.approx(2.5 * base[k], rel=1e-15, abs=0.0)


def test_dbar_equal_to_eps_matches_default():
    eps = 0.004
    base = reference_bounds(1000, 1e-4, 0.01, eps=eps)
    with_dbar = reference_bounds(1000, 1e-4, 0.01, eps=eps, dbar=np.full(1000, eps))
    assert with_dbar == base


def test_dbar_enters_linear_and_adaptive_only():
    T, delta, eps = 50, 0.02, 0.08
    dbar = np.linspace(0.0, 0.1, T)
    got = reference_bounds(T, delta, 0.3, eps=eps, dbar=dbar)
    base = reference_bounds(T, delta, 0.3, eps=eps)
    assert got["linear"] == pytest.approx(4.0 * dbar.sum(), rel=1e-15)
    want = 4.0 * sum(
        dbar[t - 1] * min(1.0, (T - t) * eps, math.sqrt((T - t) * delta / 2.0))
        for t in range(1, T + 1)
    )
    assert got["adaptive"] == pytest.approx(want, rel=1e-14)
    for k in ("classical_tv", "classical_kl", "coupling", "pm_kl", "pm_tv", "mixed_kl", "mixed_tv"):
        assert got[k] == base[k]


def test_t_equals_one_and_zero_divergence():
    one = reference_bounds(1, 0.1, 0.1)
    assert one["coupling"] == one["pm_kl"] == one["adaptive"] == one["classical_kl"] == 0.0
    zero = reference_bounds(1000, 0.0, 0.0)
    assert all(v == 0.0 for v in zero.values())


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"T": 0}, "T"),
        ({"T": 2.0}, "T"),
        ({"kl_max": -1e-9}, "kl_max"),
        ({"kl_max": math.nan}, "kl_max"),
        ({"kl_seq": math.inf}, "kl_seq"),
        ({"eps": -0.1}, "eps"),
        ({"eps": math.inf}, "eps"),
        ({"tv_seq": math.nan}, "tv_seq"),
        ({"dbar": [0.1] * 9}, "dbar"),
        ({"dbar": [0.1] * 9 + [math.nan]}, "dbar"),
        ({"dbar": [0.1] * 9 + [-0.1]}, "dbar"),
        ({"reward_range": 0.0}, "reward_range"),
        ({"reward_range": -1.0}, "reward_range"),
        ({"reward_range": math.inf}, "reward_range"),
    ],
)
def test_bad_arguments_are_named(kwargs, name):
    args = {"T": 10, "kl_max": 0.01, "kl_seq": 0.1}
    args.update(kwargs)
    T, kl_max, kl_seq = args.pop("T"), args.pop("kl_max"), args.pop("kl_seq")
    with pytest.raises((ValueError, TypeError), match=f"`{name}`"):
        reference_bounds(T, kl_max, kl_seq, **args)
