"""The public Python API over the C ABI: trust_region_mask, sequence_stats, token_values."""

from __future__ import annotations

import ctypes
import math
from typing import Any, Optional, Sequence

import numpy as np

from . import _arrays, _ffi
from ._arrays import FLOAT_DTYPES, INDEX_DTYPES, MASK_DTYPES, Operand
from ._criteria import Criterion, CriteriaLike, normalize_criteria
from ._metrics import metrics_dict
from ._weights import WeightsLike, normalize_weights
from .errors import TrmaskError

_lib = _ffi.lib

# Which argument a status most likely concerns, to make library refusals actionable.
_STATUS_HINTS = {
    "TRM_E_BAD_OFFSETS": "`offsets` must start at >= 0, never decrease, and end at or before the number of tokens",
    "TRM_E_BAD_LENGTHS": "every entry of `lengths` must be between 0 and its row's length",
    "TRM_E_ALIASING": "an output shares memory with another array",
    "TRM_E_OUT_OF_RANGE": "an array's strides reach outside the address space",
    "TRM_E_BAD_PARTIALS": "partials must hold counts >= 0 for the same rows and estimators",
    "TRM_E_TOO_LARGE": "the request needs more working memory than trmask allocates: split the batch",
}


def raise_for_status(status: int, call: str) -> None:
    if status == 0:
        return
    name = _lib.trm_status_name(status).decode()
    message = f"{call}: {_lib.trm_status_string(status).decode()} ({name})"
    if name in _STATUS_HINTS:
        message += f"; {_STATUS_HINTS[name]}"
    if name == "TRM_E_INTERNAL":
        message += ". This is a bug in trmask; please report it with the inputs' shapes and strides"
    raise TrmaskError(message, status, name)


_F32, _BOOL, _U8 = np.dtype(np.float32), np.dtype(np.bool_), np.dtype(np.uint8)
_addressof = ctypes.addressof
_MASK_OUT_SIZE = ctypes.sizeof(_ffi.MaskOut)


class _PreparedBatch:
    """A batch as the C ABI sees it, with every operand kept alive alongside the struct."""

    __slots__ = ("like", "source", "packed", "rows", "cols", "grid_shape", "operands", "struct")

    #: What the fast path keeps: the raw arrays (named for `input_operands`).
    _FAST_NAMES = ("logp_train", "logp_roll", "mask")

    def __init__(self, logp_train, logp_roll, log_ratio, values, mask, lengths, offsets, advantages=None,
                 row_advantages=False):
        if (lengths is None and offsets is None and log_ratio is None and values is None and advantages is None
                and self._padded_fast(logp_train, logp_roll, mask)):
            return
        if logp_train is not None and logp_roll is not None and log_ratio is None and values is None:
            primary_name, source = "logp_train", logp_train
        elif logp_train is None and logp_roll is None and (log_ratio is None) != (values is None):
            primary_name, source = ("log_ratio", log_ratio) if values is None else ("values", values)
        else:
            given = [n for n, x in (("logp_train", logp_train), ("logp_roll", logp_roll), ("log_ratio", log_ratio),
                                    ("values", values)) if x is not None]
            raise TrmaskError("pass logp_train and logp_roll, or log_ratio=, or values= (exactly one source); "
                              f"got {', '.join(given) if given else 'none'}")
        primary = Operand(primary_name, source, FLOAT_DTYPES)
        self.like = primary.obj
        self.source = primary_name
        self.packed = offsets is not None
        self.operands = [primary]
        if self.packed:
            if len(primary.shape) != 1:
                raise TrmaskError(f"`{primary_name}` has shape {primary.shape}; with `offsets` (packed layout) it must be 1-D")
            offsets = Operand("offsets", offsets, INDEX_DTYPES)
            if len(offsets.shape) != 1 or offsets.shape[0] < 1:
                raise TrmaskError(f"`offsets` has shape {offsets.shape}; expected 1-D with rows + 1 >= 1 entries")
            self.rows, self.cols = offsets.shape[0] - 1, primary.shape[0]
            self.grid_shape = (self.cols,)
            self.operands.append(offsets)
        else:
            if len(primary.shape) != 2:
                raise TrmaskError(f"`{primary_name}` has shape {primary.shape}; expected [rows, tokens] "
                                  f"(or 1-D with `offsets=` for the packed layout)")
            self.rows, self.cols = primary.shape
            self.grid_shape = primary.shape
        views = {"logp_train": _ffi.ABSENT_VIEW, "logp_roll": _ffi.ABSENT_VIEW, "log_ratio": _ffi.ABSENT_VIEW,
                 "values": _ffi.ABSENT_VIEW, "mask": _ffi.ABSENT_VIEW, "lengths": _ffi.ABSENT_VIEW,
                 "offsets": offsets.fields() if self.packed else _ffi.ABSENT_VIEW, primary_name: primary.fields(),
                 "advantages": _ffi.ABSENT_VIEW, "row_advantages": _ffi.ABSENT_VIEW}
        if logp_roll is not None:
            roll = Operand("logp_roll", logp_roll, FLOAT_DTYPES).broadcast_to(self.grid_shape, primary_name)
            self.operands.append(roll)
            views["logp_roll"] = roll.fields()
        if mask is not None:
            mask = Operand("mask", mask, MASK_DTYPES).broadcast_to(self.grid_shape, primary_name)
            self.operands.append(mask)
            views["mask"] = mask.fields()
        if lengths is not None:
            lengths = Operand("lengths", lengths, INDEX_DTYPES)
            if lengths.shape != (self.rows,):
                raise TrmaskError(f"`lengths` has shape {lengths.shape}; expected ({self.rows},), one per row")
            self.operands.append(lengths)
            views["lengths"] = lengths.fields()
        if advantages is not None:
            advantages = Operand("advantages", advantages, FLOAT_DTYPES)
            per_row = advantages.shape == (self.rows,) and (not self.packed or row_advantages or self.rows != self.cols)
            if per_row:
                views["row_advantages"] = advantages.fields()
            elif advantages.shape == tuple(self.grid_shape):
                views["advantages"] = advantages.fields()
            else:
                raise TrmaskError(f"`advantages` has shape {advantages.shape}; expected one per token "
                                  f"{tuple(self.grid_shape)} or one per row ({self.rows},)")
            if row_advantages and not per_row:
                raise TrmaskError(f"`advantages` has shape {advantages.shape}; the sequence rule needs one per row "
                                  f"({self.rows},)")
            self.operands.append(advantages)
        self.struct = _ffi.Batch()
        _ffi.BATCH_PACKER.pack_into(
            self.struct, 0, ctypes.sizeof(_ffi.Batch), _ffi.LAYOUT_PACKED if self.packed else _ffi.LAYOUT_PADDED,
            self.rows, self.cols, *views["logp_train"], *views["logp_roll"], *views["log_ratio"], *views["values"],
            *views["mask"], *views["lengths"], *views["offsets"], *views["advantages"], *views["row_advantages"])

    def _padded_fast(self, logp_train, logp_roll, mask) -> bool:
        """The common call, decided and packed with a few attribute reads: C-contiguous float32
        numpy log-probs of one 2-D shape and an optional bool/uint8 mask of the same shape. Any
        other input takes the general path (which also names the argument at fault)."""
        if type(logp_train) is not np.ndarray or type(logp_roll) is not np.ndarray:
            return False
        shape = logp_train.shape
        if (logp_train.dtype is not _F32 or logp_roll.dtype is not _F32 or len(shape) != 2 or logp_roll.shape != shape
                or not logp_train.flags.c_contiguous or not logp_roll.flags.c_contiguous):
            return False
        rows, cols = shape
        mask_view = _ffi.ABSENT_VIEW
        if mask is not None:
            if (type(mask) is not np.ndarray or mask.shape != shape or not mask.flags.c_contiguous
                    or (mask.dtype is not _BOOL and mask.dtype is not _U8)):
                return False
            mask_view = (_arrays.data_pointer(mask), _ffi.DTYPE_BOOL, 0, cols, 1)
        self.like = logp_train
        self.source = "logp_train"
        self.packed = False
        self.rows, self.cols, self.grid_shape = rows, cols, shape
        self.operands = (logp_train, logp_roll, mask)
        self.struct = _ffi.Batch()
        data = _arrays.data_pointer
        _ffi.BATCH_PACKER.pack_into(
            self.struct, 0, ctypes.sizeof(_ffi.Batch), _ffi.LAYOUT_PADDED, rows, cols,
            data(logp_train), _ffi.DTYPE_F32, 0, cols, 1, data(logp_roll), _ffi.DTYPE_F32, 0, cols, 1,
            *_ffi.ABSENT_VIEW, *_ffi.ABSENT_VIEW, *mask_view, *_ffi.ABSENT_VIEW, *_ffi.ABSENT_VIEW, *_ffi.ABSENT_VIEW,
            *_ffi.ABSENT_VIEW)
        return True

    def input_operands(self) -> list:
        """Every input as an `Operand` (the fast path keeps only the arrays)."""
        if all(isinstance(o, Operand) for o in self.operands):
            return list(self.operands)
        return [Operand(name, array, _arrays.ANY_DTYPES) for name, array in zip(self._FAST_NAMES, self.operands)
                if array is not None]

    def check_estimators(self, estimators) -> None:
        """Estimator `value` reads `values=`; the others need log-probs or a log-ratio."""
        for estimator in estimators:
            if estimator in _ffi.BINARY_ESTIMATORS and self.source != "logp_train":
                raise TrmaskError(f"estimator {estimator!r} is a function of the probabilities p_t = exp(logp_train) and "
                                  f"p_r = exp(logp_roll): pass both log-probs, not {self.source}=")
            if (estimator == "value") != (self.source == "values"):
                if estimator == "value":
                    raise TrmaskError("estimator 'value' reads a precomputed divergence: pass it as values=")
                raise TrmaskError(f"estimator {estimator!r} is a function of the log-ratio, but the input is values=; "
                                  f"use estimator 'value'")

    def output(self, shape: tuple, dtype: str):
        return _arrays.new_output(self.like, shape, dtype)


def _options(nan_policy: str, clamp: Optional[float], reject_empty: bool, threads: int,
             binary_eps: Optional[float] = None, advantage_rule=None) -> _ffi.Options:
    if nan_policy not in _ffi.NAN_POLICIES:
        raise TrmaskError(f"`nan_policy` is {nan_policy!r}; expected one of {', '.join(_ffi.NAN_POLICIES)}")
    limit = math.inf if clamp is None else float(clamp)
    if not limit > 0:
        raise TrmaskError(f"`clamp` is {clamp!r}; expected a number > 0, or None for no clamp")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0 or threads > 2**31 - 1:
        raise TrmaskError(f"`threads` is {threads!r}; expected an integer >= 0 (0 = automatic)")
    eps = 0.0
    if binary_eps is not None:
        eps = float(binary_eps)
        if not 0 <= eps < 0.5:
            raise TrmaskError(f"`binary_eps` is {binary_eps!r}; expected 0 <= eps < 0.5 (0 = exact), or None for 1e-6")
    rule = _ffi.AdvantageRule() if advantage_rule is None else advantage_rule.c_struct()
    return _ffi.Options(ctypes.sizeof(_ffi.Options), _ffi.NAN_POLICIES[nan_policy], limit, int(bool(reject_empty)), int(threads),
                        int(binary_eps is not None), 0, eps, rule)


def _c_criteria(criteria: Sequence[Criterion]):
    array = (_ffi.CCriterion * max(1, len(criteria)))()
    for slot, c in zip(array, criteria):
        slot.aggregation, slot.estimator = _ffi.AGGREGATIONS[c.agg], _ffi.ESTIMATORS[c.estimator]
        slot.lo, slot.hi = c.lo, c.hi
        slot.kl_max = c.kl_max or 0.0
        slot.eps = c.eps or 0.0
    return array


class _Plan:
    """Everything a call derives from its criteria and options alone, built once per distinct
    combination: the C criteria array, the options struct, the estimators used."""

    __slots__ = ("criteria", "c_criteria", "criteria_address", "n_row", "options", "options_address", "estimators")

    def __init__(self, criteria, nan_policy, clamp, reject_empty, threads, binary_eps=None, advantage_rule=None):
        self.criteria = normalize_criteria(criteria)
        self.c_criteria = _c_criteria(self.criteria)
        self.criteria_address = _addressof(self.c_criteria)  # the plan keeps the array alive
        self.n_row = sum(1 for c in self.criteria if c.is_row)
        self.options = _options(nan_policy, clamp, reject_empty, threads, binary_eps, advantage_rule)
        self.options_address = _addressof(self.options)
        self.estimators = frozenset(c.estimator for c in self.criteria)


_PLANS: dict = {}


def _plan(criteria, nan_policy, clamp, reject_empty, threads, binary_eps=None, advantage_rule=None) -> _Plan:
    if type(criteria) is list:
        criteria = tuple(criteria)
    key = (criteria, nan_policy, clamp, reject_empty, threads, binary_eps, advantage_rule)
    try:
        return _PLANS[key]
    except KeyError:
        pass
    except TypeError:  # unhashable entries: build without caching
        return _Plan(criteria, nan_policy, clamp, reject_empty, threads, binary_eps, advantage_rule)
    plan = _Plan(criteria, nan_policy, clamp, reject_empty, threads, binary_eps, advantage_rule)
    if len(_PLANS) >= 256:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


class MaskResult:
    """What `trust_region_mask` returns. Every field is an output of the call, written before it
    returned: a result does not change when the caller later reuses or mutates the input arrays,
    and it keeps no reference to them.

    - ``keep_row``: bool ``[B]``, the rows that pass every row criterion;
    - ``keep_token``: bool token grid (``[B, T]``, or ``[N]`` packed): valid, in a kept row, and
      passing every token criterion;
    - ``rejected``: one Python int per criterion, in order: rows (row criteria) or tokens (token
      criteria) it rejects, counted before the AND;
    - ``row_stats``: one float32 ``[B]`` array per row criterion, in order: the statistic tested;
    - ``count``, ``nonfinite``: int64 ``[B]``: valid tokens, and valid tokens whose log-ratio is NaN
      or infinite;
    - ``weights``: float32 token grid of importance weights when the call had ``weights=``, else
      None;
    - ``metrics``: the batch metrics (docs/metrics.md) when the call had ``metrics=True``, else
      None;
    - ``criteria``: the criteria used;
    - ``advantage_counts``: with ``advantage_rule=``, a dict of the rule's counts (docs/rules-2026.md):
      ``adv_masked_upper``, ``adv_masked_lower``, ``adv_masked_positive``,
      ``adv_masked_negative`` (tokens) and ``adv_rows_rejected`` (the sequence rule); else None.
    Arrays are numpy arrays, or torch tensors when the log-probs were tensors.
    """

    def __init__(self, keep_row, keep_token, ints, stats, criteria, weights=None, metrics=None, advantage_counts=None):
        # `ints` holds count, nonfinite and rejected back to back, `stats` one row per row
        # criterion: the properties below are views of these outputs (no input is read after
        # the call).
        self.keep_row = keep_row
        self.keep_token = keep_token
        self.criteria = criteria
        self.weights = weights
        self.metrics = metrics
        self._ints = ints
        self._stats = stats
        self.advantage_counts = advantage_counts

    @property
    def count(self):
        return self._ints[:len(self.keep_row)]

    @property
    def nonfinite(self):
        rows = len(self.keep_row)
        return self._ints[rows:2 * rows]

    @property
    def rejected(self) -> tuple:
        return tuple(self._ints[2 * len(self.keep_row):].tolist())

    @property
    def row_stats(self) -> tuple:
        return tuple(self._stats)

    def __repr__(self) -> str:
        kept = int(self.keep_row.sum())
        rows = len(self.keep_row)
        parts = ", ".join(f"{c}: {r}" for c, r in zip(self.criteria, self.rejected))
        return f"MaskResult(kept {kept}/{rows} rows; rejected by {parts or 'no criteria'})"


def trust_region_mask(logp_train: Any = None, logp_roll: Any = None, mask: Any = None, *, lengths: Any = None,
                      offsets: Any = None, log_ratio: Any = None, values: Any = None, criteria: CriteriaLike = None,
                      nan_policy: str = "reject", clamp: Optional[float] = None, reject_empty: bool = False,
                      threads: int = 0, weights: WeightsLike = None, metrics: bool = False,
                      binary_eps: Optional[float] = None, advantages: Any = None,
                      advantage_rule: Optional["AdvantageRule"] = None) -> MaskResult:
    """Trust Region Masking (docs/semantics.md §3-§4): which rows (and tokens) stay in the gradient.

    ``delta = logp_train - logp_roll`` is the log importance ratio ``log(pi_theta / pi_roll)``
    (training minus rollout). Pass the two log-prob arrays ``[B, T]`` of the sampled tokens, or
    ``log_ratio=`` (delta itself), or ``values=`` (a precomputed per-token divergence, estimator
    ``value``). Packed layout: 1-D arrays of all tokens with ``offsets=`` (``[B + 1]``).

    Dtypes: float32, bfloat16 (torch, or numpy through ``ml_dtypes``), float16 or float64; the two
    log-prob arrays may differ (docs/dtypes.md). Validity: ``mask`` (bool, uint8, int or float,
    nonzero = valid) and/or ``lengths`` (first ``lengths[i]``
    tokens of row ``i``); neither = all valid. ``criteria`` (default: the paper's TRM-Max&Avg,
    ``max k2 <= 0.1`` and ``mean k3 <= 0.002``): Criterion objects, a string such as
    ``"max:k2<=0.1,mean:k3<=0.002"``, or tuples. A row is kept iff every row criterion holds
    (inclusive bounds). Rows without valid tokens are kept unless ``reject_empty``.

    ``nan_policy``: ``reject`` (a NaN log-ratio on a valid token rejects its row), ``skip`` (the
    token is ignored) or ``zero`` (delta := 0). ``clamp``: clamp delta to ``[-clamp, clamp]``
    before every estimator (verl uses 20). ``threads``: the most threads used (0 = every processor
    online; docs/python.md); results are identical for every value. No input array is copied (a Python list is converted once with
    ``np.asarray``; docs/python.md).

    ``weights``: a `WeightRule` (or a dict of its fields) to compute importance weights in the same
    call (``result.weights``; see `importance_weights`, with this call's ``keep_row``).
    ``metrics=True``: the batch metrics of docs/semantics.md §9 in ``result.metrics``, from the same pass.
    ``binary_eps``: the clamp of the binary KL estimators (``bkl``, ``bkl_tr``, ``bkl_sym``;
    docs/rules-2026.md): None = 1e-6, 0 = exact.
    ``advantage_rule``: an `AdvantageRule` (docs/rules-2026.md) with ``advantages``
    (per token ``[B, T]`` / ``[N]``, or per row ``[B]``), ANDed with the criteria: its token rule
    masks tokens in ``keep_token``, its sequence rule rejects rows; counts in
    ``result.advantage_counts``.
    """
    if (advantages is None) != (advantage_rule is None):
        raise TrmaskError("pass `advantages` and `advantage_rule` together (an AdvantageRule says how advantages mask)")
    plan = _plan(criteria, nan_policy, clamp, reject_empty, threads, binary_eps, advantage_rule)
    rule = normalize_weights(weights)
    sequence_only = advantage_rule is not None and advantage_rule.statistic == "none"
    batch = _PreparedBatch(logp_train, logp_roll, log_ratio, values, mask, lengths, offsets, advantages, sequence_only)
    if advantage_rule is not None:
        advantage_rule.check_source(batch.source)
    batch.check_estimators(plan.estimators)
    rows, n_criteria = batch.rows, len(plan.criteria)
    pointer = _arrays.pointer
    keep_row = batch.output((rows,), "bool")
    keep_token = batch.output(batch.grid_shape, "bool")
    ints = batch.output((2 * rows + n_criteria,), "int64")  # count, nonfinite, rejected
    stats = batch.output((plan.n_row, rows), "float32")
    keep_pointer, ints_pointer, stats_pointer = pointer(keep_row), pointer(ints), pointer(stats)
    # Padded grids are [rows, cols] C-contiguous; a packed grid is 1-D (stride_row 0).
    token_fields = (pointer(keep_token), 0 if batch.packed else batch.cols, 1)
    weight_fields = (0, 0, 0, 0, 0, 0.0, 0.0)
    weight_grid = None
    if rule is not None:
        if batch.source == "values":
            raise TrmaskError("importance weights need log-probs or a log-ratio, not values=")
        weight_grid = batch.output(batch.grid_shape, "float32")
        grid_out = _arrays.output_struct(weight_grid, two_d=not batch.packed, grid_packed=batch.packed)
        weight_fields = (grid_out.data or 0, grid_out.stride_row, grid_out.stride_col) + rule.c_fields()
    metric_struct = None
    if metrics:
        metric_struct = _ffi.Metrics()
        metric_struct.struct_size = ctypes.sizeof(_ffi.Metrics)
    counts = None if advantage_rule is None else (ctypes.c_int64 * len(_ffi.ADVANTAGE_COUNTS))()
    out = _ffi.MaskOut()
    _ffi.MASK_OUT_PACKER.pack_into(
        out, 0, _MASK_OUT_SIZE, 0, keep_pointer, 1, 0, ints_pointer, 1, 0,
        ints_pointer and ints_pointer + 8 * rows, 1, 0, stats_pointer, 1, rows, *token_fields,
        ints_pointer and ints_pointer + 16 * rows, *weight_fields,
        0 if metric_struct is None else _addressof(metric_struct), 0 if counts is None else _addressof(counts))
    status = _lib.trm_mask(_addressof(batch.struct), plan.criteria_address, n_criteria, plan.options_address,
                           _addressof(out))
    if status:
        raise_for_status(status, "trust_region_mask")

    advantage_counts = None if counts is None else dict(zip(_ffi.ADVANTAGE_COUNTS, counts))
    metrics_out = None if metric_struct is None else metrics_dict(metric_struct, plan.criteria, ints[2 * rows:].tolist())
    if metrics_out is not None and advantage_counts is not None:
        metrics_out.update({key: int(value) for key, value in advantage_counts.items()})
    return MaskResult(keep_row, keep_token, ints, stats, plan.criteria, weight_grid, metrics_out, advantage_counts)


class SequenceStats:
    """What `sequence_stats` returns: ``count`` and ``nonfinite`` (int64 ``[B]``), and
    ``stats[estimator]`` = ``{"sum", "mean", "max", "min"}`` of float32 ``[B]`` arrays."""

    def __init__(self, count, nonfinite, stats):
        self.count = count
        self.nonfinite = nonfinite
        self.stats = stats

    def __repr__(self) -> str:
        return f"SequenceStats(rows={len(self.count)}, estimators={list(self.stats)})"


_REDUCTIONS = ("sum", "mean", "max", "min")


def sequence_stats(logp_train: Any = None, logp_roll: Any = None, mask: Any = None, *, lengths: Any = None,
                   offsets: Any = None, log_ratio: Any = None, values: Any = None, estimators: Sequence[str] = ("k2", "k3"),
                   nan_policy: str = "reject", clamp: Optional[float] = None, threads: int = 0) -> SequenceStats:
    """Per-row count, sum, mean, max and min of each estimator over valid tokens (docs/semantics.md §3), in
    one pass. Inputs and options as in `trust_region_mask`. Empty rows give 0; under
    ``nan_policy="reject"`` a row with a NaN log-ratio gives NaN statistics."""
    if isinstance(estimators, str):
        estimators = (estimators,)
    criteria = [Criterion(agg, est) for est in estimators for agg in _REDUCTIONS]
    result = trust_region_mask(logp_train, logp_roll, mask, lengths=lengths, offsets=offsets, log_ratio=log_ratio,
                               values=values, criteria=criteria, nan_policy=nan_policy, clamp=clamp, threads=threads)
    stats = {}
    for index, est in enumerate(estimators):
        stats[est] = {agg: result.row_stats[index * len(_REDUCTIONS) + k] for k, agg in enumerate(_REDUCTIONS)}
    return SequenceStats(result.count, result.nonfinite, stats)


def token_values(logp_train: Any = None, logp_roll: Any = None, estimator: str = "k3", *, log_ratio: Any = None,
                 values: Any = None, clamp: Optional[float] = None, out: Any = None, threads: int = 0,
                 binary_eps: Optional[float] = None):
    """``estimator(clamp(delta))`` at every position, valid or not (docs/semantics.md §2), as float32 of the
    inputs' shape (``[B, T]``, or 1-D). Written into ``out`` when given (float32, same shape,
    writable, not overlapping the inputs). The binary estimators (``bdiff``, ``btv``, ``bkl``,
    ``bkl_tr``, ``bkl_sym``; docs/rules-2026.md) need both log-probs and take ``binary_eps``
    (None = 1e-6, 0 = exact); the clamp does not apply to them."""
    if estimator not in _ffi.ESTIMATORS:
        raise TrmaskError(f"`estimator` is {estimator!r}; expected one of {', '.join(_ffi.ESTIMATORS)}")
    primary = next((x for x in (logp_train, log_ratio, values) if x is not None), None)
    one_d = primary is not None and len(getattr(primary, "shape", np.shape(primary))) == 1
    offsets = np.array([0, len(primary)], dtype=np.int64) if one_d else None
    batch = _PreparedBatch(logp_train, logp_roll, log_ratio, values, None, None, offsets)
    batch.check_estimators((estimator,))
    options = _options("reject", clamp, False, threads, binary_eps)
    if out is None:
        out = batch.output(batch.grid_shape, "float32")
    else:
        _arrays.check_output("out", out, tuple(batch.grid_shape), _ffi.DTYPE_F32, batch.input_operands())
    status = _lib.trm_token_values(ctypes.byref(batch.struct), _ffi.ESTIMATORS[estimator], ctypes.byref(options),
                                   _arrays.output_struct(out, two_d=not batch.packed, grid_packed=batch.packed))
    raise_for_status(status, "token_values")
    return out
