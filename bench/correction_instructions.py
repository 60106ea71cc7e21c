"""One `trmask.rollout_correction` call on the verl drop-in benchmark's batch (bench/verl_dropin.py:
2M tokens, [512, 4096] float32, float32 mask, token TIS 2.0, seq_max_k2 <= 0.1, seq_mean_k3 <=
0.002, every statistic), one thread, for counting the native call's instructions (BENCHMARKS.md):
the count of a run minus that of a ``--setup-only`` run (the same without the call).

    valgrind --tool=callgrind "$(python3 -c 'import sys; print(sys.executable)')" \\
        bench/correction_instructions.py [--plain] [--row-records] [--setup-only]

``--plain``: no rejection option and no weights (the statistics alone). ``--row-records``: also
write the row records (what a data-parallel reduce of the statistics needs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import trmask  # noqa: E402

ROWS, COLS = 512, 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--row-records", action="store_true")
    parser.add_argument("--setup-only", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    logp_roll = -np.abs(rng.normal(0, 1, (ROWS, COLS))).astype(np.float32)
    logp_train = logp_roll + rng.normal(0, 0.05, (ROWS, COLS)).astype(np.float32)
    lengths = rng.integers(COLS // 4, COLS + 1, ROWS)
    mask = (np.arange(COLS)[None, :] < lengths[:, None]).astype(np.float32)
    options = {} if args.plain else dict(
        rejections=[trmask.Rejection("seq_max", "k2", hi=0.1), trmask.Rejection("seq_mean", "k3", hi=0.002)],
        weights=trmask.WeightRule("token", "truncate", hi=2.0))
    if not args.setup_only:
        result = trmask.rollout_correction(logp_train, logp_roll, mask, mask_weights=True, threads=1,
                                            row_records=args.row_records, **options)
        print(f"{ROWS * COLS} positions, {result.statistics['n_tokens_valid']} valid")


if __name__ == "__main__":
    main()
