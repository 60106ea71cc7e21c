"""Plain-text reports of the error bounds (docs/semantics.md §7) and of audits, for the command line."""

from __future__ import annotations

import math
from typing import Sequence

from ._ffi import BOUND_KEYS

#: How each bound is labelled and its order in T (docs/semantics.md §7).
BOUND_LABELS = {
    "classical_tv": ("classical (TV)", "T^2"),
    "classical_kl": ("classical (KL)", "T^2"),
    "coupling": ("coupling", "T"),
    "pm_kl": ("Pinsker-marginal (KL)", "T^1.5"),
    "pm_tv": ("Pinsker-marginal (TV)", "T^1.5"),
    "mixed_kl": ("mixed (KL)", "T"),
    "mixed_tv": ("mixed (TV)", "T"),
    "linear": ("linear", "T"),
    "adaptive": ("adaptive (hybrid)", "set by Dbar"),
    "unified": ("unified B*", "min of the six marked *"),
}
#: The bounds whose minimum is the unified bound B*.
TIGHT_KEYS = ("pm_kl", "pm_tv", "mixed_kl", "mixed_tv", "coupling", "adaptive")


def number(value: float) -> str:
    """Seven significant digits, without an exponent for the large values of the classical bounds."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e7:
        return f"{value:.0f}"
    return f"{value:.7g}"


def tightest(bounds: dict) -> list:
    """The bounds among the six of B* that attain it."""
    return [key for key in TIGHT_KEYS if bounds[key] == bounds["unified"]]



def certifies_nothing(values: dict, reward_range: float) -> bool:
    """Whether the unified bound B* (already times the reward range) is at or above the reward
    range: no change of the expected reward exceeds that, so B* then certifies nothing."""
    return not values["unified"] < reward_range


def vacuous_note(columns: Sequence[tuple], reward_range: float) -> list:
    """One line per ``(title, bounds dict)`` column whose B* certifies nothing (docs/semantics.md §7)."""
    return [f"  {title}: B* = {number(b['unified'])} is not below the reward range {reward_range:g}: it certifies "
            "nothing here (the expected reward cannot change by more than the reward range, so no gain can exceed B*)"
            for title, b in columns if certifies_nothing(b, reward_range)]


def format_bounds_table(columns: Sequence[tuple], dbar_given: bool = False) -> list:
    """Rows of a table with one value column per ``(title, bounds dict)``; ``*`` marks the
    bounds that attain B* in each column."""
    labels = {key: label for key, (label, _) in BOUND_LABELS.items()}
    if not dbar_given:
        labels["linear"] += ", Dbar = eps"
        labels["adaptive"] += ", Dbar = eps"
    width = max(len(label) for label in labels.values())
    numbers = [[number(b[key]) for _, b in columns] for key in BOUND_KEYS]
    value_width = max([len(title) - 1 for title, _ in columns] + [len(n) for row in numbers for n in row])
    lines = [f"  {'bound':<{width}}  " + "  ".join(f"{title:>{value_width + 1}}" for title, _ in columns)
             + "  order in T"]
    for key, row in zip(BOUND_KEYS, numbers):
        cells = [f"{n:>{value_width}}" + ("*" if key in tightest(b) else " ") for n, (_, b) in zip(row, columns)]
        lines.append(f"  {labels[key]:<{width}}  " + "  ".join(cells) + f"  {BOUND_LABELS[key][1]}")
    lines.append("  * tightest: attains the unified bound B*, the minimum of PM-KL, PM-TV, mixed-KL, mixed-TV, "
                 "coupling and adaptive")
    return lines


def format_bounds(inputs: dict, bounds: dict) -> str:
    """The report of `trmask bounds`."""
    eps = inputs.get("eps")
    tv_seq = inputs.get("tv_seq")
    eps_text = f"{eps:g}" if eps is not None else f"{math.sqrt(inputs['kl_max'] / 2):.6g} (derived: sqrt(kl_max/2))"
    tv_text = f"{tv_seq:g}" if tv_seq is not None else f"{math.sqrt(inputs['kl_seq'] / 2):.6g} (derived: sqrt(kl_seq/2))"
    names = ", ".join(BOUND_LABELS[k][0] for k in tightest(bounds))
    lines = ["trmask bounds: the paper's error bounds on the surrogate objective (docs/semantics.md §7)",
             f"  T = {inputs['T']}, kl_max (delta) = {inputs['kl_max']:g}, kl_seq = {inputs['kl_seq']:g}, "
             f"reward range {inputs['reward_range']:g}",
             f"  eps = {eps_text}, tv_seq = {tv_text}",
             ""]
    lines += format_bounds_table([("value", bounds)])
    lines += ["",
              f"tightest: {number(bounds['unified'])} ({names})"]
    lines += [line.strip() for line in vacuous_note([("at these inputs", bounds)], inputs["reward_range"])]
    lines += [
              "note: the theorems need kl_max over all reachable contexts; if it is a batch maximum, these bounds are "
              "plug-in estimates, not guarantees."]
    return "\n".join(lines)


def format_plugin_bounds(plugin, kept=None) -> str:
    """A `PluginBounds` (and optionally the same over kept rows) as text, with the caveat."""
    columns = [(f"{plugin.rows_used} rows", plugin.bounds)]
    if kept is not None:
        columns.append(("kept rows", kept.bounds))
    high, total = plugin.estimators
    lines = [f"plug-in bounds (docs/semantics.md §7) at T = {plugin.T} (longest row), reward range {plugin.reward_range:g}",
             f"  {plugin.rows_used} rows: kl_max = {plugin.kl_max:.6g} (batch max of per-row max {high}), "
             f"kl_seq = {plugin.kl_seq:.6g} (mean over {plugin.rows} rows of per-row sum {total})"]
    if kept is not None:
        lines.append(f"  kept rows: kl_max = {kept.kl_max:.6g}, kl_seq = {kept.kl_seq:.6g} (over {kept.rows} rows)")
    if plugin.excluded_rows:
        lines.append(f"  {plugin.excluded_rows} rows with a NaN or infinite statistic are left out "
                     "(with them every bound is infinite)")
    lines.append(f"  NOTE: {plugin.caveat}")
    lines += format_bounds_table(columns)
    lines += vacuous_note(columns, plugin.reward_range)
    return "\n".join(lines)


def format_length_bias(table: Sequence[dict], criteria: Sequence[str]) -> list:
    """The kept fraction by row-length bucket (docs/semantics.md §4.4), with the pass fraction of each row
    criterion alone."""
    lines = ["length bias (docs/semantics.md §4.4): kept fraction by row length. A per-token rule such as max:k2 keeps "
             "(1-p)^T of rows of length T",
             "  when tokens violate it independently with probability p: a column that falls with length is "
             "length bias."]
    names = ["kept"] + [f"pass {c}" for c in criteria]
    width = max(len(n) for n in names)
    lines.append(f"  {'row length':>13}  {'rows':>6}  " + "  ".join(f"{n:>{width}}" for n in names))
    for bucket in table:
        fractions = [bucket["kept_fraction"]] + bucket["pass_fraction"]
        lines.append(f"  {bucket['lo']:>6}-{bucket['hi']:<6}  {bucket['rows']:>6}  "
                     + "  ".join(f"{f:>{width}.1%}" for f in fractions))
    return lines


def format_audit(audit) -> str:
    """The report of `trmask audit` (an `AuditResult`)."""
    lines = [f"trmask audit: {audit.path}",
             f"  {audit.rows} rows x {audit.cols} positions, source {audit.source}"
             + (f" ({'; '.join(audit.notes)})" if audit.notes else ""),
             f"  rows {audit.rows} ({audit.rows - audit.rows_nonempty} empty), valid tokens {audit.tokens}, "
             f"lengths {audit.min_length}..{audit.max_length}",
             f"  criteria: {', '.join(str(c) for c in audit.criteria)}; nan_policy {audit.nan_policy}; "
             f"clamp {audit.clamp if audit.clamp is not None else 'none'}",
             f"  rows kept {audit.rows_kept} / {audit.rows}, rejected {audit.rows - audit.rows_kept}; "
             f"masked row fraction {audit.masked_row_fraction:.2%}; masked token fraction "
             f"{audit.masked_token_fraction:.2%}"]
    width = max([len(str(c)) for c in audit.criteria] + [0])
    for criterion, rejected in zip(audit.criteria, audit.rejected):
        unit = "rows" if criterion.is_row else "tokens"
        lines.append(f"    rejected by {str(criterion):<{width}}  {rejected} {unit}")
    lines += [f"  batch max of max-k2: {audit.batch_max_max_k2:.6g}; mean over rows of mean-k3: "
              f"{audit.mean_mean_k3:.6g} (non-empty rows with finite statistics)",
              f"  rows with non-finite log-ratios: {audit.rows_nonfinite} ({audit.tokens_nonfinite} tokens)",
              ""]
    lines += format_length_bias(audit.length_bias, [str(c) for c in audit.criteria if c.is_row])
    lines.append("")
    if audit.plugin_all is None:
        lines.append(f"plug-in bounds: none ({audit.plugin_error})")
    else:
        lines.append(format_plugin_bounds(audit.plugin_all, audit.plugin_kept))
        if audit.plugin_kept is None:
            lines.append(f"  no kept-rows column: {audit.plugin_kept_error}")
    return "\n".join(lines)

