"""`importance_weights`: rollout-correction weights for a given row decision (docs/semantics.md §5)."""

from __future__ import annotations

import ctypes
from typing import Any, Optional

from . import _arrays, _ffi
from ._api import _PreparedBatch, _options, raise_for_status
from ._arrays import Operand
from ._weights import WeightRule
from .errors import TrmaskError


def importance_weights(logp_train: Any = None, logp_roll: Any = None, mask: Any = None, *, level: str = "token",
                       mode: str = "truncate", lo: Optional[float] = None, hi: Optional[float] = None,
                       keep_row: Any = None, lengths: Any = None, offsets: Any = None, log_ratio: Any = None,
                       nan_policy: str = "reject", clamp: Optional[float] = None, threads: int = 0, out: Any = None):
    """Importance weights (docs/semantics.md §5) as float32, shaped like the tokens (``[B, T]``, or ``[N]``
    packed with ``offsets=``): see `WeightRule` for ``level``, ``mode``, ``lo`` and ``hi``.

    0 on tokens that are not counted (masked, past ``lengths``, skipped NaN, outside every row),
    on rows whose ``keep_row`` (bool ``[B]``, e.g. ``trust_region_mask(...).keep_row``) is False,
    and under ``nan_policy="reject"`` on rows with a NaN log-ratio (fail closed). Inputs, ``clamp``
    and ``nan_policy`` as in `trust_region_mask`. Normalisation is the caller's: divide by the
    original or the kept counts (`trust_region_mask(..., metrics=True).metrics` reports both).
    Written into ``out`` when given (float32, that shape, writable, not overlapping the inputs).
    To get the weights and the mask in one pass, use ``trust_region_mask(..., weights=...)``.
    """
    rule = WeightRule(level, mode, lo, hi)
    if logp_train is None and log_ratio is None:
        raise TrmaskError("importance_weights needs logp_train with logp_roll, or log_ratio=")
    batch = _PreparedBatch(logp_train, logp_roll, log_ratio, None, mask, lengths, offsets)
    options = _options(nan_policy, clamp, False, threads)
    keep_view = _ffi.View(*_ffi.ABSENT_VIEW)
    if keep_row is not None:
        keep = Operand("keep_row", keep_row, (_ffi.DTYPE_BOOL, _ffi.DTYPE_U8))
        if keep.shape != (batch.rows,):
            raise TrmaskError(f"`keep_row` has shape {keep.shape}; expected ({batch.rows},), one per row")
        keep_view = _ffi.View(*keep.fields())
    if out is None:
        out = batch.output(batch.grid_shape, "float32")
    else:
        _arrays.check_output("out", out, tuple(batch.grid_shape), _ffi.DTYPE_F32, batch.input_operands())
    status = _ffi.lib.trm_importance_weights(
        ctypes.byref(batch.struct), ctypes.byref(options), _ffi.WeightRule(*rule.c_fields()), keep_view,
        _arrays.output_struct(out, two_d=not batch.packed, grid_packed=batch.packed))
    raise_for_status(status, "importance_weights")
    return out
