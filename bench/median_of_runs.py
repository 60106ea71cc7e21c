"""Median of several `bench/bench.py` runs, as the Markdown table BENCHMARKS.md records.

The machines are shared: one run can land in a slow phase of a neighbour. Each run's ratios are
measured within that run (interleaved, repeated, medians); this takes the median of each column
over the runs and shows the range.

    python bench/bench.py --large > run1.txt   # repeat: run2.txt, run3.txt, ...
    python bench/median_of_runs.py run1.txt run2.txt run3.txt
"""

from __future__ import annotations

import re
import statistics
import sys

ROW = re.compile(r"^(?P<case>.{34}) (?P<layout>.{14}) +(?P<threads>\d+) +(?P<ns>[\d.]+) +(?P<rest>.*)$")
RATIO = re.compile(r"([\d.]+)x")
LAYOUT = re.compile(r"^\s+(?P<name>.+) / contiguous = (?P<ratio>[\d.]+)x$")
CROSSOVER = re.compile(r"^\s+(?P<positions>\d+)\s+[\d.]+us\s+[\d.]+us\s+(?P<speedup>[\d.]+)x$")
TINY = re.compile(r"^tiny batch.* (?P<ours>[\d.]+)us\s+numpy pipeline (?P<numpy>[\d.]+)us")
COLUMNS = ("x probe", "vs numpy", "vs torch", "vs C loop")


def parse(path: str) -> dict:
    rows = {}
    for line in open(path):
        line = line.rstrip("\n")
        if extra := LAYOUT.match(line):
            rows[("layout", extra["name"])] = float(extra["ratio"])
            continue
        if extra := CROSSOVER.match(line):
            rows[("crossover", int(extra["positions"]))] = float(extra["speedup"])
            continue
        if extra := TINY.match(line):
            rows[("tiny", "trmask us")], rows[("tiny", "numpy us")] = float(extra["ours"]), float(extra["numpy"])
            continue
        match = ROW.match(line)
        if not match or match["case"].startswith("case"):
            continue
        fields = match["rest"].split()
        ratios = [float(RATIO.fullmatch(f)[1]) if RATIO.fullmatch(f) else None for f in fields[:len(COLUMNS)]]
        key = (match["case"].strip(), match["layout"].strip(), int(match["threads"]))
        rows[key] = (float(match["ns"]), ratios)
    return rows


def cell(values: list, suffix: str = "x", digits: int = 2) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    text = f"{statistics.median(values):.{digits}f}{suffix}"
    return text if len(values) == 1 else f"{text} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main(paths: list) -> int:
    runs = [parse(p) for p in paths]
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    print(f"| case | layout | threads | ns/token | {' | '.join(COLUMNS)} |")
    print("|---|---|---|---|" + "---|" * len(COLUMNS))
    for key in keys:
        if key[0] in ("layout", "tiny", "crossover"):
            continue
        ns = [r[key][0] for r in runs]
        ratios = [cell([r[key][1][i] for r in runs]) for i in range(len(COLUMNS))]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {cell(ns, '', 3)} | {' | '.join(ratios)} |")
    print()
    for key in keys:
        if key[0] == "layout":
            print(f"- {key[1]} / contiguous: {cell([r[key] for r in runs])}")
        elif key[0] == "crossover":
            print(f"- two threads against one at {key[1]} positions: {cell([r[key] for r in runs])}")
        elif key[0] == "tiny":
            print(f"- tiny batch (B=1, T=16), {key[1]}: {cell([r[key] for r in runs], '', 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
