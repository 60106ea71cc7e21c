"""Float64 oracle for the error-bound calculator (docs/semantics.md §7).

Every sum is evaluated term by term over ``t = 1..T`` and added with ``math.fsum`` (correctly
rounded), so this file is simple and obviously right rather than fast: it is O(T) in time and memory
and is meant for tests and benchmarks, not for ``T = 10**9``. It shares no code with the Swift
closed forms in ``Sources/TRMaskKernels/Bounds.swift``; the two are checked against each other and
against ``Tests/vectors/bounds.json``.

``kl_max`` stands for ``delta = D_KL^{tok,max}``, the maximum token KL over **all reachable
contexts**, which is what the theorems need. A maximum over a training batch is only a plug-in
estimate of it: bounds computed from a batch maximum are estimates, not guarantees.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["reference_bounds"]

_KEYS = (
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
)


def _check_nonnegative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` has type {type(value).__name__}; expected a real number")
    x = float(value)
    if not math.isfinite(x) or x < 0.0:
        raise ValueError(f"`{name}` is {x!r}; expected a finite number >= 0")
    return x


def reference_bounds(T, kl_max, kl_seq, *, eps=None, tv_seq=None, dbar=None, reward_range=1.0):
    """Every bound of docs/semantics.md §7 in float64, by direct summation.

    Args:
        T: sequence length, an integer >= 1.
        kl_max: ``delta = D_KL^{tok,max}`` (nats), finite and >= 0. A batch maximum is only a
            plug-in estimate of the maximum over all reachable contexts that the theorems assume.
        kl_seq: ``D_KL^{seq}`` (nats), finite and >= 0.
        eps: ``D_TV^{tok,max}``; ``None`` means the Pinsker value ``sqrt(kl_max / 2)``.
        tv_seq: ``D_TV^{seq}``; ``None`` means ``sqrt(kl_seq / 2)``.
        dbar: per-position mean TV ``Dbar_1..Dbar_T`` (length ``T``, finite, >= 0); ``None`` means
            ``eps`` at every position.
        reward_range: ``r_max - r_min``, finite and > 0; every bound is multiplied by it.

    Returns:
        A dict with exactly the keys ``classical_tv, classical_kl, coupling, pm_kl, pm_tv,
        mixed_kl, mixed_tv, linear, adaptive, unified`` (floats).

    Raises:
        TypeError / ValueError naming the offending argument.
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)):
        raise TypeError(f"`T` has type {type(T).__name__}; expected an integer >= 1")
    T = int(T)
    if T < 1:
        raise ValueError(f"`T` is {T}; expected an integer >= 1")
    delta = _check_nonnegative("kl_max", kl_max)
    kl_seq = _check_nonnegative("kl_seq", kl_seq)
    eps = math.sqrt(delta / 2.0) if eps is None else _check_nonnegative("eps", eps)
    tv_seq = math.sqrt(kl_seq / 2.0) if tv_seq is None else _check_nonnegative("tv_seq", tv_seq)
    reward_range = _check_nonnegative("reward_range", reward_range)
    if reward_range == 0.0:
        raise ValueError("`reward_range` is 0.0; expected a finite number > 0")
    if dbar is None:
        dbar = [eps] * T
    else:
        arr = np.asarray(dbar, dtype=np.float64)
        if arr.shape != (T,):
            raise ValueError(f"`dbar` has shape {arr.shape}; expected ({T},)")
        if not (np.all(np.isfinite(arr)) and np.all(arr >= 0.0)):
            raise ValueError(
                "`dbar` has a negative or non-finite entry; expected finite values >= 0"
            )
        dbar = [float(x) for x in arr]

    half = delta / 2.0
    ts = range(1, T + 1)
    min1_eps = min(1.0, eps)
    min1_pinsker = min(1.0, math.sqrt(half))

    out = {
        "classical_tv": 2.0 * T * (T - 1) * eps * eps,
        "classical_kl": float(T) * (T - 1) * delta,
        "coupling": 4.0 * min1_eps * math.fsum(min(1.0, (t - 1) * eps) for t in ts),
        "pm_kl": 4.0 * min1_pinsker * math.fsum(min(1.0, math.sqrt((t - 1) * half)) for t in ts),
        "pm_tv": 4.0 * min1_eps * math.fsum(min(1.0, math.sqrt((t - 1) * half)) for t in ts),
        "mixed_kl": 4.0 * T * min1_pinsker * min(1.0, math.sqrt(kl_seq / 2.0)),
        "mixed_tv": 4.0 * T * min1_eps * min(1.0, tv_seq),
        "linear": 4.0 * math.fsum(dbar),
        "adaptive": 4.0
        * math.fsum(
            dbar[t - 1] * min(1.0, (T - t) * eps, math.sqrt((T - t) * half)) for t in ts
        ),
    }
    out["unified"] = min(
        out["pm_kl"],
        out["pm_tv"],
        out["mixed_kl"],
        out["mixed_tv"],
        out["coupling"],
        out["adaptive"],
    )
    return {k: out[k] * reward_range for k in _KEYS}
