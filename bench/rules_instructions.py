"""One native call of the 2026 rules' benchmark rows (bench/bench.py `rules2026`) on its 2M-token
batch ([256, 8192] float32, `make_batch`), one thread, for counting the call's instructions
(BENCHMARKS.md): the library's count in a run minus that of a ``--setup-only`` run (the same
without the call).

    TRMASK_VARIANT=v3 valgrind --tool=callgrind --callgrind-out-file=OUT \\
        "$(python3 -c 'import sys; print(sys.executable)')" bench/rules_instructions.py CASE [--setup-only]
    callgrind_annotate OUT | grep libtrmask    # the library's own instructions, summed

CASE: ``bkl_sym`` (`token:bkl_sym<=0.1`), ``advantage`` (`advantage_mask` bdiff 0.2/0.2, row
advantages) or ``trm`` (the default criteria); each writes keep_token as the benchmark does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import trmask  # noqa: E402
from bench import make_batch  # noqa: E402

ROWS, COLS = 256, 8192


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=("bkl_sym", "advantage", "trm"))
    parser.add_argument("--setup-only", action="store_true")
    args = parser.parse_args()
    lt, lr, mask = make_batch(ROWS, COLS, seed=6)
    adv = np.random.default_rng(6).standard_normal(ROWS)
    calls = {
        "bkl_sym": lambda: trmask.trust_region_mask(lt, lr, mask, criteria="token:bkl_sym<=0.1", threads=1),
        "advantage": lambda: trmask.advantage_mask(lt, lr, mask, adv, statistic="bdiff", low=0.2, high=0.2, threads=1),
        "trm": lambda: trmask.trust_region_mask(lt, lr, mask, criteria=trmask.DEFAULT_CRITERIA, threads=1),
    }
    if not args.setup_only:
        result = calls[args.case]()
        print(f"{ROWS * COLS} positions, {int(result.keep_token.sum())} tokens kept")


if __name__ == "__main__":
    main()
