"""Float64 oracle for the exact per-position divergence from logits (docs/semantics.md §6).

Both functions work over the last axis (the vocabulary) of arrays of any leading shape.

Decisions where the contract is silent:

- A position whose logits are all ``-inf`` has no distribution: every output there is NaN.
- ``KL`` is summed as ``sum_{p_v > 0} p_v k3(log q_v - log p_v) + sum_{p_v = 0} q_v``, which
  equals ``sum_v p_v log(p_v / q_v)`` because ``sum_v q_v = sum_v p_v = 1``, but has only
  non-negative terms, so a small KL does not cancel (the direct sum loses up to 1e-11 relative on
  the vectors). ``TV`` terms are ``p_v |expm1(log q_v - log p_v)|`` (``q_v`` where ``p_v = 0``).
- Top-k bound: the remainders ``1 - P`` and ``1 - Q`` are taken as ``max(0, 1 - P)`` so that
  rounding in ``P`` slightly above 1 gives a zero-mass remainder (term 0) instead of NaN.
"""

from __future__ import annotations

import numpy as np

from .estimators import estimator_values, float_array

__all__ = ["reference_exact_kl", "reference_topk_kl_lower_bound"]


def _scaled(name: str, logits, temperature) -> np.ndarray:
    t = float(temperature)
    if not t > 0.0 or t == np.inf:
        raise ValueError(f"`temperature` is {t!r}; expected a finite number > 0")
    x = float_array(name, logits)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"`{name}` has shape {x.shape}; expected [..., V] with V >= 1")
    return x.astype(np.float64) / t


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """``z - logsumexp(z)`` over the last axis; all ``-inf`` rows give NaN."""
    m = np.max(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        lse = m + np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))
        return z - lse


def _take(logp: np.ndarray, ids) -> np.ndarray:
    idx = np.asarray(ids)
    if idx.dtype.kind not in "iu" or idx.shape != logp.shape[:-1]:
        raise ValueError(f"`token_ids` must be integers of shape {logp.shape[:-1]}")
    if np.any(idx < 0) or np.any(idx >= logp.shape[-1]):
        raise ValueError(f"`token_ids` must lie in [0, {logp.shape[-1]})")
    return np.take_along_axis(logp, idx[..., None].astype(np.intp), axis=-1)[..., 0]


def reference_exact_kl(train_logits, rollout_logits, temperature=1.0, token_ids=None) -> dict:
    """Exact ``KL(pi_roll || pi_theta)`` and TV per position (docs/semantics.md §6), in float64.

    Args:
        train_logits: ``b[..., V]``; ``q = softmax(b / temperature)``.
        rollout_logits: ``a[..., V]``, same shape; ``p = softmax(a / temperature)``.
        temperature: ``tau > 0``.
        token_ids: optional integers ``y[...]`` of the sampled tokens.

    Returns:
        A dict of float64 arrays shaped like the leading axes: ``kl`` (``sum p log(p/q)``, with
        ``0 log 0 = 0`` and ``+inf`` where ``p_v > 0 = q_v``), ``tv`` (``(1/2) sum |p - q|``) and,
        when ``token_ids`` is given, ``logp_roll_token`` (``log p_y``) and ``logp_train_token``
        (``log q_y``). Accurate to a few float64 ulps relative for every KL (no cancellation).
    """
    a = _scaled("rollout_logits", rollout_logits, temperature)
    b = _scaled("train_logits", train_logits, temperature)
    if a.shape != b.shape:
        raise ValueError(f"`rollout_logits` {a.shape} and `train_logits` {b.shape} differ in shape")
    logp, logq = _log_softmax(a), _log_softmax(b)
    p = np.exp(logp)
    support = p > 0.0
    with np.errstate(invalid="ignore"):
        u = np.where(support, logq - logp, 0.0)
        q = np.exp(logq)
        kl_terms = np.where(support, p * estimator_values("k3", u), q)
        tv_terms = np.where(support, p * np.abs(np.expm1(u)), q)
    no_dist = np.isnan(logp[..., 0]) | np.isnan(logq[..., 0])
    out = {
        "kl": np.where(no_dist, np.nan, np.sum(kl_terms, axis=-1)),
        "tv": np.where(no_dist, np.nan, 0.5 * np.sum(tv_terms, axis=-1)),
    }
    if token_ids is not None:
        out["logp_roll_token"] = _take(logp, token_ids)
        out["logp_train_token"] = _take(logq, token_ids)
    return out


def reference_topk_kl_lower_bound(train_logits, topk_logprobs, topk_ids, temperature=1.0):
    """Lower bound on ``KL(pi_roll || pi_theta)`` from the rollout's top-k log-probs (docs/semantics.md §6).

    ``KL_lb = sum_k p_k log(p_k / q_k) + (1 - P) log((1 - P) / (1 - Q))`` with
    ``p_k = exp(topk_logprobs)`` as given, ``q = softmax(train_logits / temperature)`` at
    ``topk_ids``, ``P = sum p_k``, ``Q = sum q_k``. Terms with zero mass (``p_k = 0``, or
    ``1 - P = 0``) are 0; positive mass against zero mass gives ``+inf``.

    Args:
        train_logits: ``[..., V]``.
        topk_logprobs: float ``[..., k]`` rollout log-probabilities (already at the temperature).
        topk_ids: integers ``[..., k]``, distinct per position, indexing the vocabulary.

    Returns:
        float64 array shaped like the leading axes.
    """
    lp = np.asarray(topk_logprobs, dtype=np.float64)
    ids = np.asarray(topk_ids)
    logq_all = _log_softmax(_scaled("train_logits", train_logits, temperature))
    if ids.dtype.kind not in "iu" or ids.shape != lp.shape or lp.shape[:-1] != logq_all.shape[:-1]:
        raise ValueError(
            f"`topk_logprobs` {lp.shape} and `topk_ids` {ids.shape} must be [..., k] integers "
            f"with the leading shape of `train_logits` {logq_all.shape}"
        )
    if np.any(ids < 0) or np.any(ids >= logq_all.shape[-1]):
        raise ValueError(f"`topk_ids` must lie in [0, {logq_all.shape[-1]})")
    logq = np.take_along_axis(logq_all, ids.astype(np.intp), axis=-1)
    p, q = np.exp(lp), np.exp(logq)
    with np.errstate(invalid="ignore", divide="ignore"):
        head = np.sum(np.where(p > 0.0, p * (lp - logq), 0.0), axis=-1)
        rest_p = np.maximum(0.0, 1.0 - np.sum(p, axis=-1))
        rest_q = np.maximum(0.0, 1.0 - np.sum(q, axis=-1))
        tail = np.where(rest_p > 0.0, rest_p * (np.log(rest_p) - np.log(rest_q)), 0.0)
    return head + tail
