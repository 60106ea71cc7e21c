"""GRPO group advantages where only kept rows vote (semantics §4.10; docs/rules-2026.md)."""

from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np

from . import _arrays, _ffi
from ._api import raise_for_status
from ._arrays import FLOAT_DTYPES, INDEX_DTYPES, MASK_DTYPES, Operand
from .errors import TrmaskError


class GroupAdvantages:
    """What `group_advantages` returns.

    - ``advantages``: float32 ``[B]``, 0 for rows that do not vote;
    - per row, of the row's group: ``voters`` (int64), ``mean`` and ``std`` (float64; NaN
      without voters, std NaN below two);
    - per group, ids ascending: ``group_ids`` (int64), ``group_voters``, ``group_mean``,
      ``group_std`` (numpy arrays);
    - ``n_groups``, ``n_groups_no_voter``, ``n_groups_one_voter``, ``n_rows_nonfinite_reward``.
    """

    def __init__(self, ids, advantages, voters, mean, std, counts: dict):
        self.advantages = advantages
        self.voters = voters
        self.mean = mean
        self.std = std
        for key, value in counts.items():
            setattr(self, key, value)
        # Per group: the values of each group's first row (every row of a group holds the same).
        self.group_ids, first = np.unique(np.asarray(ids), return_index=True)
        self.group_voters = np.asarray(voters)[first]
        self.group_mean = np.asarray(mean)[first]
        self.group_std = np.asarray(std)[first]

    def __repr__(self) -> str:
        return (f"GroupAdvantages(rows={len(self.advantages)}, groups={self.n_groups}, "
                f"without voters={self.n_groups_no_voter}, one voter={self.n_groups_one_voter})")


def group_advantages(group_ids: Any, rewards: Any, keep: Any = None, *, normalize_std: bool = True, eps: float = 1e-6,
                     singleton: str = "zero") -> GroupAdvantages:
    """GRPO advantages over voting rows (semantics §4.10): row ``i`` votes iff ``keep[i]`` (e.g. a
    mask's ``keep_row``; None = every row) and its reward is finite. Per group of voters,
    ``(r - mean) / (std + eps)`` (sample std) or ``r - mean``; a single voter gets 0
    (``singleton="zero"``, NeMo-RL) or ``r / (1 + eps)`` (``"raw"``, verl); non-voters 0.
    ``group_ids``: int32/int64 ``[B]``, any values and order; ``rewards``: float ``[B]``.
    Bit-identical on every run (one float64 pass per group in row order)."""
    if singleton not in _ffi.SINGLETON_RULES:
        raise TrmaskError(f"`singleton` is {singleton!r}; expected one of {', '.join(_ffi.SINGLETON_RULES)}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0):
        raise TrmaskError(f"`eps` is {eps!r}; expected a finite number >= 0")
    ids = Operand("group_ids", group_ids, INDEX_DTYPES)
    reward = Operand("rewards", rewards, FLOAT_DTYPES)
    if len(ids.shape) != 1:
        raise TrmaskError(f"`group_ids` has shape {ids.shape}; expected 1-D [B]")
    rows = ids.shape[0]
    if reward.shape != (rows,):
        raise TrmaskError(f"`rewards` has shape {reward.shape}; expected ({rows},), one per row of `group_ids`")
    keep_view = _ffi.ABSENT_VIEW
    if keep is not None:
        keep = Operand("keep", keep, MASK_DTYPES)
        if keep.shape != (rows,):
            raise TrmaskError(f"`keep` has shape {keep.shape}; expected ({rows},)")
        keep_view = keep.fields()
    like = rewards
    advantages = _arrays.new_output(like, (rows,), "float32")
    voters = _arrays.new_output(like, (rows,), "int64")
    mean = _arrays.new_output(like, (rows,), "float64")
    std = _arrays.new_output(like, (rows,), "float64")
    inputs = _ffi.Groups(ctypes.sizeof(_ffi.Groups), 0, rows, _ffi.View(*ids.fields()), _ffi.View(*reward.fields()),
                         _ffi.View(*keep_view), int(not normalize_std), _ffi.SINGLETON_RULES[singleton], 1, 0, eps)
    out = _ffi.GroupOut(ctypes.sizeof(_ffi.GroupOut), 0, *(_ffi.Out(_arrays.pointer(a) or None, 1, 0)
                                                          for a in (advantages, voters, mean, std)))
    status = _ffi.lib.trm_group_advantages(ctypes.byref(inputs), ctypes.byref(out))
    raise_for_status(status, "group_advantages")
    counts = {key: int(getattr(out, key)) for key in _ffi.GROUP_COUNTS}
    return GroupAdvantages(group_ids, advantages, voters, mean, std, counts)
