"""Float64 oracle for the per-token estimators (docs/semantics.md §2) and the log-ratio convention.

Everything here is numpy float64, written from the contract (docs/semantics.md) and sharing no code with the kernels: tests
and benchmarks import it as the independent answer. Clarity comes before speed.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ESTIMATORS", "NONNEGATIVE_ESTIMATORS", "estimator_values", "log_ratio"]

#: Estimator names of docs/semantics.md §2, in its order.
ESTIMATORS = ("delta", "k1", "k2", "k3", "abs", "ratio", "tv", "value")

#: Estimators whose value is never negative: a negative upper bound on them is an invalid argument
#: (docs/semantics.md §4.6).
NONNEGATIVE_ESTIMATORS = frozenset({"k2", "k3", "abs", "ratio", "tv"})

# Below this |delta| k3 is summed from its Taylor series. At the threshold, expm1(d) - d cancels
# by a factor below 5 (relative error about eps64 * (|expm1(d)| + |d|) / k3(d) < 2e-15), and the
# series truncated after d^17 / 17! has relative error 2 * 0.5^16 / 18! < 1e-20.
_K3_SERIES_LIMIT = 0.5
# 1/k! for k = 17 down to 2, for Horner's rule.
_K3_SERIES = tuple(1.0 / math.factorial(k) for k in range(17, 1, -1))


def _k3(d: np.ndarray) -> np.ndarray:
    """``exp(d) - 1 - d`` without cancellation; ``k3(+-inf) = +inf``, NaN stays NaN (docs/semantics.md §2)."""
    out = np.empty_like(d)
    small = np.abs(d) < _K3_SERIES_LIMIT
    x = d[small]
    poly = np.zeros_like(x)
    for c in _K3_SERIES:
        poly = poly * x + c
    out[small] = poly * x * x
    big = ~small
    with np.errstate(over="ignore", invalid="ignore"):
        # expm1(+inf) - (+inf) would be NaN; the limit is +inf.
        out[big] = np.where(d[big] == np.inf, np.inf, np.expm1(d[big]) - d[big])
    return out


def _check_clamp(clamp) -> float | None:
    if clamp is None:
        return None
    c = float(clamp)
    if not c > 0.0:
        raise ValueError(f"`clamp` is {c!r}; expected a number > 0 (or None for no clamp)")
    return c


def estimator_values(name: str, delta, clamp=None) -> np.ndarray:
    """Per-token estimator values in float64 (docs/semantics.md §2).

    Args:
        name: one of `ESTIMATORS`.
        delta: array-like of log-ratios ``log pi_theta - log pi_roll`` (or, for ``value``, of
            per-token divergences); any real dtype, widened exactly to float64.
        clamp: optional ``c > 0``: ``delta <- min(max(delta, -c), c)`` first (NaN stays NaN);
            ``None`` (default) or ``inf`` means no clamp.

    Returns:
        A float64 array shaped like ``delta``. ``k3`` is accurate to a few float64 ulps for every
        input (Taylor series near 0, ``expm1`` elsewhere), ``>= 0``, and ``0`` exactly iff
        ``delta == 0``. Overflow gives ``+inf``, never NaN: ``ratio(+big) = tv(+big) = inf``,
        ``k3(+-inf) = +inf``, ``ratio(-inf) = 0``, ``tv(-inf) = 1``. Only NaN inputs give NaN.
    """
    if name not in ESTIMATORS:
        raise ValueError(f"`name` is {name!r}; expected one of {', '.join(ESTIMATORS)}")
    d = np.asarray(delta, dtype=np.float64)
    c = _check_clamp(clamp)
    if c is not None:
        d = np.minimum(np.maximum(d, -c), c)
    with np.errstate(over="ignore"):
        if name in ("delta", "value"):
            return d.copy()
        if name == "k1":
            return -d
        if name == "k2":
            return d * d / 2.0
        if name == "k3":
            return _k3(d)
        if name == "abs":
            return np.abs(d)
        if name == "ratio":
            return np.exp(d)
        return np.abs(np.expm1(d))  # tv


_INPUT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def float_array(name: str, x) -> np.ndarray:
    """``x`` as an array of one of the docs/semantics.md §10 input dtypes (all widen exactly to float64)."""
    a = np.asarray(x)
    if a.dtype.name not in _INPUT_DTYPES:
        raise TypeError(
            f"`{name}` has dtype {a.dtype}; expected float32, float16, bfloat16 or float64"
        )
    return a


def log_ratio(logp_train, logp_roll) -> np.ndarray:
    """The log-ratio ``delta = lt - lr`` exactly as the kernels form it (docs/semantics.md §1, §2).

    float32, bfloat16 and float16 inputs are widened exactly to float32 and subtracted in float32,
    which IEEE 754 rounds once from the exact difference (the vectors' convention: "the exact
    difference rounded once to float32"). float64 inputs are subtracted in float64 and the result
    rounded to float32. ``-inf - -inf`` and NaN inputs give NaN; ``-inf - x`` gives ``-inf``.

    Returns:
        A float64 array (the broadcast shape of the inputs) holding float32 values.
    """
    lt = float_array("logp_train", logp_train)
    lr = float_array("logp_roll", logp_roll)
    with np.errstate(invalid="ignore", over="ignore"):
        if lt.dtype == np.float64 or lr.dtype == np.float64:
            diff = (lt.astype(np.float64) - lr.astype(np.float64)).astype(np.float32)
        else:
            diff = lt.astype(np.float32) - lr.astype(np.float32)
    return diff.astype(np.float64)
