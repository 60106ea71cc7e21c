"""Float64 oracle for importance weights beside the mask (docs/semantics.md §5).

Decisions where the contract is silent:

- Weights use delta after the NaN policy and the clamp, like every estimator (docs/semantics.md §2, §4.5).
- ``reject``: a row holding a NaN token gets weight 0 on every token (fail closed, docs/semantics.md §4.5:
  the row fails, as it fails every row criterion). ``skip``: NaN tokens are invalid (weight 0),
  sequence and geometric weights use the remaining tokens. ``zero``: ``rho = 1`` there.
- A weight that is still NaN (a sequence sum of ``+inf`` and ``-inf``) becomes 0 for the same
  reason; ``+inf`` weights stay ``+inf`` unless the mode bounds them.
- ``truncate`` needs ``hi`` (the cap ``C``) and takes no ``lo``; for ``clip`` and ``mask`` an
  absent bound leaves that side open.
"""

from __future__ import annotations

import math

import numpy as np

from ._batch import prepare_batch
from .estimators import estimator_values

__all__ = ["LEVELS", "MODES", "reference_weights"]

LEVELS = ("token", "sequence", "geometric")
MODES = ("truncate", "clip", "mask")


def _bounds(mode: str, lo, hi) -> tuple[float, float]:
    if mode == "truncate":
        if hi is None or lo is not None:
            raise ValueError("`truncate` takes the cap as `hi` and no `lo` (docs/semantics.md §5: min(w, C))")
    lo_f = 0.0 if lo is None else float(lo)
    hi_f = math.inf if hi is None else float(hi)
    if math.isnan(lo_f) or math.isnan(hi_f) or lo_f < 0.0 or lo_f > hi_f:
        raise ValueError(f"weight bounds lo={lo!r}, hi={hi!r}; expected 0 <= lo <= hi, no NaN")
    return lo_f, hi_f


def reference_weights(
    logp_train=None,
    logp_roll=None,
    *,
    log_ratio=None,
    mask=None,
    lengths=None,
    offsets=None,
    level="token",
    mode="truncate",
    lo=None,
    hi=None,
    keep_row=None,
    nan_policy="reject",
    clamp=None,
) -> np.ndarray:
    """Rollout-correction importance weights (docs/semantics.md §5), float64, shaped like the token grid.

    Args:
        logp_train, logp_roll, log_ratio, mask, lengths, offsets, nan_policy, clamp: as in
            `reference_mask` (weights need a log-ratio, so no ``values``).
        level: ``token`` (``w_t = rho_t``), ``sequence`` (``w_i = exp(sum_t delta_t)``) or
            ``geometric`` (``exp(mean_t delta_t)``), sums over the row's counted tokens.
        mode: ``truncate`` (``min(w, hi)``), ``clip`` (``min(max(w, lo), hi)``) or ``mask``
            (``w * [lo <= w <= hi]``).
        keep_row: optional bool ``[B]`` from the mask; rows with False get weight 0.

    Returns:
        Weights, 0 on tokens that are not counted (invalid, skipped NaN, outside every row) and on
        rejected rows. Normalisation is the caller's (docs/semantics.md §5: report both row counts).
    """
    if level not in LEVELS:
        raise ValueError(f"`level` is {level!r}; expected one of {LEVELS}")
    if mode not in MODES:
        raise ValueError(f"`mode` is {mode!r}; expected one of {MODES}")
    lo_f, hi_f = _bounds(mode, lo, hi)
    batch = prepare_batch(
        logp_train, logp_roll, log_ratio, None, mask, lengths, offsets, nan_policy
    )
    keep = np.ones(batch.n_rows, dtype=bool)
    if keep_row is not None:
        keep = np.asarray(keep_row, dtype=bool)
    if keep.shape != (batch.n_rows,):
        raise ValueError(f"`keep_row` has shape {keep.shape}; expected ({batch.n_rows},)")
    keep = keep & ~batch.nan_row

    delta = estimator_values("delta", batch.x, clamp)
    w = np.zeros(batch.x.size)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in np.flatnonzero(keep):
            sl = slice(batch.starts[i], batch.stops[i])
            counted = batch.counted[sl]
            d = delta[sl][counted]
            if d.size == 0:
                continue
            if level == "token":
                row_w = np.exp(d)
            else:
                total = np.sum(d) if level == "sequence" else np.mean(d)
                row_w = np.full(d.size, np.exp(total))
            if mode == "truncate":
                row_w = np.minimum(row_w, hi_f)
            elif mode == "clip":
                row_w = np.minimum(np.maximum(row_w, lo_f), hi_f)
            else:
                row_w = np.where((lo_f <= row_w) & (row_w <= hi_f), row_w, 0.0)
            w[sl][counted] = np.where(np.isnan(row_w), 0.0, row_w)
    return w.reshape(batch.shape)
