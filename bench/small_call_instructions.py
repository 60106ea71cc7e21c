"""The verl drop-in's combined call on a small batch (torch, [4, 64] float32, int64 mask; the
configuration of bench/verl_dropin.py), repeated, for counting the instructions one call costs in
the Python layer and the native call together (BENCHMARKS.md): the count of a run with
``--calls N`` minus that of a run with ``--calls 0`` (the same imports and one warm-up call),
divided by N.

    valgrind --tool=callgrind /work/venv-verl/bin/python bench/small_call_instructions.py --calls 1000
    valgrind --tool=callgrind /work/venv-verl/bin/python bench/small_call_instructions.py --calls 0

Needs torch (the drop-in takes torch tensors, as verl passes them); verl itself is not needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import trmask.verl  # noqa: E402

CONFIG = dict(rollout_is="token", rollout_is_threshold=2.0, rollout_rs="seq_max_k2,seq_mean_k3",
              rollout_rs_threshold="0.1,0.002")
ROWS, COLS = 4, 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    logp_roll = -torch.rand(ROWS, COLS, generator=generator)
    logp_train = logp_roll + 0.05 * torch.randn(ROWS, COLS, generator=generator)
    mask = (torch.arange(COLS)[None, :] < torch.tensor([64, 40, 17, 60])[:, None]).to(torch.int64)
    call = trmask.verl.compute_rollout_correction_and_rejection_mask
    call(logp_train, logp_roll, mask, **CONFIG)  # warm-up: the library loaded, the caches filled
    for _ in range(args.calls):
        call(logp_train, logp_roll, mask, **CONFIG)


if __name__ == "__main__":
    main()
