"""Criteria: what a row (or token) must satisfy to be kept (docs/semantics.md §4), and their string form.

String grammar (for config files), items separated by commas, whitespace ignored:

    item      := [number "<="] aggregation ":" estimator [("<=" | ">=") number]
    aggregation := max | min | sum | mean | token | ser | geo
                 | "ln_trm(kl_max=" number [";eps=" number] ")"
    estimator := delta | k1 | k2 | k3 | abs | ratio | tv | value
                 | bdiff | btv | bkl | bkl_tr | bkl_sym
    number    := a float literal, or inf / -inf

A leading ``lo <=`` and a trailing ``>= lo`` cannot be combined. Examples:
``"max:k2<=0.1,mean:k3<=0.002"`` (the paper's TRM-Max&Avg, the default),
``"-0.001<=mean:delta<=0.001"`` (a geometric-mean ratio band), ``"min:delta>=-9.21"`` (a veto),
``"0.5<=token:ratio<=2"`` (IcePop), ``"ser:tv<=0.05"`` and
``"ln_trm(kl_max=0.01;eps=0.05):tv<=0.03"`` (the length-neutral rules of docs/semantics.md §4.4),
``"token:btv<=0.2"`` (DPPO's binary TV), ``"max:bkl_sym<=0.1"`` (a sequence-level binary trust
region) and ``"0.999<=geo:ratio<=1.001"`` (a geometric-mean band decided in log space); the
2026 rules are described in docs/rules-2026.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Optional, Union

from . import _ffi
from .errors import TrmaskError

AGGREGATIONS = tuple(_ffi.AGGREGATIONS)
ESTIMATORS = tuple(_ffi.ESTIMATORS)
NON_NEGATIVE = ("k2", "k3", "abs", "ratio", "tv", "btv", "bkl", "bkl_tr", "bkl_sym")


@dataclass(frozen=True)
class Criterion:
    """``lo <= agg(estimator) <= hi``, inclusive; an infinite bound disables its side.

    ``agg`` is ``max``, ``min``, ``sum``, ``mean`` over a row's valid tokens, or ``token`` (the
    bound applies to each token and masks single tokens, never rejecting a row). ``estimator`` is
    a per-token function of ``delta = logp_train - logp_roll`` (docs/semantics.md §2) or ``value`` for a
    precomputed per-token divergence.

    Length-neutral rules (docs/semantics.md §4.4), on estimator ``tv`` only: ``ser`` (the row mean of
    ``tv``) and ``ln_trm`` (``sum_t w_t tv_t / sum_t w_t`` with position weights
    ``w_t = min(1, (T-t) eps, sqrt((T-t) kl_max / 2))``; needs ``kl_max``, ``eps`` optional).
    """

    agg: str
    estimator: str
    lo: float = -math.inf
    hi: float = math.inf
    kl_max: Optional[float] = None
    eps: Optional[float] = None

    def __post_init__(self):
        if self.agg not in AGGREGATIONS:
            raise TrmaskError(f"criterion aggregation {self.agg!r} is unknown; expected one of {', '.join(AGGREGATIONS)}")
        if self.estimator not in ESTIMATORS:
            raise TrmaskError(f"criterion estimator {self.estimator!r} is unknown; expected one of {', '.join(ESTIMATORS)}")
        lo, hi = float(self.lo), float(self.hi)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        if math.isnan(lo) or math.isnan(hi):
            raise TrmaskError(f"criterion {self}: a bound is NaN")
        if lo > hi:
            raise TrmaskError(f"criterion {self}: lo {lo} is greater than hi {hi}")
        if self.estimator in NON_NEGATIVE and hi < 0:
            raise TrmaskError(f"criterion {self}: {self.estimator} is never negative, so hi {hi} would reject every row")
        if self.estimator == "ratio" and math.isfinite(lo) and lo < 0:
            raise TrmaskError(f"criterion {self}: ratio bounds are in ratio space and must be >= 0")
        if self.agg in ("ser", "ln_trm") and self.estimator != "tv":
            raise TrmaskError(f"criterion {self.agg}:{self.estimator}: {self.agg} is defined on estimator 'tv' "
                              f"(docs/semantics.md §4.4)")
        if self.agg == "geo" and self.estimator != "ratio":
            raise TrmaskError(f"criterion geo:{self.estimator}: geo bounds the geometric-mean ratio, estimator 'ratio' "
                              f"(e.g. Criterion('geo', 'ratio', lo=0.999, hi=1.001))")
        if self.agg != "ln_trm":
            if self.kl_max is not None or self.eps is not None:
                raise TrmaskError(f"criterion {self}: kl_max and eps belong to 'ln_trm' criteria only")
            return
        if self.kl_max is None:
            raise TrmaskError("criterion ln_trm needs kl_max, the per-token KL bound of its position weights "
                              "(e.g. Criterion('ln_trm', 'tv', hi=0.03, kl_max=0.01))")
        kl_max = float(self.kl_max)
        if not (math.isfinite(kl_max) and kl_max > 0):
            raise TrmaskError(f"criterion ln_trm: kl_max is {self.kl_max!r}; expected a finite number > 0")
        object.__setattr__(self, "kl_max", kl_max)
        if self.eps is not None:
            eps = float(self.eps)
            if not eps > 0:
                raise TrmaskError(f"criterion ln_trm: eps is {self.eps!r}; expected a number > 0, or None for no TV bound")
            object.__setattr__(self, "eps", eps if math.isfinite(eps) else None)

    @property
    def is_row(self) -> bool:
        return self.agg != "token"

    def __str__(self) -> str:
        agg = self.agg
        if agg == "ln_trm":
            agg += f"(kl_max={self.kl_max!r}" + ("" if self.eps is None else f";eps={self.eps!r}") + ")"
        text = f"{agg}:{self.estimator}"
        if self.lo != -math.inf:
            text = f"{self.lo:g}<={text}"
        if self.hi != math.inf:
            text += f"<={self.hi:g}"
        return text


#: The paper's TRM-Max&Avg with the library's defaults (docs/semantics.md §4.2).
DEFAULT_CRITERIA = (Criterion("max", "k2", hi=0.1), Criterion("mean", "k3", hi=0.002))

_NUMBER = r"[-+]?(?:inf|\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)"
_ITEM = re.compile(
    rf"^(?:(?P<lo>{_NUMBER})<=)?(?P<agg>[a-z_]+)"
    rf"(?:\(kl_max=(?P<kl_max>{_NUMBER})(?:;eps=(?P<eps>{_NUMBER}))?\))?"
    rf":(?P<est>[a-z0-9_]+)(?:(?P<op><=|>=)(?P<bound>{_NUMBER}))?$",
    re.IGNORECASE)


def parse_criteria(text: str) -> tuple:
    """Criteria from their string form (see the module docstring for the grammar)."""
    items = [item for item in re.sub(r"\s+", "", text).split(",")]
    if not text.strip():
        raise TrmaskError("criteria string is empty")
    result = []
    for item in items:
        match = _ITEM.match(item)
        if not match:
            raise TrmaskError(f"cannot parse criterion {item!r}; expected e.g. 'max:k2<=0.1', "
                              f"'-0.01<=mean:delta<=0.01', 'min:delta>=-9.2' or "
                              f"'ln_trm(kl_max=0.01;eps=0.05):tv<=0.03'")
        lo = float(match["lo"]) if match["lo"] else -math.inf
        hi = math.inf
        if match["op"] == "<=":
            hi = float(match["bound"])
        elif match["op"] == ">=":
            if match["lo"]:
                raise TrmaskError(f"criterion {item!r} has two lower bounds")
            lo = float(match["bound"])
        kl_max = float(match["kl_max"]) if match["kl_max"] else None
        eps = float(match["eps"]) if match["eps"] else None
        result.append(Criterion(match["agg"].lower(), match["est"].lower(), lo, hi, kl_max, eps))
    return tuple(result)


CriteriaLike = Union[None, str, Criterion, Iterable[Union[Criterion, str, tuple]]]


def normalize_criteria(criteria: CriteriaLike) -> tuple:
    """`None` (the defaults), a string, a Criterion, or an iterable of Criterion, strings and
    ``(agg, estimator, lo, hi)`` tuples, as a tuple of Criterion."""
    if criteria is None:
        return DEFAULT_CRITERIA
    if isinstance(criteria, str):
        return parse_criteria(criteria)
    if isinstance(criteria, Criterion):
        return (criteria,)
    result = []
    for item in criteria:
        if isinstance(item, Criterion):
            result.append(item)
        elif isinstance(item, str):
            result.extend(parse_criteria(item))
        elif isinstance(item, tuple):
            result.append(Criterion(*item))
        else:
            raise TrmaskError(f"criteria entry {item!r} is not a Criterion, a string or an (agg, estimator, lo, hi) tuple")
    return tuple(result)
