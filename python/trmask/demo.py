"""The built-in demo batch: what training/inference mismatch looks like in an RL run.

Log-probs of sampled tokens (most tokens near-certain, a tail of unlikely ones), small
training/rollout noise that grows for unlikely tokens, rare large spikes (MoE routing flips,
kernel differences), ragged lengths with a few empty rows, one NaN from the rollout engine on a
near-deterministic token and one token the training engine gives zero mass (-inf).
"""

from __future__ import annotations

import numpy as np


def demo_batch(rows: int = 256, max_len: int = 4096, seed: int = 0) -> dict:
    """A padded batch: ``logp_train``, ``logp_roll`` (float32 ``[rows, max_len]``) and a bool
    ``mask``. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(16, max_len + 1, size=rows)
    lengths[rng.choice(rows, size=max(1, rows // 64), replace=False)] = 0
    mask = np.arange(max_len)[None, :] < lengths[:, None]
    # Sampled-token log-probs: mostly near 0, with an exponential tail of unlikely tokens.
    logp_roll = -rng.exponential(0.35, size=(rows, max_len))
    # Mismatch: small noise, larger for unlikely tokens, per-row scale (some runs drift more).
    scale = rng.lognormal(np.log(0.004), 0.6, size=(rows, 1))
    logp_train = logp_roll + rng.normal(0.0, 1.0, size=logp_roll.shape) * scale * (1.0 + 3.0 * -logp_roll)
    # Rare spikes: a few tokens where the two engines disagree badly.
    spikes = rng.random(logp_roll.shape) < 2e-4
    logp_train[spikes] += rng.normal(0.0, 1.2, size=int(spikes.sum()))
    logp_train = np.minimum(logp_train, 0.0)
    logp_train, logp_roll = logp_train.astype(np.float32), logp_roll.astype(np.float32)
    nonempty = np.flatnonzero(lengths > 1)
    nan_row, inf_row = nonempty[:2]
    logp_roll[nan_row, 0] = np.nan
    logp_train[inf_row, 1] = -np.inf
    return {"logp_train": logp_train, "logp_roll": logp_roll, "mask": mask}
