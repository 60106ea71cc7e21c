"""Row records of rollout correction (docs/sharded-rows.md): what `rollout_correction(...,
row_records=True)` returns as ``.rows``, and `reduce_correction_rows`, the statistics of several
shards of rows (data-parallel ranks) from their records: equal, bit for bit, to one call's on the
concatenated rows, because the native reduce is the code that reduces one call's records."""

from __future__ import annotations

import ctypes
from typing import Any, Sequence

from . import _ffi
from ._api import raise_for_status
from ._arrays import Operand
from .errors import TrmaskError


def statistics_dict(stats: _ffi.CorrectionStats, n_rejections: int, weights: bool) -> dict:
    """The statistics dict of a trm_correction_stats_t (a call's or a reduce's)."""
    def fields(struct, keys):
        return {key: getattr(struct, key) for key in keys}

    return {
        "n_rows": stats.n_rows, "n_rows_valid": stats.n_rows_valid, "n_tokens_valid": stats.n_tokens_valid,
        "mask_sum": stats.mask_sum, "masked_fraction": stats.masked_fraction,
        "seq_masked_fraction": stats.seq_masked_fraction,
        "weights": fields(stats.weights, _ffi.WEIGHT_STAT_KEYS) if weights else None,
        "offpolicy": fields(stats.offpolicy, _ffi.OFFPOLICY_STAT_KEYS),
        "rejections": [fields(stats.rejections[i], _ffi.REJECTION_STAT_KEYS) for i in range(n_rejections)],
    }


class CorrectionCall:
    """What reducing a call's records needs: its config (the C struct, with the rejection array it
    points to kept alive) and the three facts of its inputs the records carry."""

    __slots__ = ("config", "_rejections", "mask_dtype", "weights_dtype", "log_probs", "key")

    def __init__(self, config: _ffi.CorrectionConfig, rejections: Any, mask_dtype: int, weights_dtype: int,
                 log_probs: bool):
        self.config, self._rejections = config, rejections
        self.mask_dtype, self.weights_dtype, self.log_probs = mask_dtype, weights_dtype, bool(log_probs)
        rule = config.weight_rule
        # Everything the statistics depend on (not `threads`: results are the same for any count).
        self.key = (config.compute_dtype, config.mean_dtype, config.mask_weights, config.clamp, config.weights,
                    config.normalize, (rule.level, rule.mode, rule.lo, rule.hi) if config.weights else None,
                    tuple((r.level, r.estimator, r.lo, r.hi) for r in rejections[:config.n_rejections]))


class CorrectionRows:
    """The row records of one `rollout_correction` call: ``records``, float64 ``[B, width]``
    (width ``18 + 10 * len(rejections)``; field order in include/trmask.h, trm_correction_rows_t),
    a numpy array or a torch tensor like the call's inputs, and the call's config. Another
    shard's records (gathered from another rank, say) join them with `like`."""

    __slots__ = ("records", "_call")

    def __init__(self, records: Any, call: CorrectionCall):
        self.records = records
        self._call = call

    @property
    def n_rejections(self) -> int:
        return self._call.config.n_rejections

    def like(self, records: Any) -> "CorrectionRows":
        """Records of another shard of rows, computed with the same config and the same kind of
        inputs (mask dtype, weights dtype, log-probs or log-ratio) as these."""
        return CorrectionRows(records, self._call)

    def descriptor(self) -> _ffi.CorrectionRows:
        """trm_correction_rows_t over ``records`` (C-contiguous float64 ``[rows, width]``)."""
        width = _ffi.correction_row_width(self.n_rejections)
        records = Operand("records", self.records, (_ffi.DTYPE_F64,))
        if records.ndim != 2 or records.shape[1] != width:
            raise TrmaskError(f"`records` has shape {records.shape}; expected [rows, {width}]")
        if records.shape[0] > 1 and records.strides != (width, 1) or records.shape[0] == 1 and records.strides[1] != 1:
            raise TrmaskError(f"`records` has strides {records.strides}; expected a C-contiguous array")
        call = self._call
        return _ffi.CorrectionRows(records.ptr or None, records.shape[0], call.mask_dtype, call.weights_dtype,
                                   int(call.log_probs), 0)

    def __repr__(self) -> str:
        return f"CorrectionRows(rows={len(self.records)}, rejections={self.n_rejections})"


def reduce_correction_rows(shards: Sequence[CorrectionRows]) -> dict:
    """The statistics dict of `rollout_correction` over the rows of every shard, in order: equal,
    bit for bit, to that of one call on the shards' rows concatenated (same config). ``shards``:
    `CorrectionRows`, each from ``rollout_correction(..., row_records=True).rows`` (or its `like`),
    all from calls with the same config; an empty shard is allowed."""
    shards = list(shards)
    if not shards or not all(isinstance(shard, CorrectionRows) for shard in shards):
        raise TrmaskError("`shards` must be a non-empty sequence of CorrectionRows "
                          "(rollout_correction(..., row_records=True).rows)")
    if len(shards) > _ffi.MAX_CORRECTION_SHARDS:
        raise TrmaskError(f"{len(shards)} shards; at most {_ffi.MAX_CORRECTION_SHARDS}")
    call = shards[0]._call
    for index, shard in enumerate(shards[1:], 1):
        if shard._call.key != call.key:
            raise TrmaskError(f"shard {index} comes from a rollout_correction call with another config than shard 0")
    descriptors = (_ffi.CorrectionRows * len(shards))(*(shard.descriptor() for shard in shards))
    stats = _ffi.CorrectionStats()
    stats.struct_size = ctypes.sizeof(_ffi.CorrectionStats)
    status = _ffi.lib.trm_correction_reduce(ctypes.byref(call.config), descriptors, len(shards), ctypes.byref(stats))
    raise_for_status(status, "reduce_correction_rows")
    return statistics_dict(stats, call.config.n_rejections, bool(call.config.weights))
