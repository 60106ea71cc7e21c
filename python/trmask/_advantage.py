"""Advantage-conditioned masks (semantics §4.8; docs/rules-2026.md): DPPO's token rule, which masks
only the violation on the side the update pushes toward, and the off-policy sequence mask (OPSM)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from . import _ffi
from ._api import MaskResult, trust_region_mask
from .errors import TrmaskError

STATISTICS = ("bdiff", "bkl", "ratio")
ZERO_ADVANTAGE = tuple(_ffi.ZERO_ADVANTAGE)


@dataclass(frozen=True)
class AdvantageRule:
    """An advantage-conditioned token rule and/or sequence rule (semantics §4.8).

    Token rule (``statistic``): a counted token is masked iff ``A > 0`` and it violates the upper
    limit, or ``A < 0`` and it violates the lower limit; ``A = 0`` applies the lower test with
    ``zero_advantage="lower"`` (prime-rl, verl's DPPO) and never masks with ``"keep"`` (SkyRL).
    Equality keeps; a NaN statistic or advantage masks the token.

    - ``bdiff``: ``D = p_t - p_r``; upper ``D > high``, lower ``D < -low`` (DPPO binary TV, 0.2);
    - ``bkl``: binary KL ``KL_B(p_r || p_t)``; upper ``lt > lr`` and ``bkl > high``, lower
      ``lt < lr`` and ``bkl > low``;
    - ``ratio``: upper ``rho > high``, lower ``rho < low``, decided as ``delta > ln high``,
      ``delta < ln low``.

    Sequence rule (``sequence_limit``, OPSM): keep a row iff ``A_i >= 0`` or
    ``mean_t(-delta) <= sequence_limit`` (needs per-row advantages).
    """

    statistic: str = "none"
    low: float = 0.0
    high: float = 0.0
    zero_advantage: str = "lower"
    sequence_limit: Optional[float] = None

    def __post_init__(self):
        if self.statistic not in _ffi.ADVANTAGE_STATISTICS:
            raise TrmaskError(f"advantage `statistic` is {self.statistic!r}; expected one of {', '.join(STATISTICS)}")
        if self.zero_advantage not in ZERO_ADVANTAGE:
            raise TrmaskError(f"`zero_advantage` is {self.zero_advantage!r}; expected one of {', '.join(ZERO_ADVANTAGE)}")
        low, high = float(self.low), float(self.high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if self.statistic == "ratio" and not (low > 0 and high > 0):
            raise TrmaskError(f"ratio limits low={self.low!r}, high={self.high!r}; expected ratios > 0 (e.g. 0.8, 1.28)")
        if self.statistic in ("bdiff", "bkl") and not (low >= 0 and high >= 0):
            raise TrmaskError(f"{self.statistic} limits low={self.low!r}, high={self.high!r}; expected numbers >= 0 "
                              f"(bdiff masks D < -low and D > high)")
        if self.statistic == "none" and (low != 0 or high != 0):
            raise TrmaskError("`low` and `high` belong to a token rule: give a `statistic`")
        if self.sequence_limit is not None:
            limit = float(self.sequence_limit)
            if math.isnan(limit):
                raise TrmaskError("`sequence_limit` is NaN")
            object.__setattr__(self, "sequence_limit", limit)
        if self.statistic == "none" and self.sequence_limit is None:
            raise TrmaskError("an AdvantageRule needs a token `statistic`, a `sequence_limit`, or both")

    def check_source(self, source: str) -> None:
        if self.statistic in ("bdiff", "bkl") and source != "logp_train":
            raise TrmaskError(f"advantage statistic {self.statistic!r} is a function of the probabilities: pass both "
                              f"log-probs, not {source}=")
        if source == "values":
            raise TrmaskError("advantage rules read the log-ratio: pass log-probs or log_ratio=, not values=")

    def c_struct(self) -> _ffi.AdvantageRule:
        sequence = self.sequence_limit is not None
        return _ffi.AdvantageRule(_ffi.ADVANTAGE_STATISTICS[self.statistic], _ffi.ZERO_ADVANTAGE[self.zero_advantage],
                                  self.low, self.high, int(sequence), 0, self.sequence_limit if sequence else 0.0)


class AdvantageMaskResult:
    """What `advantage_mask` returns: ``keep_token`` (bool token grid: valid and not masked by
    the rule), the side counts ``masked_upper``, ``masked_lower``, ``masked_positive``
    (``A > 0``) and ``masked_negative`` (``A < 0``), and ``count`` (int64 ``[B]``, valid tokens)."""

    def __init__(self, result: MaskResult):
        self.keep_token = result.keep_token
        self.count = result.count
        counts = result.advantage_counts
        self.masked_upper = counts["adv_masked_upper"]
        self.masked_lower = counts["adv_masked_lower"]
        self.masked_positive = counts["adv_masked_positive"]
        self.masked_negative = counts["adv_masked_negative"]

    def __repr__(self) -> str:
        return (f"AdvantageMaskResult(masked upper {self.masked_upper}, lower {self.masked_lower}; "
                f"A>0 {self.masked_positive}, A<0 {self.masked_negative})")


def advantage_mask(logp_train: Any, logp_roll: Any, mask: Any = None, advantages: Any = None, *, statistic: str = "bdiff",
                   low: float, high: float, zero_advantage: str = "lower", lengths: Any = None, offsets: Any = None,
                   nan_policy: str = "reject", clamp: Optional[float] = None, binary_eps: Optional[float] = None,
                   threads: int = 0) -> AdvantageMaskResult:
    """DPPO's advantage-conditioned token mask (semantics §4.8; `AdvantageRule` has the rule), in one
    pass: ``advantages`` per token (``[B, T]``, packed ``[N]``) or per row (``[B]``), any float
    dtype. Inputs and options as in `trust_region_mask`. Usual limits: ``bdiff`` 0.2 / 0.2,
    ``ratio`` 0.8 / 1.28 (docs/rules-2026.md)."""
    if advantages is None:
        raise TrmaskError("`advantages` is required: one per token or one per row")
    rule = AdvantageRule(statistic, low, high, zero_advantage)
    result = trust_region_mask(logp_train, logp_roll, mask, lengths=lengths, offsets=offsets, criteria=(),
                               nan_policy=nan_policy, clamp=clamp, threads=threads, binary_eps=binary_eps,
                               advantages=advantages, advantage_rule=rule)
    return AdvantageMaskResult(result)


def off_policy_sequence_mask(logp_train: Any = None, logp_roll: Any = None, mask: Any = None, advantages: Any = None,
                             limit: float = None, *, lengths: Any = None, offsets: Any = None, log_ratio: Any = None,
                             nan_policy: str = "reject", clamp: Optional[float] = None, threads: int = 0) -> MaskResult:
    """The off-policy sequence mask (DeepSeek-V3.2, TRL, slime; semantics §4.8): keep row ``i`` iff
    ``advantages[i] >= 0`` or ``mean_t(-delta) <= limit`` over its valid tokens (an empty row has
    mean 0). ``advantages``: one per row, ``[B]``. Returns a `MaskResult` (``keep_row``,
    ``keep_token``, ``advantage_counts["adv_rows_rejected"]``)."""
    if advantages is None or limit is None:
        raise TrmaskError("`advantages` (one per row) and `limit` are required")
    rule = AdvantageRule(sequence_limit=limit)
    return trust_region_mask(logp_train, logp_roll, mask, lengths=lengths, offsets=offsets, log_ratio=log_ratio,
                             criteria=(), nan_policy=nan_policy, clamp=clamp, threads=threads, advantages=advantages,
                             advantage_rule=rule)
