"""verl 0.9.1's own compute_rollout_correction_and_rejection_mask against trmask.verl's drop-in:
the combined call with IS weights, rejection options and every metric, on padded float32 [B, T]
batches, torch and trmask at the same thread count (BENCHMARKS.md).

    .venv-verl/bin/python bench/verl_dropin.py [--tokens 2M,32M] [--repeats 5] [--threads 2]

Runs alternate (verl, trmask, probe, verl, trmask, probe, ...) so machine noise hits all alike;
medians. The probe (bench/probe.c, gcc -O3 -march=x86-64-v3, the same threads as trmask) reads
exactly the bytes the combined call reads (old_log_prob, rollout_log_prob, response_mask) and
writes exactly the bytes it writes (the weights and the output mask): "probe" into outputs
allocated once, "probe+alloc" into new `torch.empty` outputs per call, as the drop-in allocates
its results. trmask/probe and verl/probe (both over probe+alloc) say how close each is to this
machine's memory limit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import trmask  # noqa: E402
from bench import build_c_baselines, copy_probe  # noqa: E402
import trmask.verl  # noqa: E402
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_rejection_mask as verl_call  # noqa: E402

CONFIG = dict(rollout_is="token", rollout_is_threshold=2.0, rollout_rs="seq_max_k2,seq_mean_k3",
              rollout_rs_threshold="0.1,0.002")
COLS = 4096


def tokens(text: str) -> int:
    return int(float(text[:-1]) * 2**20) if text.endswith("M") else int(text)


def make_batch(n_tokens: int, seed: int = 0):
    rows = n_tokens // COLS
    rng = np.random.default_rng(seed)
    logp_roll = -np.abs(rng.normal(0, 1, (rows, COLS))).astype(np.float32)
    logp_train = logp_roll + rng.normal(0, 0.05, (rows, COLS)).astype(np.float32)
    lengths = rng.integers(COLS // 4, COLS + 1, rows)
    mask = torch.from_numpy(np.arange(COLS)[None, :] < lengths[:, None]).to(torch.float32)
    return torch.from_numpy(logp_train), torch.from_numpy(logp_roll), mask


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args, **CONFIG)
    return time.perf_counter() - start


def probes(clib, batch, threads: int):
    """The read+write probe into outputs made once, and into new outputs per call."""
    rows = batch[0].shape[0]
    fixed = [torch.empty_like(batch[0]), torch.empty_like(batch[2])]
    once = copy_probe(clib, batch, fixed, rows, threads)

    def fresh():
        copy_probe(clib, batch, [torch.empty_like(batch[0]), torch.empty_like(batch[2])], rows, threads)()

    return once, fresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="2M,32M")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"trmask {trmask.library_version}, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"trmask threads=0 (automatic: every core from 2^18 positions); {args.repeats} interleaved runs, medians")
    print(f"{'tokens':>8} {'rows':>6} {'verl ms':>10} {'trmask ms':>10} {'speedup':>8} {'verl ns/tok':>11} "
          f"{'trmask ns/tok':>13} {'probe ms':>9} {'+alloc ms':>9} {'trmask/probe':>12} {'verl/probe':>10}")
    clib = build_c_baselines()
    # trmask's automatic thread count uses every core for these sizes: the probe does too.
    probe_threads = os.cpu_count() or 1
    for text in args.tokens.split(","):
        n = tokens(text)
        batch = make_batch(n)
        once, fresh = probes(clib, batch, probe_threads)
        timed(verl_call, *batch), timed(trmask.verl.compute_rollout_correction_and_rejection_mask, *batch)  # warm up
        once(), fresh()
        theirs, ours, probe, probe_alloc = [], [], [], []
        for _ in range(args.repeats):
            theirs.append(timed(verl_call, *batch))
            ours.append(timed(trmask.verl.compute_rollout_correction_and_rejection_mask, *batch))
            probe.append(seconds(once))
            probe_alloc.append(seconds(fresh))
        t, o = statistics.median(theirs), statistics.median(ours)
        p, pa = statistics.median(probe), statistics.median(probe_alloc)
        positions = batch[0].numel()
        print(f"{text:>8} {batch[0].shape[0]:>6} {t * 1e3:>10.1f} {o * 1e3:>10.2f} {t / o:>7.0f}x "
              f"{t / positions * 1e9:>11.1f} {o / positions * 1e9:>13.2f} {p * 1e3:>9.2f} {pa * 1e3:>9.2f} "
              f"{o / pa:>11.1f}x {t / pa:>9.0f}x", flush=True)
        del batch


if __name__ == "__main__":
    main()
