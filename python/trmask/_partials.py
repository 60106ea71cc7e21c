"""Rows split across context-parallel shards (docs/semantics.md §3, partial rows; docs/sharded-rows.md).

Each rank computes its shard's partials with `row_partials`, the partials are gathered and merged
with `merge_partials`, and `keep_from_partials` takes the keep decision from the merged partials:
the decision `trust_region_mask` takes on the whole rows (max, min, counts and decisions
exactly; sums and means within docs/semantics.md §3's tolerance).
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional, Sequence

from . import _arrays, _ffi
from ._api import _PreparedBatch, _c_criteria, _options, raise_for_status
from ._arrays import Operand
from ._criteria import CriteriaLike, normalize_criteria
from .errors import TrmaskError

_lib = _ffi.lib
#: The paper's estimators: k2 for TRM-Max, k3 for TRM-Avg (docs/semantics.md §4.2).
DEFAULT_PARTIAL_ESTIMATORS = ("k2", "k3")


class RowPartials:
    """Per-row partials of some estimators over one shard of the rows, or over merged shards.

    - ``estimators``: tuple of estimator names, the columns of ``sum``, ``max`` and ``min``;
    - ``count``: int64 ``[B]``, counted tokens (NaN tokens are not counted under ``skip``);
    - ``nonfinite``: int64 ``[B]``, valid tokens whose log-ratio is NaN or infinite;
    - ``sum``: float64 ``[B, E]``, the sum of each estimator over counted tokens;
    - ``max``, ``min``: float32 ``[B, E]``, bitwise the extremes of the per-token values.

    A row with ``count == 0`` has statistics 0 and is the merge's identity; under
    ``nan_policy="reject"`` a row with a NaN log-ratio has NaN statistics. Arrays are numpy arrays
    or torch tensors. Build one from arrays received from other ranks with
    ``RowPartials(estimators, count, nonfinite, sum, max, min)``.
    """

    __slots__ = ("estimators", "count", "nonfinite", "sum", "max", "min")

    def __init__(self, estimators: Sequence[str], count: Any, nonfinite: Any, sum: Any, max: Any, min: Any):
        self.estimators = _estimator_names(estimators, "estimators")
        self.count, self.nonfinite, self.sum, self.max, self.min = count, nonfinite, sum, max, min

    def column(self, estimator: str) -> int:
        """The column of `estimator` in ``sum``, ``max`` and ``min``."""
        try:
            return self.estimators.index(estimator)
        except ValueError:
            raise TrmaskError(f"these partials hold {self.estimators}, not {estimator!r}") from None

    def __repr__(self) -> str:
        return f"RowPartials(rows={len(self.count)}, estimators={self.estimators})"

    def _struct(self, name: str):
        """The C struct, and the operands and code array that must stay alive while it is used.
        Checks dtypes and shapes, naming the attribute at fault."""
        count = Operand(f"{name}.count", self.count, (_ffi.DTYPE_I64,))
        if count.ndim != 1:
            raise TrmaskError(f"`{name}.count` has shape {count.shape}; expected [rows]")
        rows, columns = count.shape[0], len(self.estimators)
        operands = [count]
        for field, code, shape in (("nonfinite", _ffi.DTYPE_I64, (rows,)), ("sum", _ffi.DTYPE_F64, (rows, columns)),
                                   ("max", _ffi.DTYPE_F32, (rows, columns)), ("min", _ffi.DTYPE_F32, (rows, columns))):
            operand = Operand(f"{name}.{field}", getattr(self, field), (code,))
            if operand.shape != shape:
                raise TrmaskError(f"`{name}.{field}` has shape {operand.shape}; expected {shape} "
                                  f"(rows of `{name}.count`, one column per estimator)")
            operands.append(operand)
        codes = (ctypes.c_int32 * max(1, columns))(*(_ffi.ESTIMATORS[e] for e in self.estimators))
        outs = [_ffi.Out(o.ptr or None, o.strides[0], 0) if o.ndim == 1 else _ffi.Out(o.ptr or None, *o.strides)
                for o in operands]
        struct = _ffi.Partials(ctypes.sizeof(_ffi.Partials), 0, rows, columns, codes, *outs)
        return struct, (operands, codes)


def _estimator_names(estimators, argument: str) -> tuple:
    if isinstance(estimators, str):
        estimators = (estimators,)
    names = tuple(estimators)
    for name in names:
        if name not in _ffi.ESTIMATORS:
            raise TrmaskError(f"`{argument}` has {name!r}; expected names from {', '.join(_ffi.ESTIMATORS)}")
        if name in _ffi.BINARY_ESTIMATORS:
            raise TrmaskError(f"`{argument}` has {name!r}: binary estimators have no row partials (they need every "
                              f"token's two log-probs); decide them with trust_region_mask on the whole row")
    if len(set(names)) != len(names):
        raise TrmaskError(f"`{argument}` is {names}; each estimator may appear once")
    return names


def _new_partials(like: Any, rows: int, estimators: tuple) -> RowPartials:
    out = _arrays.new_output
    columns = len(estimators)
    return RowPartials(estimators, out(like, (rows,), "int64"), out(like, (rows,), "int64"),
                       out(like, (rows, columns), "float64"), out(like, (rows, columns), "float32"),
                       out(like, (rows, columns), "float32"))


def row_partials(logp_train: Any = None, logp_roll: Any = None, mask: Any = None, *, lengths: Any = None,
                 offsets: Any = None, log_ratio: Any = None, values: Any = None,
                 estimators: Optional[Sequence[str]] = None, nan_policy: str = "reject", clamp: Optional[float] = None,
                 threads: int = 0) -> RowPartials:
    """This shard's partials of every row (docs/semantics.md §3, partial rows), in one pass: count, nonfinite,
    and per estimator the float64 sum and the float32 max and min over the shard's counted tokens.

    Inputs, dtypes and options as in `trust_region_mask`: the shard's ``[B, T_shard]`` arrays (or
    packed with ``offsets=``), the same ``B`` rows on every shard; a row with no valid token here
    has count 0. ``estimators``: default ``("k2", "k3")`` (the paper's TRM-Max&Avg), or
    ``("value",)`` with ``values=``. Use the same ``nan_policy`` and ``clamp`` on every shard.
    """
    batch = _PreparedBatch(logp_train, logp_roll, log_ratio, values, mask, lengths, offsets)
    if estimators is None:
        estimators = ("value",) if batch.source == "values" else DEFAULT_PARTIAL_ESTIMATORS
    names = _estimator_names(estimators, "estimators")
    batch.check_estimators(names)
    options = _options(nan_policy, clamp, False, threads)
    out = _new_partials(batch.like, batch.rows, names)
    struct, keep = out._struct("out")
    status = _lib.trm_partials_compute(ctypes.byref(batch.struct), ctypes.byref(options), ctypes.byref(struct))
    raise_for_status(status, "row_partials")
    return out


def merge_partials(a: RowPartials, b: RowPartials, *more: RowPartials) -> RowPartials:
    """The partials of shards of the same rows merged, left to right: counts and sums add, max and
    min combine, a row with count 0 on one side takes the other side's values, and a NaN extreme
    stays NaN (fail closed). The result is new arrays of ``a``'s kind (numpy or torch)."""
    parts = (a, b) + more
    for index, part in enumerate(parts):
        if not isinstance(part, RowPartials):
            raise TrmaskError(f"merge_partials argument {index} is {type(part).__name__}; expected RowPartials")
        if part.estimators != a.estimators:
            raise TrmaskError(f"merge_partials argument {index} holds estimators {part.estimators}, argument 0 "
                              f"{a.estimators}: merge partials of the same estimators in the same order")
    first, keep_first = a._struct("partials 0")
    rows = first.n_rows
    out = _new_partials(a.count, rows, a.estimators)
    target, keep_target = out._struct("out")
    source = first
    for index, part in enumerate(parts[1:], start=1):
        other, keep_other = part._struct(f"partials {index}")
        if other.n_rows != rows:
            raise TrmaskError(f"merge_partials argument {index} has {other.n_rows} rows, argument 0 has {rows}")
        # After the first merge, `out` accumulates in place (the C ABI allows out == a).
        status = _lib.trm_partials_merge(ctypes.byref(source), ctypes.byref(other), ctypes.byref(target))
        raise_for_status(status, "merge_partials")
        source = target
    return out


class PartialsDecision:
    """What `keep_from_partials` returns: as `MaskResult` for these criteria, without a token mask.

    - ``keep_row``: bool ``[B]``; ``rejected``: one int per criterion, counted before the AND;
    - ``row_stats``: one float32 ``[B]`` per criterion, the statistic it tested;
    - ``count``, ``nonfinite``: int64 ``[B]``, copied from the partials; ``criteria``.
    A shard's token mask is its validity mask AND ``keep_row`` of the token's row.
    """

    __slots__ = ("keep_row", "rejected", "row_stats", "count", "nonfinite", "criteria")

    def __init__(self, keep_row, rejected, row_stats, count, nonfinite, criteria):
        self.keep_row, self.rejected, self.row_stats = keep_row, rejected, row_stats
        self.count, self.nonfinite, self.criteria = count, nonfinite, criteria

    def __repr__(self) -> str:
        parts = ", ".join(f"{c}: {r}" for c, r in zip(self.criteria, self.rejected))
        return f"PartialsDecision(kept {int(self.keep_row.sum())}/{len(self.keep_row)} rows; rejected by {parts or 'no criteria'})"


def keep_from_partials(partials: RowPartials, criteria: CriteriaLike = None, *, reject_empty: bool = False) -> PartialsDecision:
    """The keep decision from (merged) partials, by `trust_region_mask`'s rule (docs/semantics.md §3-§4).

    ``criteria`` as in `trust_region_mask` (default: the paper's TRM-Max&Avg, which needs the k2
    and k3 partials), with aggregations max, min, sum and mean only: token criteria need every
    token and are decided on each shard. Rows with count 0 are kept unless ``reject_empty``.
    """
    if not isinstance(partials, RowPartials):
        raise TrmaskError(f"`partials` is {type(partials).__name__}; expected RowPartials (from row_partials)")
    criteria = normalize_criteria(criteria)
    for c in criteria:
        if not c.is_row:
            raise TrmaskError(f"criterion {c} judges single tokens: it cannot be decided from row partials "
                              f"(apply it on each shard's tokens)")
        if c.agg == "ln_trm":
            raise TrmaskError(f"criterion {c} weighs each token by its position in the whole row: it cannot be decided "
                              f"from row partials (gather the row's tv values, or use 'ser:tv' which merges)")
        if c.estimator not in partials.estimators:
            raise TrmaskError(f"criterion {c} needs the {c.estimator!r} partials, but these hold {partials.estimators}; "
                              f"compute them with row_partials(..., estimators=(..., {c.estimator!r}))")
    struct, keep = partials._struct("partials")
    rows, n_criteria = struct.n_rows, len(criteria)
    like = partials.count
    keep_row = _arrays.new_output(like, (rows,), "bool")
    ints = _arrays.new_output(like, (2 * rows + n_criteria,), "int64")  # count, nonfinite, rejected
    stats = _arrays.new_output(like, (n_criteria, rows), "float32")
    pointer = _arrays.pointer
    ints_pointer = pointer(ints)
    # By field name: every output not named (keep_token, and any later field) is absent.
    out = _ffi.MaskOut(struct_size=ctypes.sizeof(_ffi.MaskOut), keep_row=_ffi.Out(pointer(keep_row) or None, 1, 0),
                       count=_ffi.Out(ints_pointer or None, 1, 0),
                       nonfinite=_ffi.Out(ints_pointer and ints_pointer + 8 * rows or None, 1, 0),
                       row_stats=_ffi.Out(pointer(stats) or None, 1, rows),
                       rejected=ints_pointer and ints_pointer + 16 * rows or None)
    options = _options("reject", None, reject_empty, 0)
    status = _lib.trm_partials_decide(ctypes.byref(struct), _c_criteria(criteria), n_criteria, ctypes.byref(options),
                                      ctypes.byref(out))
    raise_for_status(status, "keep_from_partials")
    return PartialsDecision(keep_row, tuple(ints[2 * rows:].tolist()), tuple(stats), ints[:rows], ints[rows:2 * rows],
                            criteria)
