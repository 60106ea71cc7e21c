"""verl 0.9.1's rollout-correction configuration read into trmask's criteria, with verl's refusals.

verl takes its rejection options as a comma-separated string (``rollout_rs``), their thresholds as
a number or a comma-separated string (``rollout_rs_threshold``), and the importance-weight bound as
a number (TIS cap) or a ``"lower_upper"`` string (IcePop). Every configuration verl refuses is
refused here with the same exception type (each also a `trmask.TrmaskError`); every one it accepts
means the same thing. docs/verl.md has the table.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

from ... import Rejection, TrmaskError


class VerlTypeError(TrmaskError, TypeError):
    """A verl argument of the wrong type (verl raises TypeError)."""


class VerlZeroDivisionError(TrmaskError, ZeroDivisionError):
    """A single k1 threshold of 0: verl divides 1 by it (ZeroDivisionError)."""


class VerlAssertionError(TrmaskError, AssertionError):
    """compute_offpolicy_metrics without a valid token (verl asserts)."""


#: verl's rejection options: name -> (aggregation level, estimator).
REJECTION_OPTIONS = {
    "token_k1": ("token", "k1"), "token_k2": ("token", "k2"), "token_k3": ("token", "k3"),
    "seq_sum_k1": ("seq_sum", "k1"), "seq_sum_k2": ("seq_sum", "k2"), "seq_sum_k3": ("seq_sum", "k3"),
    "seq_mean_k1": ("seq_mean", "k1"), "seq_mean_k2": ("seq_mean", "k2"), "seq_mean_k3": ("seq_mean", "k3"),
    "seq_max_k2": ("seq_max", "k2"), "seq_max_k3": ("seq_max", "k3"),
}
IS_LEVELS = ("token", "sequence")


@dataclass(frozen=True)
class Option:
    """One verl rejection option read into a `trmask.Rejection`: keep iff ``lo <= statistic <= hi``.
    For k1 options the bounds are ``log(lower)`` and ``log(upper)`` of verl's ratio bounds on the
    k1 statistic ``-delta``, so the band kept is ``1/upper <= rho <= 1/lower`` (verl's orientation).
    A NaN threshold (``"nan"``) keeps nothing, as in verl: the rejection is then ``hi = -inf``."""

    name: str
    rejection: Rejection

    @property
    def is_k1(self) -> bool:
        return self.rejection.estimator == "k1"


def memoised(parse):
    """`parse` remembering its answers for hashable arguments (keyed by type too, so ``True`` and
    ``1`` stay apart): a trainer passes the same configuration at every step, and parsing it costs
    more than a small native call. Refusals are raised again each time (never cached); a result is
    immutable, so sharing it is safe."""
    cached = functools.lru_cache(maxsize=64, typed=True)(parse)

    @functools.wraps(parse)
    def parse_once(*args):
        try:
            hash(args)
        except TypeError:
            return parse(*args)
        return cached(*args)

    return parse_once


@memoised
def parse_rejections(rollout_rs, rollout_rs_threshold) -> tuple:
    """The deduplicated options of ``rollout_rs`` (in first-seen order) with their bounds."""
    names = _option_names(rollout_rs)
    specs = _threshold_specs(rollout_rs_threshold, len(names))
    return tuple(_rejection(name, spec) for name, spec in zip(names, specs))


def check_rejection_arguments(rollout_rs, rollout_rs_threshold) -> None:
    """verl's first two checks, which it makes even on an empty batch."""
    if rollout_rs is None or not isinstance(rollout_rs, str):
        raise TrmaskError(f"`rollout_rs` is {rollout_rs!r}; expected a non-empty string of comma-separated options")
    if rollout_rs_threshold is None:
        raise TrmaskError("`rollout_rs_threshold` must be given for rejection sampling")


def _option_names(rollout_rs: str) -> list:
    names = [part.strip() for part in rollout_rs.split(",") if part.strip()]
    if not names:
        raise TrmaskError(f"`rollout_rs` is {rollout_rs!r}; expected at least one option")
    for name in names:
        if name not in REJECTION_OPTIONS:
            raise TrmaskError(f"`rollout_rs` has {name!r}; expected options from {', '.join(sorted(REJECTION_OPTIONS))}")
    return list(dict.fromkeys(names))


def _threshold_specs(threshold, n_options: int) -> list:
    # bool is an int: verl reads True as "True", which no option parses (ValueError below).
    if isinstance(threshold, (int, float)):
        specs = [str(threshold)]
    elif isinstance(threshold, str):
        specs = [part.strip() for part in threshold.split(",") if part.strip()]
    else:
        raise VerlTypeError(f"`rollout_rs_threshold` has type {type(threshold).__name__}; expected a number or a "
                            f"string of comma-separated thresholds")
    if not specs:
        raise TrmaskError("`rollout_rs_threshold` holds no threshold")
    if len(specs) not in (1, n_options):
        raise TrmaskError(f"`rollout_rs_threshold` has {len(specs)} thresholds for {n_options} distinct options; "
                          f"give one shared threshold or one per distinct option")
    return specs * n_options if len(specs) == 1 else specs


def _number(text: str, option: str) -> float:
    """Python's float() (verl's parser: it also reads "1_000", "inf" and "nan")."""
    try:
        return float(text)
    except ValueError:
        raise TrmaskError(f"threshold {text!r} of option {option!r} is not a number") from None


def _rejection(option: str, spec: str) -> Option:
    estimator = REJECTION_OPTIONS[option][1]
    if estimator == "k1":
        if "_" in spec:
            lower_text, upper_text = spec.split("_", 1)
            lower, upper = _number(lower_text, option), _number(upper_text, option)
        else:
            upper = _number(spec, option)
            if upper == 0:
                raise VerlZeroDivisionError(f"threshold {spec!r} of option {option!r}: a single k1 threshold u means "
                                            f"lower = 1/u, and u is 0")
            lower = 1.0 / upper
        if lower <= 0 or upper <= 0:
            raise TrmaskError(f"thresholds of option {option!r} must be positive ratios; got {spec!r}")
        if lower > upper:
            raise TrmaskError(f"thresholds of option {option!r} must be lower <= upper; got {spec!r} "
                              f"(a single value u means 1/u_u, so u must be >= 1)")
        return _option(option, math.log(lower), math.log(upper))
    if "_" in spec:
        raise TrmaskError(f"option {option!r} takes one upper bound, not a 'lower_upper' pair; got {spec!r}")
    upper = _number(spec, option)
    if upper <= 0:
        raise TrmaskError(f"threshold of option {option!r} must be positive; got {spec!r}")
    return _option(option, -math.inf, upper)


def _option(name: str, lo: float, hi: float) -> Option:
    level, estimator = REJECTION_OPTIONS[name]
    if math.isnan(lo) or math.isnan(hi):  # verl compares with NaN: nothing passes
        lo = hi = -math.inf
    return Option(name, Rejection(level, estimator, lo, hi))


@dataclass(frozen=True)
class ISRule:
    """verl's importance weights: ``level`` token or sequence; ``upper`` the TIS cap, or with
    ``lower`` the IcePop band (weights outside it become 0)."""

    level: str
    upper: float
    lower: Optional[float]

    @property
    def icepop(self) -> bool:
        return self.lower is not None


@memoised
def parse_is_rule(rollout_is, rollout_is_threshold) -> ISRule:
    if rollout_is not in IS_LEVELS:
        raise TrmaskError(f"`rollout_is` is {rollout_is!r}; expected one of {', '.join(IS_LEVELS)}")
    threshold = rollout_is_threshold
    if isinstance(threshold, bool):
        raise VerlTypeError("`rollout_is_threshold` is a bool; expected a number or a threshold string")
    lower = None
    if isinstance(threshold, (int, float)):
        upper = float(threshold)
    elif isinstance(threshold, str):
        spec = threshold.strip()
        if not spec:
            raise TrmaskError("`rollout_is_threshold` is an empty string")
        if "_" in spec:
            lower_text, upper_text = spec.split("_", 1)
            lower, upper = _is_number(lower_text, threshold), _is_number(upper_text, threshold)
        else:
            upper = _is_number(spec, threshold)
    else:
        raise VerlTypeError(f"`rollout_is_threshold` has type {type(threshold).__name__}; expected a number or a "
                            f"threshold string")
    if upper <= 0:
        raise TrmaskError(f"`rollout_is_threshold` upper bound must be positive; got {upper}")
    if lower is not None and lower <= 0:
        raise TrmaskError(f"`rollout_is_threshold` lower bound must be positive; got {lower}")
    if lower is not None and lower > upper:
        raise TrmaskError(f"`rollout_is_threshold` needs lower <= upper; got {threshold!r}")
    if math.isnan(upper) or (lower is not None and math.isnan(lower)):
        # verl accepts it and returns NaN weights and metrics; trmask refuses (docs/verl.md).
        raise TrmaskError(f"`rollout_is_threshold` is {threshold!r}: a NaN bound makes every weight NaN")
    return ISRule(rollout_is, upper, lower)


def _is_number(text: str, threshold) -> float:
    try:
        return float(text)
    except ValueError:
        raise TrmaskError(f"`rollout_is_threshold` {threshold!r} is not a number or a 'lower_upper' pair") from None
