"""Exact per-position divergence from logits (docs/semantics.md §6) and the exact TRM: exact_kl,
topk_kl_lower_bound, exact_trust_region_mask."""

from __future__ import annotations

import ctypes
import math
from typing import Any, Optional

import numpy as np

from . import _arrays, _ffi
from ._api import MaskResult, raise_for_status, trust_region_mask
from ._arrays import INDEX_DTYPES, Operand
from ._criteria import Criterion, CriteriaLike
from .errors import TrmaskError

_lib = _ffi.lib

LOGIT_DTYPES = (_ffi.DTYPE_F32, _ffi.DTYPE_BF16, _ffi.DTYPE_F16)
TOPK_LOGPROB_DTYPES = (_ffi.DTYPE_F32, _ffi.DTYPE_BF16, _ffi.DTYPE_F16, _ffi.DTYPE_F64)
#: The logit functions read position masks as bytes (the C ABI takes U8/BOOL there).
POSITION_MASK_DTYPES = (_ffi.DTYPE_BOOL, _ffi.DTYPE_U8)

#: The paper's TRM-Max&Avg on the exact KL (docs/semantics.md §4): ``max value <= 0.1``, ``mean value <= 0.002``.
DEFAULT_EXACT_CRITERIA = (Criterion("max", "value", hi=0.1), Criterion("mean", "value", hi=0.002))


class ExactKLResult:
    """What `exact_kl` returns, one float32 value per position (shape of the logits without their
    last axis): ``kl``; ``tv`` when ``tv=True``; ``logp_roll_token`` (``log p_y``) and
    ``logp_train_token`` (``log q_y``) when ``token_ids`` are given; otherwise ``None``. Arrays are
    numpy arrays, or torch tensors when the training logits were a tensor."""

    __slots__ = ("kl", "tv", "logp_roll_token", "logp_train_token")

    def __init__(self, kl, tv, logp_roll_token, logp_train_token):
        self.kl = kl
        self.tv = tv
        self.logp_roll_token = logp_roll_token
        self.logp_train_token = logp_train_token

    def __repr__(self) -> str:
        return f"ExactKLResult(positions={tuple(self.kl.shape)}, tv={self.tv is not None}, tokens={self.logp_roll_token is not None})"


def _logits(name: str, obj: Any, dtypes=LOGIT_DTYPES) -> Operand:
    operand = Operand(name, obj, dtypes)
    if operand.ndim not in (2, 3):
        raise TrmaskError(f"`{name}` has shape {operand.shape}; expected [N, V] or [B, T, V]")
    return operand


def _view3(operand: Operand) -> _ffi.View3:
    """[N, V] as the grid [N, 1]; [B, T, V] as [B, T]."""
    st = operand.strides
    if operand.ndim == 2:
        return _ffi.View3(operand.ptr or None, operand.dtype, 0, st[0], 0, st[1])
    return _ffi.View3(operand.ptr or None, operand.dtype, 0, st[0], st[1], st[2])


def _grid_view(operand: Optional[Operand]) -> _ffi.View:
    if operand is None:
        return _arrays.ABSENT
    st = operand.strides
    if operand.ndim == 1:
        return _ffi.View(operand.ptr or None, operand.dtype, 0, st[0], 0)
    return _ffi.View(operand.ptr or None, operand.dtype, 0, st[0], st[1])


def _grid_out(array) -> _ffi.Out:
    out = _arrays.output_struct(array, two_d=array.ndim == 2)
    return out


def _grid(leading: tuple) -> tuple:
    return (leading[0], 1) if len(leading) == 1 else leading


def _options(temperature: float, threads: int) -> _ffi.LogitOptions:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise TrmaskError(f"`temperature` is {temperature!r}; expected a finite number > 0") from None
    if not (math.isfinite(t) and t > 0):
        raise TrmaskError(f"`temperature` is {temperature!r}; expected a finite number > 0")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0 or threads > 2**31 - 1:
        raise TrmaskError(f"`threads` is {threads!r}; expected an integer >= 0 (0 = automatic)")
    return _ffi.LogitOptions(ctypes.sizeof(_ffi.LogitOptions), int(threads), t)


def _position_operand(name: str, obj: Any, dtypes, leading: tuple, like: str) -> Optional[Operand]:
    if obj is None:
        return None
    operand = Operand(name, obj, dtypes)
    return operand.broadcast_to(leading, like)


def exact_kl(train_logits: Any, rollout_logits: Any, *, temperature: float = 1.0, mask: Any = None,
             token_ids: Any = None, tv: bool = False, threads: int = 0) -> ExactKLResult:
    """Exact ``KL(pi_roll || pi_theta)`` at every position, from full logits (docs/semantics.md §6).

    Training side first, rollout side second, as in `trust_region_mask(logp_train, logp_roll)`.
    ``train_logits`` (``b``) and ``rollout_logits`` (``a``): float32, bfloat16 or float16 arrays of
    the same shape ``[N, V]`` or ``[B, T, V]`` (any strides; the two dtypes may differ);
    ``q = softmax(b / temperature)`` is ``pi_theta``, ``p = softmax(a / temperature)`` is
    ``pi_roll``, and the KL is ``sum_v p_v log(p_v / q_v)`` (rollout to training). ``-inf`` logits are masked
    vocabulary (``p_v = 0`` adds nothing; ``p_v > 0 = q_v`` gives ``+inf``); NaN or ``+inf`` logits,
    or a side that is ``-inf`` everywhere, give NaN at that position.

    ``mask`` (bool/uint8 of the leading shape): positions where it is zero are skipped entirely
    (outputs 0; their logits and token ids are never read). ``token_ids`` (int32/int64 of the
    leading shape): also return ``log p_y`` and ``log q_y`` of the sampled tokens. ``tv=True``: also
    the total variation ``(1/2) sum |p - q|`` (a second pass). One streaming pass for the rest; no
    ``N x V`` temporaries; nothing is copied. Accuracy: ``|KL - ref| <= 1e-4 ref + 1e-8`` against a
    float64 reference on the same logits. Results do not depend on ``threads`` (0 = automatic).
    """
    b = _logits("train_logits", train_logits)
    a = _logits("rollout_logits", rollout_logits)
    if a.shape != b.shape:
        raise TrmaskError(f"`rollout_logits` has shape {a.shape}; expected {b.shape} like `train_logits`")
    leading, vocab = tuple(b.shape[:-1]), b.shape[-1]
    rows, cols = _grid(leading)
    m = _position_operand("mask", mask, POSITION_MASK_DTYPES, leading, "train_logits[..., 0]")
    ids = _position_operand("token_ids", token_ids, INDEX_DTYPES, leading, "train_logits[..., 0]")
    options = _options(temperature, threads)
    like = b.obj
    kl = _arrays.new_output(like, leading, "float32")
    tv_out = _arrays.new_output(like, leading, "float32") if tv else None
    lp_roll = _arrays.new_output(like, leading, "float32") if ids is not None else None
    lp_train = _arrays.new_output(like, leading, "float32") if ids is not None else None
    absent = _ffi.Out(None, 0, 0)
    pair = _ffi.LogitPair(ctypes.sizeof(_ffi.LogitPair), 0, rows, cols, vocab, _view3(a), _view3(b), _grid_view(m),
                          _grid_view(ids))
    out = _ffi.ExactKLOut(ctypes.sizeof(_ffi.ExactKLOut), 0, _grid_out(kl),
                          _grid_out(tv_out) if tv_out is not None else absent,
                          _grid_out(lp_roll) if lp_roll is not None else absent,
                          _grid_out(lp_train) if lp_train is not None else absent)
    status = _lib.trm_exact_kl(ctypes.byref(pair), ctypes.byref(options), ctypes.byref(out))
    if status != 0 and _lib.trm_status_name(status).decode() == "TRM_E_BAD_TOKEN_ID":
        raise_for_status(status, f"exact_kl: `token_ids` must lie in [0, {vocab}) at every counted position")
    raise_for_status(status, "exact_kl")
    return ExactKLResult(kl, tv_out, lp_roll, lp_train)


def topk_kl_lower_bound(train_logits: Any, rollout_topk_logprobs: Any, rollout_topk_ids: Any, *,
                        temperature: float = 1.0, mask: Any = None, threads: int = 0):
    """Lower bound on ``KL(pi_roll || pi_theta)`` at every position when the rollout engine returns
    only its top-k log-probabilities (vLLM ``logprobs=k``) and the training side has full logits
    (docs/semantics.md §6): ``sum_k p_k log(p_k/q_k) + (1-P) log((1-P)/(1-Q))``. Training side
    first, as everywhere.

    ``rollout_topk_logprobs``: float ``[N, k]`` or ``[B, T, k]`` (already at the rollout's
    temperature); ``rollout_topk_ids``: int32/int64 of the same shape, distinct per position;
    ``train_logits``: ``[N, V]`` or ``[B, T, V]`` float32/bfloat16/float16, divided by
    ``temperature``. ``mask`` skips positions (output 0). Returns float32 of the leading shape.
    """
    b = _logits("train_logits", train_logits)
    lp = _logits("rollout_topk_logprobs", rollout_topk_logprobs, TOPK_LOGPROB_DTYPES)
    ids = _logits("rollout_topk_ids", rollout_topk_ids, INDEX_DTYPES)
    if ids.shape != lp.shape:
        raise TrmaskError(f"`rollout_topk_ids` has shape {ids.shape}; expected {lp.shape} like `rollout_topk_logprobs`")
    leading = tuple(b.shape[:-1])
    if tuple(lp.shape[:-1]) != leading:
        raise TrmaskError(f"`rollout_topk_logprobs` has shape {lp.shape}; expected {leading} + (k,) "
                          f"with the leading shape of `train_logits` {b.shape}")
    rows, cols = _grid(leading)
    m = _position_operand("mask", mask, POSITION_MASK_DTYPES, leading, "train_logits[..., 0]")
    options = _options(temperature, threads)
    out = _arrays.new_output(b.obj, leading, "float32")
    batch = _ffi.TopKBatch(ctypes.sizeof(_ffi.TopKBatch), 0, rows, cols, b.shape[-1], lp.shape[-1], _view3(lp),
                           _view3(ids), _view3(b), _grid_view(m))
    status = _lib.trm_topk_kl_lower_bound(ctypes.byref(batch), ctypes.byref(options), _grid_out(out))
    if status != 0 and _lib.trm_status_name(status).decode() == "TRM_E_BAD_TOKEN_ID":
        raise_for_status(status, f"topk_kl_lower_bound: `rollout_topk_ids` must be distinct per position and lie in "
                                 f"[0, {b.shape[-1]})")
    raise_for_status(status, "topk_kl_lower_bound")
    return out


def exact_trust_region_mask(train_logits: Any, rollout_logits: Any, mask: Any = None, *, temperature: float = 1.0,
                            criteria: CriteriaLike = None, offsets: Any = None, reject_empty: bool = False,
                            threads: int = 0) -> MaskResult:
    """Exact TRM (docs/semantics.md §4, §6): the paper's criteria on the exact per-position
    ``KL(pi_roll || pi_theta)``. Training side first, rollout side second, as in
    `trust_region_mask(logp_train, logp_roll)`.

    Padded: logits ``[B, T, V]`` and ``mask`` ``[B, T]`` (nonzero = a response token). Packed:
    logits ``[N, V]`` with ``offsets`` ``[B + 1]`` (row ``i`` is positions ``offsets[i] ..
    offsets[i+1]``) and an optional ``mask`` ``[N]``. ``criteria`` default to ``max value <= 0.1``
    and ``mean value <= 0.002`` (estimator ``value`` is the exact KL); any criteria string or list
    of `trust_region_mask` works with estimator ``value``. Masked positions' logits are never read.

    Returns the `MaskResult` of `trust_region_mask`, with the per-position KL (float32, shape of
    the mask) as its extra attribute ``kl``. A NaN KL (NaN logits) on a valid token rejects its row.
    """
    b_shape = tuple(getattr(train_logits, "shape", np.shape(train_logits)))
    if offsets is None and len(b_shape) != 3:
        raise TrmaskError(f"`train_logits` has shape {b_shape}; expected [B, T, V] (or [N, V] with `offsets=`)")
    if offsets is not None and len(b_shape) != 2:
        raise TrmaskError(f"`train_logits` has shape {b_shape}; with `offsets` (packed rows) expected [N, V]")
    kl = exact_kl(train_logits, rollout_logits, temperature=temperature, mask=mask, threads=threads).kl
    result = trust_region_mask(mask=mask, offsets=offsets, values=kl,
                               criteria=DEFAULT_EXACT_CRITERIA if criteria is None else criteria,
                               reject_empty=reject_empty, threads=threads)
    result.kl = kl
    return result
