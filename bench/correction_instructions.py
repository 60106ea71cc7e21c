"""One `trmask.rollout_correction` call on the verl drop-in benchmark's batch (bench/verl_dropin.py:
2M tokens, [512, 4096] float32, float32 mask, token TIS 2.0, seq_max_k2 <= 0.1, seq_mean_k3 <=
0.002, every statistic), one thread, for counting the native call's instructions (BENCHMARKS.md):
the count of a run minus that of a ``--setup-only`` run (the same without the call).

    valgrind --tool=callgrind "$(python3 -c 'import sys; print(sys.executable)')" \\
        bench/correction_instructions.py [--plain] [--row-records] [--mask int64] [--dtype bfloat16] \\
        [--setup-only]

``--plain``: no rejection option and no weights (the statistics alone). ``--row-records``: also
write the row records (what a data-parallel reduce of the statistics needs). ``--mask``: the mask's
dtype (values 0/1; default float32). ``--dtype``: the log-probs' dtype (default float32; bfloat16
needs ml_dtypes, and with a float32 mask its weights are float32: pass an integer or bool mask for
the bfloat16 call verl makes).
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
    parser.add_argument("--mask", choices=("float32", "int64", "int32", "bool", "uint8"), default="float32")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--setup-only", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    logp_roll = -np.abs(rng.normal(0, 1, (ROWS, COLS))).astype(np.float32)
    logp_train = logp_roll + rng.normal(0, 0.05, (ROWS, COLS)).astype(np.float32)
    lengths = rng.integers(COLS // 4, COLS + 1, ROWS)
    mask = (np.arange(COLS)[None, :] < lengths[:, None]).astype(args.mask)
    if args.dtype != "float32":
        import ml_dtypes  # noqa: PLC0415 (only this option needs it)

        dtype = ml_dtypes.bfloat16 if args.dtype == "bfloat16" else np.float16
        logp_train, logp_roll = logp_train.astype(dtype), logp_roll.astype(dtype)
    options = {} if args.plain else dict(
        rejections=[trmask.Rejection("seq_max", "k2", hi=0.1), trmask.Rejection("seq_mean", "k3", hi=0.002)],
        weights=trmask.WeightRule("token", "truncate", hi=2.0))
    if not args.setup_only:
        result = trmask.rollout_correction(logp_train, logp_roll, mask, mask_weights=True, threads=1,
                                            row_records=args.row_records, **options)
        print(f"{ROWS * COLS} positions, {result.statistics['n_tokens_valid']} valid")


if __name__ == "__main__":
    main()
