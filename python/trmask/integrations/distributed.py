"""trmask across torch.distributed process groups (`import trmask.distributed`).

- Context parallelism (a row's tokens split across the ranks of a group): `row_partials_over_ranks`
  gathers every rank's `trmask.row_partials` and merges them in rank order, and
  `keep_from_sharded_rows` takes the keep decision from them, so every rank of the group gets the
  same decision, bit for bit (docs/sharded-rows.md).
- Data parallelism (each rank holds different rows): `sum_over_ranks` adds per-rank float64 sums in
  rank order on every rank (what verl's `rollout_is_batch_normalize` all-reduces, and any count or
  sum a batch metric is made of): the same bits on every rank, for any collective algorithm.
  `rollout_correction_over_ranks` gives every rank the statistics of `trmask.rollout_correction`
  over the union of the ranks' rows, bit for bit those of one call on the rows concatenated in
  rank order: `correction_rows_over_ranks` gathers the row records and the native reduce reduces
  them as one call reduces its own.

Collectives are `all_gather` (not `all_reduce`): an all-reduce may add in an order that differs
between ranks or runs; gathering and adding in rank order does not. Works with any backend that
gathers CPU tensors (gloo).
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from .. import (CorrectionResult, CorrectionRows, RowPartials, TrmaskError, keep_from_partials, merge_partials,
                reduce_correction_rows, rollout_correction, row_partials)
from .._criteria import normalize_criteria

__all__ = ["sum_over_ranks", "row_partials_over_ranks", "keep_from_sharded_rows", "correction_rows_over_ranks",
           "rollout_correction_over_ranks"]

_FIELDS = ("count", "nonfinite", "sum", "max", "min")


def _torch():
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise TrmaskError("trmask.distributed needs an initialised torch.distributed process group "
                          "(torch.distributed.init_process_group)")
    return torch


def _gather(tensor, group) -> list:
    torch = _torch()
    parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size(group))]
    torch.distributed.all_gather(parts, tensor, group=group)
    return parts


def sum_over_ranks(values: Sequence[float], group: Any = None) -> tuple:
    """The element-wise sums over the ranks of `group` (default: the default group) of each
    rank's float64 `values`, added in rank order: every rank gets the same bits."""
    torch = _torch()
    mine = torch.tensor([float(v) for v in values], dtype=torch.float64)
    parts = _gather(mine, group)
    totals = parts[0].tolist()
    for part in parts[1:]:  # rank order, the same on every rank (B-independent: a few scalars)
        totals = [a + b for a, b in zip(totals, part.tolist())]
    return tuple(totals)


def row_partials_over_ranks(partials: RowPartials, group: Any = None) -> RowPartials:
    """The partials of every rank of `group` (each holding a shard of the same rows) gathered and
    merged in rank order: the same merged partials, bit for bit, on every rank."""
    if not isinstance(partials, RowPartials):
        raise TrmaskError(f"`partials` is {type(partials).__name__}; expected RowPartials (from trmask.row_partials)")
    torch = _torch()
    fields = {}
    for name in _FIELDS:
        array = getattr(partials, name)
        tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(array)
        fields[name] = _gather(tensor, group)
    world = len(fields["count"])
    shards = [RowPartials(partials.estimators, *(fields[name][rank] for name in _FIELDS)) for rank in range(world)]
    if world == 1:
        return shards[0]
    return merge_partials(*shards)


def keep_from_sharded_rows(logp_train: Any = None, logp_roll: Any = None, mask: Any = None, *, criteria=None,
                           group: Any = None, estimators=None, reject_empty: bool = False, **options):
    """`trmask.keep_from_partials` over rows whose tokens are split across the ranks of `group`
    (context parallelism): this rank's shard in, the decision on the whole rows out, identical on
    every rank. ``estimators`` default to those the criteria need; ``options`` (``lengths``,
    ``offsets``, ``log_ratio``, ``values``, ``nan_policy``, ``clamp``, ``threads``) go to
    `trmask.row_partials` and must be the same on every rank."""
    criteria = normalize_criteria(criteria)
    needed = tuple(dict.fromkeys(c.estimator for c in criteria))
    mine = row_partials(logp_train, logp_roll, mask, estimators=estimators or needed, **options)
    return keep_from_partials(row_partials_over_ranks(mine, group), criteria, reject_empty=reject_empty)


def correction_rows_over_ranks(rows: CorrectionRows, group: Any = None) -> list:
    """The row records of every rank of `group` (each holding different rows), in rank order, as
    `CorrectionRows` under this rank's config: two gathers (row counts, then the records padded
    to the longest)."""
    if not isinstance(rows, CorrectionRows):
        raise TrmaskError(f"`rows` is {type(rows).__name__}; expected CorrectionRows "
                          "(rollout_correction(..., row_records=True).rows)")
    torch = _torch()
    records = rows.records if isinstance(rows.records, torch.Tensor) else torch.from_numpy(rows.records)
    counts = [int(n) for n in _gather(torch.tensor([records.shape[0]], dtype=torch.int64), group)]
    padded = records.new_zeros((max(counts), records.shape[1]))
    padded[:records.shape[0]] = records
    return [rows.like(part[:count]) for part, count in zip(_gather(padded, group), counts)]


def rollout_correction_over_ranks(*args, group: Any = None, **kwargs) -> CorrectionResult:
    """`trmask.rollout_correction` on this rank's rows (arguments as there; every rank must pass
    the same config), with ``statistics`` over the rows of every rank of `group`: on every rank,
    bit for bit those of one call on the ranks' rows concatenated in rank order. The mask, keep_row
    and weights are this rank's; ``normalize=True`` is refused (it would divide by this rank's
    mean: reduce first, then `trmask.divide_weights` by the ``norm_factor`` of the statistics)."""
    if kwargs.get("normalize"):
        raise TrmaskError("`normalize=True` divides by this rank's mean; pass normalize=False and divide by "
                          "statistics['weights']['norm_factor'] (trmask.divide_weights)")
    if kwargs.get("statistics") is False:
        raise TrmaskError("rollout_correction_over_ranks computes the statistics; drop `statistics=False`")
    kwargs["row_records"] = True
    result = rollout_correction(*args, **kwargs)
    result.statistics = reduce_correction_rows(correction_rows_over_ranks(result.rows, group))
    return result
