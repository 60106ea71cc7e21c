"""Input normalisation shared by the row, weight and metric oracles (docs/semantics.md §1, §4.5, §10).

Both layouts become one flat token array plus row slices: padded ``[B, T]`` is flattened row-major
(row ``i`` is ``i*T ..< (i+1)*T``), packed ``[N]`` keeps its indices (row ``i`` is
``offsets[i] ..< offsets[i+1]``). Results are reshaped to the caller's token grid at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .estimators import float_array
from .estimators import log_ratio as _log_ratio

NAN_POLICIES = ("reject", "skip", "zero")


@dataclass(frozen=True)
class Batch:
    """One batch after validity and the NaN policy are applied (docs/semantics.md §4.5, §10).

    Attributes:
        shape: the token grid, ``(B, T)`` padded or ``(N,)`` packed.
        starts, stops: int64 ``[B]``, row ``i`` is the flat slice ``starts[i] ..< stops[i]``.
        x: float64 flat input, ``delta`` (or the ``values`` divergence), with NaN replaced by 0
            under the ``zero`` policy; clamping is left to the estimators.
        counted: bool flat, the tokens that count: mask and length valid, minus NaN tokens under
            ``skip``. False outside every row.
        count: int64 ``[B]``, counted tokens per row.
        nonfinite: int64 ``[B]``, mask- and length-valid tokens whose input is NaN or +-inf,
            counted under every policy and before any clamp.
        nan_row: bool ``[B]``, rows holding a counted NaN token (only ever set under ``reject``).
        lt_minus_lr: float64 flat ``lt - lr`` of the inputs in float64 (for docs/semantics.md §9's
            ``log_ppl_abs_diff``), with the same NaN treatment as ``x``; ``None`` unless both
            log-probabilities were given.
        is_values: True when the input was a per-token divergence (``values``).
    """

    shape: tuple
    starts: np.ndarray
    stops: np.ndarray
    x: np.ndarray
    counted: np.ndarray
    count: np.ndarray
    nonfinite: np.ndarray
    nan_row: np.ndarray
    lt_minus_lr: np.ndarray | None
    is_values: bool

    @property
    def n_rows(self) -> int:
        return len(self.starts)

    def row(self, i: int, flat: np.ndarray) -> np.ndarray:
        """The counted entries of ``flat`` in row ``i``, in token order."""
        sl = slice(self.starts[i], self.stops[i])
        return flat[sl][self.counted[sl]]


def _row_slices(shape, offsets):
    """Flat ``(starts, stops)`` of every row for the padded or packed layout (docs/semantics.md §10)."""
    if offsets is None:
        if len(shape) != 2:
            raise ValueError(
                f"token arrays have shape {shape}; expected [B, T] (padded) or pass `offsets`"
            )
        n_rows, width = shape
        starts = np.arange(n_rows, dtype=np.int64) * width
        return starts, starts + width
    if len(shape) != 1:
        raise ValueError(f"token arrays have shape {shape}; expected [N] with `offsets` (packed)")
    off = np.asarray(offsets)
    if off.ndim != 1 or off.size == 0 or off.dtype.kind not in "iu":
        raise ValueError("`offsets` must be a 1-D integer array of B + 1 entries")
    off = off.astype(np.int64)
    if off[0] < 0 or off[-1] > shape[0] or np.any(np.diff(off) < 0):
        raise ValueError(
            "`offsets` must be non-decreasing with offsets[0] >= 0 and offsets[B] <= N = "
            f"{shape[0]}"
        )
    return off[:-1].copy(), off[1:].copy()


def prepare_batch(
    logp_train, logp_roll, log_ratio, values, mask, lengths, offsets, nan_policy
) -> Batch:
    """Validate the inputs and build a `Batch` (docs/semantics.md §1, §4.5, §10).

    Exactly one input source: ``logp_train`` and ``logp_roll`` (delta by `log_ratio`'s float32
    convention), ``log_ratio`` (delta as given, widened to float64), or ``values`` (a per-token
    divergence, docs/semantics.md §2 ``value``). Validity is ``mask != 0`` AND ``position < lengths[row]``
    (positions from the row start, also in the packed layout); either may be absent. A length
    longer than its row simply makes the whole row valid.
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"`nan_policy` is {nan_policy!r}; expected one of {NAN_POLICIES}")
    pair = logp_train is not None or logp_roll is not None
    sources = [pair, log_ratio is not None, values is not None]
    if sum(sources) != 1:
        raise ValueError(
            "pass exactly one input: `logp_train` and `logp_roll`, or `log_ratio`, or `values`"
        )
    if pair and (logp_train is None or logp_roll is None):
        raise ValueError("`logp_train` and `logp_roll` must be given together")

    lt_minus_lr = None
    if pair:
        lt = float_array("logp_train", logp_train)
        lr = float_array("logp_roll", logp_roll)
        x = _log_ratio(lt, lr)
        with np.errstate(invalid="ignore"):
            lt_minus_lr = lt.astype(np.float64) - lr.astype(np.float64)
    elif log_ratio is not None:
        x = float_array("log_ratio", log_ratio).astype(np.float64)
    else:
        x = float_array("values", values).astype(np.float64)

    arrays = [x] if lt_minus_lr is None else [x, lt_minus_lr]
    if mask is not None:
        arrays.append(np.asarray(mask) != 0)
    arrays = np.broadcast_arrays(*arrays)
    shape = arrays[0].shape
    starts, stops = _row_slices(shape, offsets)
    x = arrays[0].reshape(-1).copy()
    if lt_minus_lr is not None:
        lt_minus_lr = arrays[1].reshape(-1).copy()

    valid = np.zeros(x.size, dtype=bool)
    for s, e in zip(starts, stops):
        valid[s:e] = True
    if mask is not None:
        valid &= arrays[-1].reshape(-1)
    if lengths is not None:
        lens = np.asarray(lengths)
        if lens.shape != (len(starts),) or lens.dtype.kind not in "iu" or np.any(lens < 0):
            raise ValueError(f"`lengths` must be {len(starts)} integers >= 0 (one per row)")
        for s, e, n in zip(starts, stops, lens.astype(np.int64)):
            valid[min(s + n, e) : e] = False

    rows = np.full(x.size, -1, dtype=np.int64)
    for i, (s, e) in enumerate(zip(starts, stops)):
        rows[s:e] = i
    n_rows = len(starts)

    def per_row(flags):
        return np.bincount(rows[flags], minlength=n_rows).astype(np.int64)

    is_nan = valid & np.isnan(x)
    nonfinite = per_row(valid & ~np.isfinite(x))
    nan_row = np.zeros(n_rows, dtype=bool)
    counted = valid.copy()
    if nan_policy == "skip":
        counted &= ~is_nan
    elif nan_policy == "zero":
        x[is_nan] = 0.0
        if lt_minus_lr is not None:
            lt_minus_lr[is_nan] = 0.0
    else:
        nan_row = per_row(is_nan) > 0
    return Batch(
        shape=shape,
        starts=starts,
        stops=stops,
        x=x,
        counted=counted,
        count=per_row(counted),
        nonfinite=nonfinite,
        nan_row=nan_row,
        lt_minus_lr=lt_minus_lr,
        is_values=values is not None,
    )
