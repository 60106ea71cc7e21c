"""verl 0.9.1's rollout-correction functions (verl/trainer/ppo/rollout_corr_helper.py) over one
native call each, `trmask.rollout_correction`: same signatures, defaults, return types, metric keys
and refusals. What differs, and why: docs/verl.md."""

from __future__ import annotations

import math
import sys
from typing import Any, Optional

from ... import TrmaskError, WeightRule, divide_weights, reduce_correction_rows, rollout_correction
from .. import distributed
from . import _layout
from ._config import (ISRule, VerlAssertionError, check_rejection_arguments, memoised, parse_is_rule, parse_rejections)

#: verl's SAFETY_BOUND: log-ratios (and the sequence weight's row sum) are clamped to +-20.
SAFETY_BOUND = 20.0
_NO_VALID_TOKEN = "`response_mask` must hold at least one valid token (nonzero)"


class WeightsBatch:
    """The importance weights when verl is not importable: ``.batch["rollout_is_weights"]``, as
    on verl's DataProto."""

    __slots__ = ("batch",)

    def __init__(self, weights):
        self.batch = {"rollout_is_weights": weights}

    def __repr__(self) -> str:
        return f"WeightsBatch(rollout_is_weights: {tuple(self.batch['rollout_is_weights'].shape)})"


def _weights_batch(weights):
    """verl's DataProto when verl can be imported (as verl returns), else a `WeightsBatch`."""
    try:
        from verl.protocol import DataProto
    except ImportError:
        return WeightsBatch(weights)
    return DataProto.from_dict(tensors={"rollout_is_weights": weights})


def _distributed() -> bool:
    """verl's test: batch normalisation all-reduces when torch.distributed is initialised."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized()


@memoised
def _weight_rule(rule: ISRule) -> WeightRule:
    if rule.icepop:
        return WeightRule(rule.level, "mask", lo=rule.lower, hi=rule.upper)
    return WeightRule(rule.level, "truncate", hi=rule.upper)


def _correct(*, logp_train=None, logp_roll=None, log_ratio=None, mask, options=(), rule: Optional[ISRule] = None,
             normalize: bool = False, group: Any = None, refuse_empty=TrmaskError):
    """One native call in verl's arithmetic, jagged inputs unpacked, and batch normalisation across
    ranks when torch.distributed is initialised (as verl). With a `group`, the statistics are those
    of the rows of every rank of the group (`trmask.distributed.correction_rows_over_ranks`), and
    batch normalisation divides by their `norm_factor`: bit for bit the single-process answer on
    the concatenated rows. Then refuses, with `refuse_empty` (None: never), a batch without a valid
    token on this rank (verl's check; after the collective, so no rank is left waiting). Returns the
    result, the normalisation factor verl reports, and the `Jagged` rows (None for dense inputs)."""
    arrays, jagged = _layout.unpack({"logp_train": logp_train, "logp_roll": logp_roll, "log_ratio": log_ratio,
                                     "mask": mask})
    across_ranks = normalize and (group is not None or _distributed())
    result = rollout_correction(arrays["logp_train"], arrays["logp_roll"], arrays["mask"], log_ratio=arrays["log_ratio"],
                                offsets=None if jagged is None else jagged.offsets,
                                lengths=None if jagged is None else jagged.lengths,
                                rejections=[option.rejection for option in options],
                                weights=None if rule is None else _weight_rule(rule),
                                normalize=normalize and not across_ranks, mask_weights=True, clamp=SAFETY_BOUND,
                                row_records=group is not None)
    valid_here = result.statistics["n_tokens_valid"]
    if group is not None:
        result.statistics = reduce_correction_rows(distributed.correction_rows_over_ranks(result.rows, group))
    factor = None
    if normalize:
        stats = result.statistics["weights"]
        factor = stats["norm_factor"]  # with a group: the single-process divisor (1 when the mean is <= 1e-8)
        if across_ranks and group is None:
            total, count = distributed.sum_over_ranks((stats["norm_sum"], stats["norm_count"]))
            mean = total / count if count else math.nan
            factor = mean if mean > 1e-8 else 1.0
        if across_ranks and factor != 1.0:  # dividing by 1 changes no weight
            divide_weights(result.weights, factor, offsets=None if jagged is None else jagged.offsets)
    if refuse_empty is not None and valid_here == 0:
        raise refuse_empty(_NO_VALID_TOKEN)
    return result, factor, jagged


def _is_metrics(rule: ISRule, stats: dict, factor: Optional[float]) -> dict:
    """verl's compute_is_metrics keys, in its order."""
    if rule.level == "sequence":
        order = ("max", "min", "mean", "ratio_fraction_high", "ratio_fraction_low")
    else:
        order = ("mean", "ratio_fraction_high", "ratio_fraction_low", "max", "min")
    order += ("std", "eff_sample_size", "seq_mean", "seq_std", "seq_max", "seq_min", "seq_max_deviation",
              "seq_fraction_high", "seq_fraction_low")
    if rule.icepop:
        order += ("oob_ratio",)
    metrics = {f"rollout_is_{key}": float(stats[key]) for key in order}
    if factor is not None:
        metrics["rollout_is_batch_norm_factor"] = float(factor)
    return metrics


_RS_KEYS = ("mean", "max", "min", "fraction_high", "fraction_low", "std", "seq_mean", "seq_std", "seq_max", "seq_min",
            "seq_max_deviation", "seq_fraction_high")


def _rs_metrics(options, statistics: dict) -> dict:
    """verl's compute_rs_metrics keys per option (seq_fraction_low for k1 options only), the
    option's masked fractions, then the combined ones."""
    metrics = {}
    for option, stats in zip(options, statistics["rejections"]):
        prefix = f"rollout_rs_{option.name}"
        keys = _RS_KEYS + (("seq_fraction_low",) if option.is_k1 else ()) + ("masked_fraction", "seq_masked_fraction")
        metrics.update({f"{prefix}_{key}": float(stats[key]) for key in keys})
    metrics["rollout_rs_masked_fraction"] = float(statistics["masked_fraction"])
    metrics["rollout_rs_seq_masked_fraction"] = float(statistics["seq_masked_fraction"])
    return metrics


_OFFPOLICY_KEYS = ("kl", "k3_kl", "rollout_ppl", "rollout_log_ppl", "log_ppl_diff", "log_ppl_abs_diff",
                   "log_ppl_diff_max", "log_ppl_diff_min", "ppl_ratio", "chi2_token", "chi2_seq")


def _offpolicy_metrics(stats: dict, with_rollout: bool) -> dict:
    metrics = {"training_ppl": float(stats["training_ppl"]), "training_log_ppl": float(stats["training_log_ppl"])}
    if with_rollout:
        metrics.update({key: float(stats[key]) for key in _OFFPOLICY_KEYS})
    return metrics


def compute_rollout_rejection_mask(log_ratio: Any, response_mask: Any, rollout_rs: str = "token_k1",
                                   rollout_rs_threshold: Optional[str | float] = None, *, group: Any = None) -> tuple:
    """verl's `compute_rollout_rejection_mask`: ``(modified_response_mask, metrics)``. The mask is
    ``response_mask * keep`` in ``response_mask``'s dtype (its values survive where kept); see
    docs/verl.md for the options, thresholds and the k1 orientation. ``group`` (a
    torch.distributed process group, e.g. the data-parallel one): metrics over the rows of
    every rank of it, the same bits on every rank (docs/verl.md); None: this rank's, as verl."""
    check_rejection_arguments(rollout_rs, rollout_rs_threshold)
    empty = log_ratio.shape[0] == 0
    if empty and group is None:
        return response_mask, {}
    options = parse_rejections(rollout_rs, rollout_rs_threshold)
    result, _, jagged = _correct(log_ratio=log_ratio, mask=response_mask, options=options, group=group,
                                 refuse_empty=None if empty else TrmaskError)
    if empty:  # it took part in the gather; verl returns no metrics for an empty batch
        return response_mask, {}
    return _layout.wrap(jagged, result.mask), _rs_metrics(options, result.statistics)


def compute_rollout_correction_weights(log_ratio: Any, response_mask: Any, rollout_is: str = "token",
                                       rollout_is_threshold: str | float = 2.0,
                                       rollout_is_batch_normalize: bool = False, *, group: Any = None) -> tuple:
    """verl's `compute_rollout_correction_weights`: ``(rollout_is_weights, metrics)``; TIS for a
    number, IcePop for a ``"lower_upper"`` string; weights are ``w * response_mask``, not zeroed
    by any rejection. ``group``: metrics (and the batch normalisation) over the rows of every
    rank of that process group, as in `compute_rollout_rejection_mask`."""
    rule = parse_is_rule(rollout_is, rollout_is_threshold)
    result, factor, jagged = _correct(log_ratio=log_ratio, mask=response_mask, rule=rule,
                                      normalize=bool(rollout_is_batch_normalize), group=group)
    return (_layout.wrap(jagged, result.weights),
            _is_metrics(rule, result.statistics["weights"], factor if rollout_is_batch_normalize else None))


def compute_rollout_correction_and_rejection_mask(
        old_log_prob: Any, rollout_log_prob: Any, response_mask: Any, rollout_is: Optional[str] = None,
        rollout_is_threshold: Optional[str | float] = 2.0, rollout_is_batch_normalize: bool = False,
        rollout_rs: Optional[str] = None, rollout_rs_threshold: Optional[str | float] = None, *,
        group: Any = None) -> tuple:
    """verl's `compute_rollout_correction_and_rejection_mask`, in one native pass:
    ``(weights DataProto or None, modified_response_mask, metrics)``, metric keys prefixed with
    ``rollout_corr/``. ``group``: metrics (and the batch normalisation) over the rows of every
    rank of that process group, as in `compute_rollout_rejection_mask`."""
    try:
        rule, options = _combined_config(old_log_prob, rollout_log_prob, response_mask, rollout_is,
                                         rollout_is_threshold, rollout_rs, rollout_rs_threshold)
    except Exception:
        # verl checks for a valid token first: that refusal wins (a full read, on this error path only).
        if not bool(response_mask.any()):
            raise TrmaskError(_NO_VALID_TOKEN) from None
        raise
    normalize = rule is not None and bool(rollout_is_batch_normalize)
    result, factor, jagged = _correct(logp_train=old_log_prob, logp_roll=rollout_log_prob, mask=response_mask,
                                      options=options, rule=rule, normalize=normalize, group=group)
    metrics = {}
    if rule is not None:
        metrics.update(_is_metrics(rule, result.statistics["weights"], factor if normalize else None))
    if options:
        metrics.update(_rs_metrics(options, result.statistics))
    metrics.update(_offpolicy_metrics(result.statistics["offpolicy"], with_rollout=True))
    weights = None if rule is None else _weights_batch(_layout.wrap(jagged, result.weights))
    return weights, _layout.wrap(jagged, result.mask), {f"rollout_corr/{key}": value for key, value in metrics.items()}


def _combined_config(old_log_prob, rollout_log_prob, response_mask, rollout_is, rollout_is_threshold, rollout_rs,
                     rollout_rs_threshold) -> tuple:
    """The combined call's checks, in verl's order after its valid-token check (nested tensors'
    rows are compared when they are unpacked)."""
    if getattr(old_log_prob, "is_nested", False):
        pass
    elif old_log_prob.shape != rollout_log_prob.shape:
        raise TrmaskError(f"`old_log_prob` has shape {tuple(old_log_prob.shape)}, `rollout_log_prob` "
                          f"{tuple(rollout_log_prob.shape)}; expected the same")
    elif old_log_prob.shape != response_mask.shape:
        raise TrmaskError(f"`old_log_prob` has shape {tuple(old_log_prob.shape)}, `response_mask` "
                          f"{tuple(response_mask.shape)}; expected the same")
    rule = None
    if rollout_is is not None and rollout_is_threshold is not None:
        rule = parse_is_rule(rollout_is, rollout_is_threshold)
    options = ()
    if rollout_rs is not None:
        if rollout_rs_threshold is None:
            raise TrmaskError("`rollout_rs_threshold` must be given when `rollout_rs` is set")
        check_rejection_arguments(rollout_rs, rollout_rs_threshold)
        options = parse_rejections(rollout_rs, rollout_rs_threshold)
    return rule, options


def compute_offpolicy_metrics(old_log_prob: Any, rollout_log_prob: Optional[Any], response_mask: Any, *,
                              group: Any = None) -> dict:
    """verl's `compute_offpolicy_metrics` (without the ``rollout_corr/`` prefix, as verl): the
    perplexities, KL estimates and chi-square divergences; only the training perplexities when
    ``rollout_log_prob`` is None. ``group``: over the rows of every rank of that process group,
    as in `compute_rollout_rejection_mask`."""
    with_rollout = rollout_log_prob is not None
    # Without rollout log-probs only the training perplexities are wanted; they read logp_train alone.
    result, _, _ = _correct(logp_train=old_log_prob, logp_roll=rollout_log_prob if with_rollout else old_log_prob,
                            mask=response_mask, group=group, refuse_empty=VerlAssertionError)
    return _offpolicy_metrics(result.statistics["offpolicy"], with_rollout)
