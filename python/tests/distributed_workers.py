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


TASKS = {"sum": task_sum, "sharded_rows": task_sharded_rows, "verl_normalize": task_verl_normalize}
