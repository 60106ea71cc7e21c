"""Shared test helpers: the vectors, the tolerance table, and a mismatch reporter.

Tolerances (SPEC §2-§3), one reason each. ``got`` is the library's float32 output, ``ref`` the
float64 reference (``trmask.reference`` or the shared vectors):

| quantity                          | rule                                              | why |
|-----------------------------------|---------------------------------------------------|-----|
| delta, k1, k2, abs per token      | ``got == float32(ref)``                           | SPEC §2: correctly rounded (one subtraction, one multiply) |
| k3, ratio, tv per token           | ``|got - ref| <= 4e-6 |ref| + 1.5e-45``           | SPEC §2 relative bound; the atol is float32's smallest subnormal, for refs that underflow float32 |
| row sum and mean                  | ``|got - ref| <= 2e-6 sum|term| + 1e-30`` (+ the per-token bound times sum|term| for exp estimators) | SPEC §3; float32 terms summed in float64 |
| row max and min                   | bitwise equal to max/min of ``token_values`` (same call, counted tokens); within the per-token bound of the reference | SPEC §3 |
| counts, keep decisions, rejections | exact, except rows whose reference statistic is within the statistic's tolerance of a bound (either answer is right) | a float32 statistic can round across a float64 threshold |
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from hypothesis import settings

# Under CI (the CI variable set, as .ci/run's caller does) Hypothesis draws the same examples on
# every run, so whether a submission lands does not depend on which examples a run happened to
# draw; runs elsewhere keep exploring new ones (and keep what they find in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "Tests" / "vectors"
SHARED_VECTORS = ROOT.parent / "shared" / "vectors"

EXP_ESTIMATORS = ("k3", "ratio", "tv")
TOKEN_RTOL = 4e-6
TOKEN_ATOL = 1.5e-45
SUM_RTOL = 2e-6


def load_vectors(name: str):
    with open(VECTORS / name) as f:
        return json.load(f)


def num(x) -> np.ndarray:
    """JSON numbers with ``"nan"``/``"inf"``/``"-inf"`` strings, as float64."""
    return np.array(x, dtype=object).astype(np.float64)


def float32_range(ref) -> np.ndarray:
    """The reference as a float32 output must show it: values beyond float32's range are ±inf
    (SPEC §2: overflow gives +inf)."""
    ref = np.asarray(ref, dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.where(np.isinf(ref.astype(np.float32)), ref.astype(np.float32), ref).astype(np.float64)


def token_tolerance(estimator: str, ref: np.ndarray) -> np.ndarray:
    """Per-token allowed |got - ref| (SPEC §2)."""
    ref = np.abs(float32_range(ref))
    if estimator in EXP_ESTIMATORS:
        return np.where(np.isfinite(ref), TOKEN_RTOL * ref + TOKEN_ATOL, 0.0)
    # Correctly rounded: within half an ulp of float32, i.e. got == float32(ref).
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(ref), np.abs(ref - ref.astype(np.float32).astype(np.float64)), 0.0)


def random_deltas(rng, shape, special: bool) -> np.ndarray:
    """Log-ratios like real mismatch: mostly small, 5% large, and with `special` 3% NaN and 2%
    each of +inf and -inf."""
    d = rng.normal(0.0, 0.02, size=shape)
    big = rng.random(shape) < 0.05
    d[big] = rng.normal(0.0, 2.0, size=int(big.sum()))
    if special:
        pick = rng.random(shape)
        d[pick < 0.03] = np.nan
        d[(pick >= 0.03) & (pick < 0.05)] = np.inf
        d[(pick >= 0.05) & (pick < 0.07)] = -np.inf
    return d


def report(got, expected, tolerance, what: str) -> None:
    """Asserts ``|got - expected| <= tolerance`` elementwise (NaN matches NaN, inf matches inf);
    on failure lists the first differing indices with both values, flagging NaN/Inf present on
    one side only."""
    got = np.asarray(got, dtype=np.float64)
    exp = float32_range(expected)
    assert got.shape == exp.shape, f"{what}: shape {got.shape} != {exp.shape}"
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), exp.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = (got == exp) | (np.isnan(got) & np.isnan(exp)) | (np.abs(got - exp) <= tol)
    bad = np.argwhere(~ok)
    if bad.size == 0:
        return
    lines = [f"{what}: {len(bad)} of {exp.size} differ"]
    for index in bad[:8]:
        index = tuple(index)
        g, e = got[index], exp[index]
        flag = ""
        if np.isfinite(g) != np.isfinite(e):
            flag = "  <-- non-finite on one side only"
        lines.append(f"  at {index}: got {g!r}, expected {e!r}, |diff| {abs(g - e):.3g}, tol {tol[index]:.3g}{flag}")
    raise AssertionError("\n".join(lines))
