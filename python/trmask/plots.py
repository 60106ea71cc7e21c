"""PNG plots for the command line: the error bounds against T, and an audit's length bias.

matplotlib is an optional dependency (``pip install 'trmask[plot]'``); without it these functions
raise `MissingDependencyError` before doing any work.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ._bounds import BOUND_KEYS, PLUGIN_CAVEAT, bounds
from ._criteria import Criterion
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


#: The panels of `plot_bounds`: bounds of one family each, so no panel holds more than three curves.
_BOUND_PANELS = (
    ("classical: order T^2", ("classical_tv", "classical_kl")),
    ("Pinsker-marginal: order T^1.5", ("pm_kl", "pm_tv")),
    ("mixed (sequence divergence): order T", ("mixed_kl", "mixed_tv")),
    ("coupling, linear, adaptive", ("coupling", "linear", "adaptive")),
)
_COLORS = ("tab:blue", "tab:orange", "tab:green")


def plot_bounds(path: str, **inputs) -> None:
    """`bounds_figure` written to ``path`` as a PNG."""
    _save(bounds_figure(**inputs), path)


def _save(figure, path: str) -> None:
    figure.savefig(path, format="png")
    pyplot().close(figure)


def bounds_figure(*, T: int, kl_max: float, kl_seq: float, eps: Optional[float] = None,
                  tv_seq: Optional[float] = None, reward_range: float = 1.0, t_max: int = 10**6):
    """Each bound of docs/semantics.md §7 against the sequence length on log-log axes
    (``T = 1..t_max``, the divergences fixed), one panel per family of bounds, each with the unified
    bound B* and the reward range (a bound above it certifies nothing), and ``T`` marked."""
    plt = pyplot()
    lengths = np.unique(np.round(np.logspace(0, math.log10(max(t_max, T)), 300)).astype(np.int64))
    curves = {key: np.empty(lengths.size) for key in BOUND_KEYS}
    for i, n in enumerate(lengths):
        values = bounds(int(n), kl_max, kl_seq, eps=eps, tv_seq=tv_seq, reward_range=reward_range)
        for key in BOUND_KEYS:
            curves[key][i] = values[key]
    here = bounds(T, kl_max, kl_seq, eps=eps, tv_seq=tv_seq, reward_range=reward_range)
    figure, grid = plt.subplots(2, 2, figsize=(10, 7.5), dpi=110, sharex=True, sharey=True)
    for axes, (title, keys) in zip(grid.flat, _BOUND_PANELS):
        # log axes: a zero bound (T = 1) has no point
        unified = np.where(curves["unified"] > 0, curves["unified"], np.nan)
        axes.loglog(lengths, unified, color="0.55", linewidth=4, alpha=0.5, label="unified B* (tightest)")
        for key, color in zip(keys, _COLORS):
            name, _ = BOUND_LABELS[key]
            label = f"{name}, Dbar = eps" if key in ("linear", "adaptive") else name
            y = np.where(curves[key] > 0, curves[key], np.nan)
            axes.loglog(lengths, y, color=color, linewidth=1.6, label=label)
        axes.axhline(reward_range, color="red", linewidth=0.9, linestyle="--",
                     label=f"reward range {reward_range:g} (above: certifies nothing)")
        axes.axvline(T, color="0.3", linewidth=0.8, linestyle=":")
        axes.set_title(title, fontsize=10)
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(fontsize=7.5, loc="upper left")
    grid[0, 0].annotate(f"T = {T}: B* = {here['unified']:.4g}", (T, here["unified"]), xytext=(-120, 20),
                        textcoords="offset points", fontsize=8, arrowprops=dict(arrowstyle="->", color="0.3"))
    for axes in grid[1]:
        axes.set_xlabel("sequence length T (tokens)")
    for axes in grid[:, 0]:
        axes.set_ylabel("bound on the surrogate error")
    eps_text = "sqrt(kl_max/2)" if eps is None else f"{eps:g}"
    tv_text = "sqrt(kl_seq/2)" if tv_seq is None else f"{tv_seq:g}"
    figure.suptitle(f"trmask bounds (docs/semantics.md §7): kl_max = {kl_max:g}, kl_seq = {kl_seq:g}, eps = {eps_text}, "
                    f"tv_seq = {tv_text}, reward range {reward_range:g}", fontsize=10)
    figure.tight_layout()
    return figure


def _statistic_panel(axes, criterion, stat: np.ndarray) -> None:
    """The distribution of one row criterion's statistic over non-empty rows, with its bounds."""
    finite = stat[np.isfinite(stat)]
    nonfinite = stat.size - finite.size
    notes = []
    log_scale = finite.size > 0 and finite.min() >= 0
    shown = finite[finite > 0] if log_scale else finite
    if shown.size:
        if log_scale:
            edges = np.logspace(math.log10(shown.min()), math.log10(shown.max()), 40)
            if edges[0] == edges[-1]:
                edges = np.array([edges[0] / 2, edges[0] * 2])
        else:
            lo, hi = float(shown.min()), float(shown.max())
            edges = np.linspace(lo, hi, 40) if hi > lo else np.array([lo - 0.5, lo + 0.5])
        axes.hist(shown, bins=edges, color="tab:blue", alpha=0.8)
        if log_scale:
            axes.set_xscale("log")
    outside = int(((finite < criterion.lo) | (finite > criterion.hi)).sum())
    for bound in (criterion.lo, criterion.hi):
        if math.isfinite(bound) and (bound > 0 or not log_scale):
            axes.axvline(bound, color="red", linewidth=1.5)
    notes.append(f"{criterion}: {outside + nonfinite} rows fail" + (f" ({nonfinite} NaN/inf)" if nonfinite else ""))
    if log_scale and finite.size - shown.size:
        notes.append(f"{finite.size - shown.size} rows with statistic 0 not shown")
    if nonfinite:
        notes.append(f"{nonfinite} rows with a NaN/inf statistic not shown")
    name = f"{criterion.agg}-{criterion.estimator}"
    axes.set_title(f"per-row {name} (criterion {criterion})", fontsize=10)
    axes.set_xlabel(f"{name} of the row")
    axes.set_ylabel("rows")
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.text(0.02, 0.97, "\n".join(notes), transform=axes.transAxes, va="top", fontsize=8)


def plot_audit(path: str, audit) -> None:
    """`audit_figure` written to ``path`` as a PNG."""
    _save(audit_figure(audit), path)


def audit_figure(audit):
    """Panels for an `AuditResult`: the distribution of each row criterion's statistic with its
    bounds (max-k2 with no threshold when the criteria hold no row criterion), and the kept
    fraction against row length (the length bias of docs/semantics.md §4.4)."""
    plt = pyplot()
    nonempty = audit.count > 0
    row_criteria = [c for c in audit.criteria if c.is_row]
    panels = list(zip(row_criteria, audit.row_stats)) or [(Criterion("max", "k2"), audit.max_k2)]
    figure, axes_list = plt.subplots(1, len(panels) + 1, figsize=(5.5 * (len(panels) + 1), 4.5), dpi=110)
    for axes, (criterion, stat) in zip(axes_list, panels):
        _statistic_panel(axes, criterion, np.asarray(stat)[nonempty].astype(np.float64))
    right = axes_list[-1]

    table = audit.length_bias
    if table:
        centers = np.array([math.sqrt(b["lo"] * b["hi"]) for b in table])
        right.plot(centers, [b["kept_fraction"] for b in table], "o-", color="black", linewidth=2,
                   label="kept (all criteria)")
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
    return figure
