"""What each rank of test_distributed.py's gloo groups runs (a module of its own: spawned processes
import it, and it imports only torch and trmask, plus verl where a worker asks for it)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

import trmask
import trmask.distributed


def sharded_batch(seed: int, rows: int, cols: int, world: int):
    """The whole batch and where its columns are cut into `world` shards (some may be empty)."""
    rng = np.random.default_rng(seed)
    logp_roll = -np.abs(rng.normal(0, 2, (rows, cols))).astype(np.float32)
    logp_train = (logp_roll + rng.normal(0, 0.2, (rows, cols))).astype(np.float32)
    logp_train[rng.random((rows, cols)) < 0.02] = np.nan
    lengths = rng.integers(0, cols + 1, rows)
    mask = np.arange(cols)[None, :] < lengths[:, None]
    cuts = np.sort(rng.integers(0, cols + 1, world - 1))
    return torch.from_numpy(logp_train), torch.from_numpy(logp_roll), torch.from_numpy(mask), [0, *cuts.tolist(), cols]


def row_blocks(seed: int, rows: int, cols: int, world: int):
    """A batch and where its rows are cut into `world` blocks (data parallelism)."""
    rng = np.random.default_rng(seed)
    log_ratio = rng.normal(0, 0.3, (rows, cols)).astype(np.float32)
    mask = (rng.random((rows, cols)) < 0.8).astype(np.float32) * rng.choice(np.float32([0.5, 1.0, 2.0]), (rows, cols))
    mask[:, 0] = 1.0  # every rank has valid tokens (verl refuses a block without)
    cuts = np.sort(rng.choice(np.arange(1, rows), world - 1, replace=False))
    return torch.from_numpy(log_ratio), torch.from_numpy(mask), [0, *cuts.tolist(), rows]


def dp_batch(seed: int, rows: int, cols: int, world: int):
    """Log-probs, a float weight mask and where the rows are cut into `world` blocks, one of them
    empty when there is more than one (data parallelism with an idle rank)."""
    rng = np.random.default_rng(seed)
    logp_roll = -np.abs(rng.normal(0, 1.5, (rows, cols))).astype(np.float32)
    logp_train = (logp_roll + rng.normal(0, 0.3, (rows, cols))).astype(np.float32)
    mask = (rng.random((rows, cols)) < 0.8).astype(np.float32) * rng.choice(np.float32([0.5, 1.0, 2.0]), (rows, cols))
    mask[:, 0] = 1.0
    cuts = np.sort(rng.choice(np.arange(1, rows), world - 2, replace=False)).tolist() if world > 2 else []
    cuts = [0, *cuts, rows, rows] if world > 1 else [0, rows]
    return torch.from_numpy(logp_train), torch.from_numpy(logp_roll), torch.from_numpy(mask), cuts


#: The trmask.verl calls of the dp_metrics task: (function name, keyword arguments but the batch).
DP_CALLS = [
    ("compute_rollout_correction_and_rejection_mask",
     dict(rollout_is="token", rollout_is_threshold=2.0, rollout_is_batch_normalize=True,
          rollout_rs="token_k1,seq_mean_k3,seq_max_k2", rollout_rs_threshold="0.5_2.0,0.01,0.2")),
    ("compute_rollout_correction_and_rejection_mask",
     dict(rollout_is="sequence", rollout_is_threshold="0.5_4.0", rollout_rs="seq_sum_k1", rollout_rs_threshold=1.5)),
    ("compute_rollout_correction_weights", dict(rollout_is="sequence", rollout_is_threshold=3.0,
                                                rollout_is_batch_normalize=True)),
    ("compute_rollout_rejection_mask", dict(rollout_rs="token_k2,seq_mean_k1", rollout_rs_threshold="0.05,0.8_1.25")),
    ("compute_offpolicy_metrics", {}),
]


def dp_call(name: str, kwargs: dict, logp_train, logp_roll, mask, group=None):
    """One trmask.verl call of DP_CALLS on a block of rows: (its grids, its metrics)."""
    import trmask.verl

    function = getattr(trmask.verl, name)
    if name in ("compute_rollout_correction_weights", "compute_rollout_rejection_mask"):
        out = function(logp_train - logp_roll, mask, **kwargs, group=group)
    else:
        out = function(logp_train, logp_roll, mask, **kwargs, group=group)
    if name == "compute_offpolicy_metrics":
        return [], out
    *grids, metrics = out
    grids = [grid.batch["rollout_is_weights"] if hasattr(grid, "batch") else grid for grid in grids if grid is not None]
    return grids, metrics


def _join(rank: int, world: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)


def run(rank: int, world: int, port: int, tasks: list, seed: int, out_dir: str) -> None:
    """Entry point of torch.multiprocessing.spawn: join the group, run each task (one group for
    all: starting processes is the slow part), save each result."""
    _join(rank, world, port)
    try:
        for task in tasks:
            torch.save(TASKS[task](rank, world, seed), f"{out_dir}/{task}-{rank}.pt")
    finally:
        dist.destroy_process_group()


def task_sum(rank: int, world: int, seed: int):
    values = np.random.default_rng(seed + rank).normal(0, 1e6, 3)
    return {"mine": values.tolist(), "total": trmask.distributed.sum_over_ranks(values)}


def task_sharded_rows(rank: int, world: int, seed: int):
    logp_train, logp_roll, mask, cuts = sharded_batch(seed, 7, 40, world)
    shard = slice(cuts[rank], cuts[rank + 1])
    decision = trmask.distributed.keep_from_sharded_rows(logp_train[:, shard], logp_roll[:, shard], mask[:, shard])
    return {"keep_row": decision.keep_row, "row_stats": [s.clone() for s in decision.row_stats],
            "count": decision.count, "rejected": decision.rejected}


def task_verl_normalize(rank: int, world: int, seed: int):
    """trmask.verl's and verl's batch-normalised weights on this rank's block of rows."""
    import trmask.verl
    from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_weights

    log_ratio, mask, cuts = row_blocks(seed, 9, 12, world)
    block = slice(cuts[rank], cuts[rank + 1])
    out = {}
    for level in ("token", "sequence"):
        args = (log_ratio[block], mask[block], level, 2.0, True)
        ours, our_metrics = trmask.verl.compute_rollout_correction_weights(*args)
        theirs, their_metrics = compute_rollout_correction_weights(*args)
        out[level] = {"ours": ours, "theirs": theirs, "factor": our_metrics["rollout_is_batch_norm_factor"],
                      "their_factor": their_metrics["rollout_is_batch_norm_factor"]}
    return out


def task_dp_metrics(rank: int, world: int, seed: int):
    """Every DP_CALLS call on this rank's block with group= the whole group (one rank's block is
    empty), and rollout_correction_over_ranks."""
    logp_train, logp_roll, mask, cuts = dp_batch(seed, 11, 9, world)
    block = slice(cuts[rank], cuts[rank + 1])
    calls = []
    for name, kwargs in DP_CALLS:
        if cuts[rank] == cuts[rank + 1] and name != "compute_rollout_rejection_mask":
            # verl refuses a block without a valid token; the refusal comes after the gather.
            try:
                dp_call(name, kwargs, logp_train[block], logp_roll[block], mask[block], group=dist.group.WORLD)
            except trmask.TrmaskError as error:
                calls.append(("refused", str(error)))
            continue
        calls.append(dp_call(name, kwargs, logp_train[block], logp_roll[block], mask[block], group=dist.group.WORLD))
    direct = trmask.distributed.rollout_correction_over_ranks(
        logp_train[block], logp_roll[block], mask[block], rejections=[trmask.Rejection("seq_mean", "k3", hi=0.01)],
        weights=trmask.WeightRule("token", "truncate", hi=2.0), mask_weights=True)
    return {"calls": calls, "statistics": direct.statistics}


TASKS = {"sum": task_sum, "dp_metrics": task_dp_metrics, "sharded_rows": task_sharded_rows, "verl_normalize": task_verl_normalize}
