"""The `trmask` command line (also `python -m trmask`)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import numpy as np


def _demo(args: argparse.Namespace) -> int:
    import trmask
    from .demo import demo_batch

    batch = demo_batch(rows=args.rows, max_len=args.max_len, seed=args.seed)
    result = trmask.trust_region_mask(batch["logp_train"], batch["logp_roll"], batch["mask"],
                                      criteria=args.criteria, threads=args.threads)
    print(format_report(result, title=f"trmask demo: built-in batch (seed {args.seed})"))
    return 0


def format_report(result, title: str) -> str:
    """A compact report of a mask result for RL engineers."""
    rows = len(result.keep_row)
    count = np.asarray(result.count)
    nonempty = count > 0
    kept = int(np.asarray(result.keep_row).sum())
    lines = [title,
             f"  rows {rows} ({int((~nonempty).sum())} empty), valid tokens {int(count.sum())}, "
             f"lengths {int(count[nonempty].min()) if nonempty.any() else 0}..{int(count.max()) if rows else 0}",
             f"  criteria: {', '.join(str(c) for c in result.criteria)}",
             f"  rows kept {kept} / {rows}; masked fraction {1 - kept / rows if rows else 0.0:.2%}"]
    width = max([len(str(c)) for c in result.criteria] + [0])
    for criterion, rejected in zip(result.criteria, result.rejected):
        unit = "rows" if criterion.is_row else "tokens"
        lines.append(f"    rejected by {str(criterion):<{width}}  {rejected} {unit}")
    row_criteria = [c for c in result.criteria if c.is_row]
    for criterion, stat in zip(row_criteria, result.row_stats):
        stat = np.asarray(stat, dtype=np.float64)[nonempty]
        finite = stat[np.isfinite(stat)]
        if criterion.agg == "max":
            lines.append(f"  batch max of {criterion.agg}-{criterion.estimator}: "
                         f"{finite.max() if finite.size else float('nan'):.4g} (finite rows)")
        elif criterion.agg == "mean":
            lines.append(f"  mean over rows of {criterion.agg}-{criterion.estimator}: "
                         f"{finite.mean() if finite.size else float('nan'):.4g} (finite rows)")
    nonfinite = np.asarray(result.nonfinite)
    lines.append(f"  rows with non-finite log-ratios: {int((nonfinite > 0).sum())} "
                 f"({int(nonfinite.sum())} tokens)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trmask", description="Trust Region Masking for LLM RL: masks, audits, bounds.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the mask on the built-in batch and print a report",
                               description="Run Trust Region Masking on a built-in batch that looks like real "
                                           "training/inference mismatch, and print a report.")
    demo.add_argument("--rows", type=int, default=256, help="rows in the batch (default 256)")
    demo.add_argument("--max-len", type=int, default=4096, help="longest row (default 4096)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--criteria", default=None,
                      help="criteria string, e.g. 'max:k2<=0.1,mean:k3<=0.002' (default: the paper's TRM-Max&Avg)")
    demo.add_argument("--threads", type=int, default=0, help="threads (default 0 = automatic)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import TrmaskError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except TrmaskError as error:
        print(f"trmask: error: {error}", file=sys.stderr)
        return 2
