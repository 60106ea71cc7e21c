"""PNG plots for the command line: the error bounds against T, and an audit's length bias.

matplotlib is an optional dependency (``pip install 'trmask[plot]'``); without it these functions
raise `MissingDependencyError` before doing any work.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ._bounds import BOUND_KEYS, PLUGIN_CAVEAT, bounds
from .errors import MissingDependencyError
from .report import BOUND_LABELS

INSTALL_HINT = "install matplotlib (pip install 'trmask[plot]')"


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, or `MissingDependencyError`."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(f"plots need matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_STYLES = {
    "classical_tv": ("tab:gray", (0, (5, 3))), "classical_kl": ("black", ":"), "coupling": ("tab:brown", "-"),
    "pm_kl": ("tab:blue", "-"), "pm_tv": ("tab:cyan", (0, (5, 3))), "mixed_kl": ("tab:green", "-"),
    "mixed_tv": ("tab:olive", (0, (5, 3))), "linear": ("tab:purple", "-."), "adaptive": ("tab:orange", (0, (1, 2))),
}


def plot_bounds(path: str, *, T: int, kl_max: float, kl_seq: float, eps: Optional[float] = None,
                tv_seq: Optional[float] = None, reward_range: float = 1.0, t_max: int = 10**6) -> None:
    """Each bound of SPEC §7 against the sequence length on log-log axes (``T = 1..t_max``, the
    divergences fixed), with ``T`` marked; written to ``path`` as a PNG."""
    plt = pyplot()
    lengths = np.unique(np.round(np.logspace(0, math.log10(max(t_max, T)), 300)).astype(np.int64))
    curves = {key: np.empty(lengths.size) for key in BOUND_KEYS}
    for i, n in enumerate(lengths):
        values = bounds(int(n), kl_max, kl_seq, eps=eps, tv_seq=tv_seq, reward_range=reward_range)
        for key in BOUND_KEYS:
            curves[key][i] = values[key]
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=110)
    for key in BOUND_KEYS:
        y = np.where(curves[key] > 0, curves[key], np.nan)  # log axes: a zero bound (T = 1) has no point
        name, order = BOUND_LABELS[key]
        label = f"{name}, Dbar = eps" if key == "adaptive" else f"{name}  ~{order}"
        if key == "unified":
            axes.loglog(lengths, y, color="red", linewidth=3.2, alpha=0.55, label="unified B* (tightest)", zorder=3)
        else:
            color, style = _STYLES[key]
            axes.loglog(lengths, y, color=color, linestyle=style, linewidth=1.6, label=label)
    axes.axvline(T, color="0.4", linewidth=0.8)
    here = bounds(T, kl_max, kl_seq, eps=eps, tv_seq=tv_seq, reward_range=reward_range)
    axes.annotate(f"T = {T}\nB* = {here['unified']:.4g}", (T, here["unified"]), xytext=(6, -28),
                  textcoords="offset points", fontsize=8)
    axes.set_xlabel("sequence length T (tokens)")
    axes.set_ylabel(f"bound on the surrogate error (reward range {reward_range:g})")
    eps_text = "sqrt(kl_max/2)" if eps is None else f"{eps:g}"
    tv_text = "sqrt(kl_seq/2)" if tv_seq is None else f"{tv_seq:g}"
    axes.set_title(f"trmask bounds (SPEC §7): kl_max = {kl_max:g}, kl_seq = {kl_seq:g}, eps = {eps_text}, "
                   f"tv_seq = {tv_text}", fontsize=9)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=7.5, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


def plot_audit(path: str, audit) -> None:
    """Two panels for an `AuditResult`: the distribution of per-row max-k2 with the TRM-Max
    threshold, and the kept fraction against row length (the length bias of SPEC §4.4)."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)

    max_k2 = audit.max_k2[audit.count > 0].astype(np.float64)
    finite = max_k2[np.isfinite(max_k2)]
    positive = finite[finite > 0]
    if positive.size:
        edges = np.logspace(math.log10(positive.min()), math.log10(positive.max()), 40)
        if edges[0] == edges[-1]:
            edges = np.array([edges[0] / 2, edges[0] * 2])
        left.hist(positive, bins=edges, color="tab:blue", alpha=0.8)
        left.set_xscale("log")
    threshold = audit.max_k2_threshold
    notes = []
    if threshold is not None:
        left.axvline(threshold, color="red", linewidth=1.5)
        above = int((finite > threshold).sum()) + int((~np.isfinite(max_k2)).sum())
        nonfinite = int((~np.isfinite(max_k2)).sum())
        notes.append(f"threshold max:k2 <= {threshold:g}: {above} rows above"
                     + (f" ({nonfinite} of them non-finite)" if nonfinite else ""))
    if finite.size - positive.size:
        notes.append(f"{finite.size - positive.size} rows with max-k2 = 0 not shown")
    if max_k2.size - finite.size:
        notes.append(f"{max_k2.size - finite.size} rows with NaN/inf max-k2 not shown")
    left.set_title("per-row max k2 = max_t (log-ratio)^2 / 2", fontsize=10)
    left.set_xlabel("max-k2 of the row")
    left.set_ylabel("rows")
    left.yaxis.get_major_locator().set_params(integer=True)
    if notes:
        left.text(0.02, 0.97, "\n".join(notes), transform=left.transAxes, va="top", fontsize=8)

    table = audit.length_bias
    if table:
        centers = np.array([math.sqrt(b["lo"] * b["hi"]) for b in table])
        right.plot(centers, [b["kept_fraction"] for b in table], "o-", color="black", linewidth=2,
                   label="kept (all criteria)")
        row_criteria = [c for c in audit.criteria if c.is_row]
        for i, criterion in enumerate(row_criteria):
            right.plot(centers, [b["pass_fraction"][i] for b in table], "s--", markersize=4,
                       label=f"pass {criterion}")
        for x, b in zip(centers, table):
            right.annotate(str(b["rows"]), (x, b["kept_fraction"]), xytext=(0, 6), textcoords="offset points",
                           fontsize=7, ha="center")
        right.set_xscale("log", base=2)
        right.legend(fontsize=8, loc="lower left")
    right.set_ylim(-0.02, 1.05)
    right.set_title("kept fraction by row length (numbers: rows per bucket)", fontsize=10)
    right.set_xlabel("row length (valid tokens), power-of-two buckets")
    right.set_ylabel("fraction of rows")
    right.grid(True, alpha=0.3)
    caption = f"trmask audit: {audit.path} ({audit.rows} rows, {audit.rows_kept} kept)"
    if audit.plugin_all is not None:
        caption += f"; plug-in B* at T = {audit.plugin_all.T}: {audit.plugin_all.bounds['unified']:.4g} (all rows)"
        if audit.plugin_kept is not None:
            caption += f", {audit.plugin_kept.bounds['unified']:.4g} (kept rows)"
        caption += f" ({PLUGIN_CAVEAT.split(':')[0]}s)"
    figure.suptitle(caption, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
