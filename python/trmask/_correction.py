"""Rollout correction in verl's arithmetic (docs/rollout-correction.md): rejection options,
importance weights and their statistics in one native call, `rollout_correction`, and the in-place
weight division a distributed caller needs, `divide_weights`."""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from . import _arrays, _ffi
from ._api import _PreparedBatch, raise_for_status
from ._arrays import FLOAT_DTYPES, INDEX_DTYPES, Operand
from ._correction_rows import CorrectionCall, CorrectionRows, statistics_dict
from ._weights import WeightRule, WeightsLike, normalize_weights
from .errors import TrmaskError

LEVELS = tuple(_ffi.REJECTION_LEVELS)
_ESTIMATORS = ("k1", "k2", "k3")
_DTYPE_CODES = {"float32": _ffi.DTYPE_F32, "float64": _ffi.DTYPE_F64, "float16": _ffi.DTYPE_F16,
                "bfloat16": _ffi.DTYPE_BF16}


@dataclass(frozen=True)
class Rejection:
    """One rejection option: ``level`` ``token`` (keep a token iff ``lo <= k(d_t) <= hi``),
    ``seq_sum``, ``seq_mean`` or ``seq_max`` (keep a row iff its masked sum, mean or max of
    ``k(d_t)`` is in ``[lo, hi]``); ``estimator`` ``k1`` (``-d``), ``k2`` (``d^2/2``) or ``k3``
    (``exp(d) - 1 - d``, the naive form), of ``d = clamp(delta)``. Bounds are inclusive, rounded to
    the dtype of the statistic; None leaves a side open. verl's ``seq_mean_k3`` with ``"0.002"`` is
    ``Rejection("seq_mean", "k3", hi=0.002)``; its k1 ``"lower_upper"`` is
    ``lo=math.log(lower), hi=math.log(upper)`` on ``k1 = -delta``."""

    level: str
    estimator: str
    lo: Optional[float] = None
    hi: Optional[float] = None

    def __post_init__(self):
        if self.level not in LEVELS:
            raise TrmaskError(f"rejection `level` is {self.level!r}; expected one of {', '.join(LEVELS)}")
        if self.estimator not in _ESTIMATORS:
            raise TrmaskError(f"rejection `estimator` is {self.estimator!r}; expected one of {', '.join(_ESTIMATORS)}")
        lo, hi = self.bounds()
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise TrmaskError(f"rejection bounds lo={self.lo!r}, hi={self.hi!r}; expected lo <= hi, no NaN")

    def bounds(self) -> tuple:
        return (-math.inf if self.lo is None else float(self.lo), math.inf if self.hi is None else float(self.hi))


class CorrectionResult:
    """What `rollout_correction` returns.

    - ``mask``: the token grid ``m * keep`` in the mask's dtype (bool when no mask was given):
      the mask's values where every rejection option keeps the token, ``m * 0`` where one rejects
      it (a sequence option rejects its whole row); 0 outside every row and past ``lengths``;
    - ``keep_row``: bool ``[B]``, no token with ``m != 0`` of the row rejected;
    - ``weights``: the importance weights (a float grid) when ``weights=`` was given, else None;
    - ``rows``: the row records (`trmask.CorrectionRows`) when ``row_records=True``, else None:
      what `trmask.reduce_correction_rows` reduces across shards of rows (data-parallel ranks);
    - ``statistics``: a dict (None unless asked for): ``n_rows``, ``n_rows_valid`` (rows with
      ``sum m > 0``), ``n_tokens_valid``, ``mask_sum``, ``masked_fraction``,
      ``seq_masked_fraction``, ``weights`` (a dict of `trmask._ffi.WEIGHT_STAT_KEYS`, or None),
      ``offpolicy`` (`OFFPOLICY_STAT_KEYS`), ``rejections`` (one dict of `REJECTION_STAT_KEYS`
      per option, in order). Formulas: docs/rollout-correction.md.
    Arrays are numpy arrays, or torch tensors when the inputs were tensors.
    """

    __slots__ = ("mask", "keep_row", "weights", "statistics", "rows")

    def __init__(self, mask, keep_row, weights, statistics, rows=None):
        self.mask = mask
        self.keep_row = keep_row
        self.weights = weights
        self.statistics = statistics
        self.rows = rows

    def __repr__(self) -> str:
        return f"CorrectionResult(rows={len(self.keep_row)}, weights={'yes' if self.weights is not None else 'no'})"


def _promote(a: int, b: int) -> int:
    """torch's result dtype of an operation on two float dtypes."""
    if a == b:
        return a
    return _ffi.DTYPE_F64 if _ffi.DTYPE_F64 in (a, b) else _ffi.DTYPE_F32


def _float_code(name: str, value: Any) -> int:
    text = str(value).replace("torch.", "")
    if text not in _DTYPE_CODES:
        raise TrmaskError(f"`{name}` is {value!r}; expected one of {', '.join(_DTYPE_CODES)}")
    return _DTYPE_CODES[text]


def _new_grid(like: Any, shape: tuple, code: int, mask: Any = None):
    """A new array of the caller's kind: with the dtype of `mask` when given, else of `code`."""
    if _arrays.is_torch(like):
        torch = _arrays._torch()
        dtype = mask.dtype if mask is not None else {
            _ffi.DTYPE_F32: torch.float32, _ffi.DTYPE_F64: torch.float64, _ffi.DTYPE_F16: torch.float16,
            _ffi.DTYPE_BF16: torch.bfloat16, _ffi.DTYPE_BOOL: torch.bool}[code]
        return torch.empty(shape, dtype=dtype)
    if mask is not None:
        return np.empty(shape, dtype=np.asarray(mask).dtype if not isinstance(mask, np.ndarray) else mask.dtype)
    if code == _ffi.DTYPE_BF16:
        import ml_dtypes
        return np.empty(shape, dtype=ml_dtypes.bfloat16)
    return np.empty(shape, dtype={_ffi.DTYPE_F32: np.float32, _ffi.DTYPE_F64: np.float64, _ffi.DTYPE_F16: np.float16,
                                  _ffi.DTYPE_BOOL: np.bool_}[code])


def _typed_out(array: Any, code: int, packed: bool) -> _ffi.TypedOut:
    out = _arrays.output_struct(array, two_d=not packed, grid_packed=packed)
    return _ffi.TypedOut(out.data, code, 0, out.stride_row, out.stride_col)


def rollout_correction(logp_train: Any = None, logp_roll: Any = None, mask: Any = None, *, log_ratio: Any = None,
                       lengths: Any = None, offsets: Any = None, rejections: Sequence[Rejection] = (),
                       weights: WeightsLike = None, normalize: bool = False, mask_weights: bool = False,
                       compute_dtype: Any = None, mean_dtype: Any = None, weights_dtype: Any = None,
                       clamp: float = 20.0, threads: int = 0, statistics: bool = True,
                       row_records: bool = False) -> CorrectionResult:
    """Rollout correction in verl's arithmetic, in one native call (docs/rollout-correction.md).

    Inputs as in `trust_region_mask`: ``logp_train`` and ``logp_roll`` (``delta`` = their
    difference) or ``log_ratio=``, ``[B, T]`` or packed 1-D with ``offsets=``; ``mask`` of any
    dtype and/or ``lengths``. ``mask_weights=True``: the mask's values weight every sum and mean
    (verl's rule for a non-binary ``response_mask``); else nonzero = 1.

    ``rejections``: `Rejection` options, ANDed. ``weights``: a `WeightRule` with level ``token``
    (``w_t = exp(clamp(d_t))``) or ``sequence`` (``exp(clamp(sum_t m_t delta_t))``: the clamp is
    on the row sum) and mode ``truncate`` (``min(w m, hi)``) or ``mask`` (``w m`` inside
    ``[lo, hi]``, else 0); written at every position of a row as ``w * m``, not zeroed on rejected
    rows. ``normalize=True`` divides them by their batch mean (``statistics["weights"]
    ["norm_factor"]``) when it is > 1e-8; a distributed caller leaves it False, all-reduces
    ``norm_sum`` and ``norm_count`` and calls `divide_weights`.

    Arithmetic: per-token values in ``compute_dtype`` (default: the log-probs' promoted dtype, as
    torch computes ``logp_train - logp_roll``), means with denominators ``sum m + 1e-8`` in
    ``mean_dtype`` (default: the mask's dtype if it is a float dtype, else float32), weights in
    ``weights_dtype`` (default: the promoted dtype of the log-ratio and a float mask). ``clamp``:
    verl's 20. ``threads``: 0 = automatic; results are identical for every value.
    ``statistics=False`` skips the statistics dict (they are computed in the same pass anyway).
    ``row_records=True`` also returns the per-row records the statistics are reduced from
    (``.rows``): `reduce_correction_rows` of several calls' records, in row order, gives the
    statistics of one call on their rows concatenated, bit for bit (docs/sharded-rows.md).
    """
    batch = _PreparedBatch(logp_train, logp_roll, log_ratio, None, mask, lengths, offsets)
    if batch.source == "values":  # _PreparedBatch names the other sources itself
        raise TrmaskError("rollout_correction needs logp_train with logp_roll, or log_ratio=")
    rule = normalize_weights(weights)
    if rule is not None and (rule.level not in ("token", "sequence") or rule.mode not in ("truncate", "mask")):
        raise TrmaskError(f"`weights` is {rule}; rollout correction takes level 'token' or 'sequence' and mode "
                          f"'truncate' or 'mask'")
    if rule is not None and rule.mode == "mask" and not (rule.lo or 0) > 0:
        raise TrmaskError("`weights` mode 'mask' needs lo > 0 (verl's IcePop bounds are positive)")
    if normalize and rule is None:
        raise TrmaskError("`normalize=True` divides importance weights: pass weights=")
    rejections = tuple(rejections)
    if len(rejections) > _ffi.MAX_REJECTIONS or not all(isinstance(r, Rejection) for r in rejections):
        raise TrmaskError(f"`rejections` must be at most {_ffi.MAX_REJECTIONS} trmask.Rejection objects")
    if not math.isfinite(clamp) or not clamp > 0:
        raise TrmaskError(f"`clamp` is {clamp!r}; expected a finite number > 0 (verl uses 20)")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= threads <= 2**31 - 1:
        raise TrmaskError(f"`threads` is {threads!r}; expected an integer >= 0 (0 = automatic)")
    struct = batch.struct
    source_code = struct.log_ratio.dtype if batch.source == "log_ratio" else _promote(struct.logp_train.dtype,
                                                                                       struct.logp_roll.dtype)
    mask_code = struct.mask.dtype
    mask_is_float = mask_code in FLOAT_DTYPES
    compute = source_code if compute_dtype is None else _float_code("compute_dtype", compute_dtype)
    mean = (mask_code if mask_is_float else _ffi.DTYPE_F32) if mean_dtype is None else _float_code("mean_dtype", mean_dtype)
    weight_code = (_promote(compute, mask_code) if mask_is_float else compute) if weights_dtype is None else _float_code(
        "weights_dtype", weights_dtype)

    c_rejections = (_ffi.CRejection * max(1, len(rejections)))()
    for slot, r in zip(c_rejections, rejections):
        slot.level, slot.estimator = _ffi.REJECTION_LEVELS[r.level], _ffi.ESTIMATORS[r.estimator]
        slot.lo, slot.hi = r.bounds()
    config = _ffi.CorrectionConfig(ctypes.sizeof(_ffi.CorrectionConfig), compute, mean, int(bool(mask_weights)),
                                   float(clamp), int(threads), len(rejections), ctypes.addressof(c_rejections),
                                   int(rule is not None), int(bool(normalize)),
                                   _ffi.WeightRule(*(rule.c_fields() if rule is not None else (0, 0, 0.0, 0.0))))
    grid = tuple(batch.grid_shape)
    mask_out = _new_grid(batch.like, grid, _ffi.DTYPE_BOOL, mask)
    out_mask_code = mask_code if mask is not None else _ffi.DTYPE_BOOL
    keep_row = batch.output((batch.rows,), "bool")
    weight_grid = None if rule is None else _new_grid(batch.like, grid, weight_code)
    stats = None
    if statistics:
        stats = _ffi.CorrectionStats()
        stats.struct_size = ctypes.sizeof(_ffi.CorrectionStats)
    out = _ffi.CorrectionOut(ctypes.sizeof(_ffi.CorrectionOut), 0, _typed_out(mask_out, out_mask_code, batch.packed),
                             _arrays.output_struct(keep_row),
                             _ffi.TypedOut(0, 0, 0, 0, 0) if weight_grid is None else _typed_out(weight_grid, weight_code,
                                                                                                  batch.packed),
                             0 if stats is None else ctypes.addressof(stats))
    rows = None
    if row_records:
        rows = CorrectionRows(_arrays.new_output(batch.like, (batch.rows, _ffi.correction_row_width(len(rejections))),
                                                 "float64"),
                              CorrectionCall(config, c_rejections, mask_code, 0 if weight_grid is None else weight_code,
                                             batch.source != "log_ratio"))
        out.rows = rows.descriptor()
    status = _ffi.lib.trm_rollout_correction(ctypes.byref(struct), ctypes.byref(config), ctypes.byref(out))
    raise_for_status(status, "rollout_correction")
    return CorrectionResult(mask_out, keep_row, weight_grid,
                            None if stats is None else statistics_dict(stats, len(rejections), rule is not None), rows)


def divide_weights(weights: Any, divisor: float, *, offsets: Any = None) -> Any:
    """Divides, in place, every weight inside the rows of ``weights`` (``[B, T]``, or 1-D packed
    with ``offsets``) by ``divisor`` (finite, > 0), in the weights' dtype; returns ``weights``.
    verl's batch normalisation across ranks: all-reduce the ``norm_sum`` and ``norm_count`` of
    `rollout_correction`'s weight statistics, then divide by their quotient."""
    grid = Operand("weights", weights, FLOAT_DTYPES)
    if isinstance(weights, np.ndarray) and not weights.flags.writeable:
        raise TrmaskError("`weights` is read-only")
    if any(stride == 0 and size > 1 for stride, size in zip(grid.strides, grid.shape)):
        raise TrmaskError("`weights` has a zero stride on a dimension longer than 1 (a broadcast view)")
    if not (isinstance(divisor, (int, float, np.floating)) and math.isfinite(divisor) and divisor > 0):
        raise TrmaskError(f"`divisor` is {divisor!r}; expected a finite number > 0")
    offsets_view = _arrays.ABSENT
    if offsets is not None:
        if grid.ndim != 1:
            raise TrmaskError(f"`weights` has shape {grid.shape}; with `offsets` (packed layout) it must be 1-D")
        offsets = Operand("offsets", offsets, INDEX_DTYPES)
        if offsets.ndim != 1 or offsets.shape[0] < 1:
            raise TrmaskError(f"`offsets` has shape {offsets.shape}; expected 1-D with rows + 1 >= 1 entries")
        layout, rows, cols = _ffi.LAYOUT_PACKED, offsets.shape[0] - 1, grid.shape[0]
        offsets_view = _ffi.View(*offsets.fields())
        strides = (0, grid.strides[0])
    else:
        if grid.ndim != 2:
            raise TrmaskError(f"`weights` has shape {grid.shape}; expected [rows, tokens] (or 1-D with `offsets=`)")
        layout, (rows, cols), strides = _ffi.LAYOUT_PADDED, grid.shape, grid.strides
    out = _ffi.TypedOut(grid.ptr or None, grid.dtype, 0, *strides)
    status = _ffi.lib.trm_weights_divide(layout, rows, cols, offsets_view, float(divisor), out)
    raise_for_status(status, "divide_weights")
    return weights
