"""The `trmask` command line (also `python -m trmask`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from typing import Optional, Sequence

import numpy as np


def _demo(args: argparse.Namespace) -> int:
    import trmask
    from .demo import demo_batch

    batch = demo_batch(rows=args.rows, max_len=args.max_len, seed=args.seed)
    result = trmask.trust_region_mask(batch["logp_train"], batch["logp_roll"], batch["mask"],
                                      criteria=args.criteria, threads=args.threads)
    print(format_report(result, title=f"trmask demo: built-in batch (seed {args.seed})"))
    if args.save:
        np.savez(args.save, **batch)
        print(f"wrote {args.save} (audit it with: trmask audit {args.save})", file=sys.stderr)
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


def _bounds(args: argparse.Namespace) -> int:
    import trmask
    from .report import certifies_nothing
    from .report import format_bounds, tightest

    if args.plot:
        from .plots import plot_bounds, pyplot

        pyplot()  # fail before any work when matplotlib is missing
    inputs = {"T": args.T, "kl_max": args.kl_max, "kl_seq": args.kl_seq, "eps": args.eps, "tv_seq": args.tv_seq,
              "reward_range": args.reward_range}
    values = trmask.bounds(args.T, args.kl_max, args.kl_seq, eps=args.eps, tv_seq=args.tv_seq,
                           reward_range=args.reward_range)
    if args.json:
        print(json.dumps({"inputs": inputs, "bounds": values, "tightest": tightest(values),
                          "certifies_nothing": certifies_nothing(values, args.reward_range),
                          "note": "the theorems need kl_max over all reachable contexts; a batch maximum gives "
                                  "plug-in estimates, not guarantees"}, indent=2))
    else:
        print(format_bounds(inputs, values))
    if args.plot:
        plot_bounds(args.plot, T=args.T, kl_max=args.kl_max, kl_seq=args.kl_seq, eps=args.eps, tv_seq=args.tv_seq,
                    reward_range=args.reward_range)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace) -> int:
    from .audit import audit, load_batch
    from .report import format_audit

    if args.plot:
        from .plots import plot_audit, pyplot

        pyplot()
    result = audit(load_batch(args.file, ignore_unknown=args.ignore_unknown_keys), args.criteria, nan_policy=args.nan_policy, clamp=args.clamp,
                   threads=args.threads, chunk_rows=args.chunk_rows, progress=args.progress,
                   reward_range=args.reward_range)
    print(json.dumps(result.to_dict(), indent=2, allow_nan=False) if args.json else format_audit(result))
    if args.plot:
        plot_audit(args.plot, result)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


EXIT_CODES = ("exit status: 0 success; 2 bad arguments or input (a message says which); 3 an optional "
              "dependency is missing (matplotlib for --plot, torch for .pt files); 141 the reader closed the output "
              "early (e.g. `| head`), as for a command stopped by SIGPIPE.")
#: The exit status when stdout's reader goes away (128 + SIGPIPE, what a shell reports for `yes | head`).
EXIT_BROKEN_PIPE = 141


def _paragraphs(*texts: str) -> str:
    """Help text wrapped paragraph by paragraph (the raw formatter keeps the blank lines)."""
    return "\n\n".join(textwrap.fill(text, width=90) for text in texts)


class _VersionAction(argparse.Action):
    """--version: loads the library only when asked (the report names the file and its CPU variant)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version, ABI version, library path, CPU variant and the CPU features "
                              "its build uses, and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from ._about import version_report

        print(version_report())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trmask", description="Trust Region Masking for LLM RL: masks, audits, bounds.",
                                     epilog=EXIT_CODES)
    parser.add_argument("--version", action=_VersionAction)
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
    demo.add_argument("--save", metavar="FILE.npz", default=None,
                      help="also save the batch (logp_train, logp_roll, mask) for `trmask audit`")
    demo.set_defaults(run=_demo)

    bounds = commands.add_parser(
        "bounds", help="the paper's error bounds (docs/semantics.md §7) for a length and measured divergences",
        description=_paragraphs(
            "Every error bound of the paper (docs/semantics.md §7) on the surrogate-objective error, for a sequence length T "
            "and measured divergences, with its order in T; the tightest (the unified bound B*) is marked.",
            "The theorems need kl_max over all reachable contexts: a batch maximum gives plug-in estimates, "
            "not guarantees."),
        epilog=_paragraphs("example: trmask bounds --T 4096 --kl-max 1e-4 --kl-seq 0.01 --eps 5e-3 --tv-seq 0.05",
                           EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    bounds.add_argument("--T", type=int, required=True, help="sequence length in tokens (>= 1)")
    bounds.add_argument("--kl-max", type=float, required=True,
                        help="delta = D_KL^{tok,max}: the maximum token KL(pi_roll || pi_theta), nats")
    bounds.add_argument("--kl-seq", type=float, required=True, help="D_KL^{seq}: the sequence-level KL, nats")
    bounds.add_argument("--eps", type=float, default=None,
                        help="D_TV^{tok,max}: the maximum token TV (default: sqrt(kl_max/2), Pinsker)")
    bounds.add_argument("--tv-seq", type=float, default=None,
                        help="D_TV^{seq}: the sequence-level TV (default: sqrt(kl_seq/2), Pinsker)")
    bounds.add_argument("--reward-range", type=float, default=1.0,
                        help="r_max - r_min; every bound is multiplied by it (default 1)")
    bounds.add_argument("--json", action="store_true", help="print JSON instead of the table")
    bounds.add_argument("--plot", metavar="FILE.png", default=None,
                        help="also draw each bound against T (1 to 10^6) on log-log axes (needs matplotlib)")
    bounds.set_defaults(run=_bounds)

    audit = commands.add_parser(
        "audit", help="mask, metrics, length bias and plug-in bounds of a saved batch (.npz or .pt)",
        description=_paragraphs(
            "Audit a saved batch: which rows Trust Region Masking keeps and why, the batch statistics, the "
            "length bias of the rules (kept fraction by row length), and the paper's error bounds at batch "
            "(plug-in) estimates of their inputs.",
            "FILE is a .npz (numpy.savez) or a .pt (torch.save of a dict of tensors) holding logp_train and "
            "logp_roll (float [rows, tokens]: log-probs of the sampled tokens under the training and the rollout "
            "engine), or log_ratio (logp_train - logp_roll), and optionally mask ([rows, tokens], nonzero = a "
            "token that counts) and lengths ([rows]: the first lengths[i] tokens of row i count). Other float "
            "dtypes are rounded to float32.",
            "Trainers' names are read too: logp_train as old_log_probs (verl) or old_per_token_logps (TRL); "
            "logp_roll as rollout_log_probs (verl) or sampling_per_token_logps (TRL); mask as response_mask "
            "(verl), completion_mask or attention_mask (TRL). Any other key is an error unless "
            "--ignore-unknown-keys (docs/bounds-and-audit.md)."),
        epilog=_paragraphs("The plug-in bounds use a batch maximum for kl_max, not the maximum over all reachable "
                           "contexts that the theorems need: they are estimates, not guarantees.", EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    audit.add_argument("file", metavar="FILE", help="the saved batch (.npz or .pt)")
    audit.add_argument("--criteria", default=None,
                       help="criteria string, e.g. 'max:k2<=0.1,mean:k3<=0.002' (default: the paper's TRM-Max&Avg)")
    audit.add_argument("--nan-policy", choices=("reject", "skip", "zero"), default="reject",
                       help="what a NaN log-ratio on a valid token does (default reject: its row is rejected)")
    audit.add_argument("--clamp", type=float, default=None,
                       help="clamp the log-ratio to [-C, C] before every estimator (verl uses 20; default none)")
    audit.add_argument("--threads", type=int, default=0, help="threads (default 0 = automatic)")
    audit.add_argument("--chunk-rows", type=int, default=None,
                       help="rows per chunk (default: about 4M tokens per chunk); results do not depend on it")
    audit.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show progress on stderr (default: when stderr is a terminal and there are several chunks)")
    audit.add_argument("--reward-range", type=float, default=1.0, help="r_max - r_min for the bounds (default 1)")
    audit.add_argument("--ignore-unknown-keys", action="store_true",
                       help="audit a file holding keys the audit does not read (default: refuse it, naming them)")
    audit.add_argument("--json", action="store_true", help="print the summary as JSON instead of the report")
    audit.add_argument("--plot", metavar="FILE.png", default=None,
                       help="also draw the distribution of each row criterion's statistic with its bounds, and the "
                            "kept fraction against row length (needs matplotlib)")
    audit.set_defaults(run=_audit)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import MissingDependencyError, TrmaskError

    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
        return status
    except BrokenPipeError:
        # The reader (`head`) has what it wanted: stop quietly. Point stdout at /dev/null so the
        # interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except TrmaskError as error:
        print(f"trmask: error: {error}", file=sys.stderr)
        return 2
    except MissingDependencyError as error:
        print(f"trmask: error: {error}", file=sys.stderr)
        return 3
