"""The `trmask` command line, run as a subprocess (`python -m trmask ...`) the way users run it:
exit codes, `--help` of every command, the semantics §7 table in `trmask bounds`, `trmask audit`
numbers equal to the Python API's on the same saved batch, clear errors for bad files, and PNG
plots that decode.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import trmask
from test_audit import make_batch

PACKAGE_DIR = Path(trmask.__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*args, extra_path=None, timeout=120):
    """`python -m trmask *args` with this checkout's package first on PYTHONPATH."""
    paths = ([str(extra_path)] if extra_path else []) + [str(PACKAGE_DIR)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "trmask", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    image = pytest.importorskip("matplotlib.image").imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert np.ptp(image[..., :3]) > 0  # not a blank canvas


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The same small batch as .npz (log-probs), .npz (log-ratio) and, with torch, .pt."""
    folder = tmp_path_factory.mktemp("batches")
    arrays = make_batch(11, rows=40, cols=500)
    np.savez(folder / "batch.npz", **arrays)
    np.savez(folder / "ratio.npz", log_ratio=arrays["logp_train"] - arrays["logp_roll"], mask=arrays["mask"])
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, folder / "batch.pt")
    return folder, arrays


# ---------------------------------------------------------------------------------------------
# help and demo
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command,needles", [
    ((), ["demo", "audit", "bounds", "exit status"]),
    (("demo",), ["--rows", "--criteria", "--save"]),
    (("bounds",), ["--T", "--kl-max", "--kl-seq", "--eps", "--tv-seq", "--plot", "plug-in"]),
    (("audit",), ["FILE", "logp_train", "log_ratio", "--json", "--plot", "--criteria", "--progress", "estimates",
                  "--ignore-unknown-keys", "old_log_probs", "response_mask", "completion_mask", "lengths"]),
])
def test_help(command, needles):
    done = run(*command, "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for needle in needles:
        assert needle in text, needle


def test_demo_and_its_saved_batch(tmp_path):
    done = run("demo", "--rows", 64, "--max-len", 512, "--save", tmp_path / "demo.npz")
    assert done.returncode == 0, done.stderr
    assert "trmask demo" in done.stdout and "rows kept" in done.stdout
    kept = re.search(r"rows kept (\d+) / 64", done.stdout).group(1)
    assert audit_json(tmp_path / "demo.npz")["rows_kept"] == int(kept)


def test_version_names_the_library_its_variant_and_features():
    done = run("--version")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"trmask {trmask.__version__} (ABI version {trmask._loader.ABI_VERSION})"
    assert lines[1] == f"library: {trmask.get_library()}"
    assert lines[2].startswith("variant: ")
    if trmask._loader.has_variants() and "TRMASK_LIBRARY" not in os.environ:
        variant = trmask._loader.variant_of(Path(trmask.get_library()))
        assert lines[2].startswith(f"variant: {variant.isa} (")
        assert lines[3] == f"CPU features the build uses: {variant.feature_names()}" and "AVX2 FMA" in lines[3]


def test_no_command_is_a_usage_error():
    done = run()
    assert done.returncode == 2 and "usage" in done.stderr


# ---------------------------------------------------------------------------------------------
# bounds
# ---------------------------------------------------------------------------------------------

LABELS = {"classical (TV)": "classical_tv", "classical (KL)": "classical_kl", "coupling": "coupling",
          "Pinsker-marginal (KL)": "pm_kl", "Pinsker-marginal (TV)": "pm_tv", "mixed (KL)": "mixed_kl",
          "mixed (TV)": "mixed_tv", "linear, Dbar = eps": "linear", "adaptive (hybrid), Dbar = eps": "adaptive",
          "unified B*": "unified"}
# SPEC §7, T = 4096, delta = 1e-4, kl_seq = 0.01, as printed there.
SPEC_TABLE = {
    "classical_kl": ("1677.312", "1677.312"), "coupling": ("113.8382", "79.910"), "pm_kl": ("34.94609", "34.94609"),
    "pm_tv": ("34.94609", "24.71062"), "mixed_kl": ("8.192", "8.192"), "mixed_tv": ("8.192", "4.096"),
    "linear": ("115.8524", "81.920"), "adaptive": ("34.94609", "24.71058"), "unified": ("8.192", "4.096"),
    "classical_tv": ("1677.312", "838.656"),
}


def parse_table(text: str) -> dict:
    """{key: (printed value, marked tightest)} from the table `trmask bounds` prints."""
    table = {}
    for line in text.splitlines():
        for label, key in LABELS.items():
            match = re.fullmatch(rf"\s+{re.escape(label)}\s+([0-9.e+-]+)(\*?)\s+(.+)", line)
            if match:
                table[key] = (match.group(1), match.group(2) == "*", match.group(3))
    return table


def agrees(printed: str, spec: str) -> bool:
    """The printed value rounds to the SPEC's printed digits."""
    decimals = len(spec.split(".")[1]) if "." in spec else 0
    return abs(float(printed) - float(spec)) <= 0.5 * 10.0 ** -decimals


@pytest.mark.parametrize("column,extra", [(0, []), (1, ["--eps", "5e-3", "--tv-seq", "0.05"])], ids=["kl_only", "kl_tv"])
def test_bounds_reproduces_the_spec_table(column, extra):
    done = run("bounds", "--T", 4096, "--kl-max", "1e-4", "--kl-seq", "0.01", *extra)
    assert done.returncode == 0, done.stderr
    table = parse_table(done.stdout)
    assert set(table) == set(SPEC_TABLE)
    for key, printed in SPEC_TABLE.items():
        assert agrees(table[key][0], printed[column]), (key, table[key][0], printed[column])
    tightest = {key for key, (_, marked, _) in table.items() if marked}
    assert tightest == ({"mixed_kl", "mixed_tv"} if column == 0 else {"mixed_tv"})
    orders = {key: order for key, (_, _, order) in table.items()}
    assert orders["classical_kl"] == "T^2" and orders["pm_kl"] == "T^1.5" and orders["mixed_tv"] == "T"
    assert f"tightest: {SPEC_TABLE['unified'][column]}" in done.stdout
    assert "plug-in estimates" in done.stdout


def test_bounds_large_regime_and_json():
    done = run("bounds", "--T", 4096, "--kl-max", 1, "--kl-seq", 1)
    table = parse_table(done.stdout)
    for key, spec in (("classical_kl", "16773120"), ("pm_kl", "11581.58"), ("mixed_kl", "8192"), ("linear", "11585.24")):
        assert agrees(table[key][0], spec), key
    done = run("bounds", "--T", 10**7, "--kl-max", 1e-4, "--kl-seq", 0.01, "--eps", 5e-3, "--reward-range", 2, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["bounds"] == trmask.bounds(10**7, 1e-4, 0.01, eps=5e-3, reward_range=2.0)
    assert report["inputs"]["T"] == 10**7 and report["tightest"]


@pytest.mark.parametrize("args,name", [
    (("--T", 0, "--kl-max", 1e-4, "--kl-seq", 0.01), "`T`"),
    (("--T", 10, "--kl-max", -1, "--kl-seq", 0.01), "`kl_max`"),
    (("--T", 10, "--kl-max", 1e-4, "--kl-seq", "nan"), "`kl_seq`"),
    (("--T", 10, "--kl-max", 1e-4, "--kl-seq", 0.01, "--eps", "inf"), "`eps`"),
    (("--T", 10, "--kl-max", 1e-4, "--kl-seq", 0.01, "--reward-range", 0), "`reward_range`"),
    (("--T", "ten", "--kl-max", 1e-4, "--kl-seq", 0.01), "--T"),
    (("--kl-max", 1e-4, "--kl-seq", 0.01), "--T"),
])
def test_bounds_bad_arguments_exit_2(args, name):
    done = run("bounds", *args)
    assert done.returncode == 2
    assert name in done.stderr and done.stdout == ""


def test_bounds_plot(tmp_path):
    path = tmp_path / "bounds.png"
    done = run("bounds", "--T", 4096, "--kl-max", 1e-4, "--kl-seq", 0.01, "--plot", path)
    assert done.returncode == 0, done.stderr
    check_png(path)


# ---------------------------------------------------------------------------------------------
# audit
# ---------------------------------------------------------------------------------------------

def audit_json(*args):
    done = run("audit", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_audit_numbers_equal_the_python_api(saved):
    folder, arrays = saved
    report = audit_json(folder / "batch.npz")
    lt, lr, mask = arrays["logp_train"], arrays["logp_roll"], arrays["mask"]
    result = trmask.trust_region_mask(lt, lr, mask)
    stats = trmask.sequence_stats(lt, lr, mask)
    count = np.asarray(result.count)
    nonempty = count > 0
    assert report["rows"] == 40 and report["tokens"] == int(mask.sum())
    assert report["rows_kept"] == int(result.keep_row.sum())
    assert report["tokens_kept"] == int(result.keep_token.sum())
    assert report["rejected_per_criterion"] == {str(c): r for c, r in zip(result.criteria, result.rejected)}
    max_k2 = stats.stats["k2"]["max"][nonempty].astype(np.float64)
    mean_k3 = stats.stats["k3"]["mean"][nonempty].astype(np.float64)
    assert report["batch_max_max_k2"] == max_k2[np.isfinite(max_k2)].max()
    assert report["mean_mean_k3"] == mean_k3[np.isfinite(mean_k3)].mean()
    assert report["rows_nonfinite"] == int((np.asarray(result.nonfinite) > 0).sum())
    plugin = trmask.plugin_bounds(stats)
    got = report["plugin_bounds"]["all_rows"]
    assert (got["T"], got["kl_max"], got["kl_seq"], got["bounds"]) == (plugin.T, plugin.kl_max, plugin.kl_seq,
                                                                         plugin.bounds)
    assert got["caveat"] == trmask.PLUGIN_CAVEAT
    assert report["plugin_bounds"]["kept_rows"]["kl_max"] <= 0.1


def test_audit_options_chunks_and_sources_agree(saved):
    folder, arrays = saved
    options = ("--criteria", "max:k2<=0.05,mean:k3<=0.001", "--nan-policy", "skip", "--clamp", 20)
    whole = audit_json(folder / "batch.npz", *options)
    chunked = audit_json(folder / "batch.npz", *options, "--chunk-rows", 7)
    assert chunked.pop("chunks") == 6 and whole.pop("chunks") == 1
    assert chunked == whole
    result = trmask.trust_region_mask(arrays["logp_train"], arrays["logp_roll"], arrays["mask"],
                                      criteria="max:k2<=0.05,mean:k3<=0.001", nan_policy="skip", clamp=20)
    assert whole["rows_kept"] == int(result.keep_row.sum()) and whole["nan_policy"] == "skip"
    ratio = audit_json(folder / "ratio.npz", *options)
    ratio.pop("chunks")
    for key in ("rows_kept", "tokens", "rejected_per_criterion", "rows_nonfinite"):
        assert ratio[key] == whole[key], key
    if (folder / "batch.pt").exists():
        pt = audit_json(folder / "batch.pt", *options)
        pt.pop("chunks")
        assert {k: v for k, v in pt.items() if k != "file"} == {k: v for k, v in whole.items() if k != "file"}


def test_audit_text_report_and_progress(saved):
    folder, _ = saved
    done = run("audit", folder / "batch.npz", "--chunk-rows", 10, "--progress")
    assert done.returncode == 0, done.stderr
    for needle in ("rows kept", "rejected by max:k2<=0.1", "masked row fraction", "batch max of max-k2",
                   "rows with non-finite log-ratios", "length bias", "plug-in bounds", "NOTE: plug-in estimate",
                   "not the maximum token KL over all reachable contexts"):
        assert needle in done.stdout, needle
    assert "chunk" in done.stderr and "4" in done.stderr
    quiet = run("audit", folder / "batch.npz", "--chunk-rows", 10)  # stderr is a pipe: no progress
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_audit_plot(saved, tmp_path):
    folder, _ = saved
    path = tmp_path / "audit.png"
    done = run("audit", folder / "batch.npz", "--plot", path)
    assert done.returncode == 0, done.stderr
    check_png(path)


@pytest.mark.parametrize("name,arrays,message", [
    ("missing.npz", {"mask": np.zeros((2, 2))}, "expected `logp_train` and `logp_roll`"),
    ("unknown.npz", {"log_ratio": np.zeros((2, 2), np.float32), "foo": np.zeros(2)},
     "unknown keys foo; the audit reads"),
    ("half.npz", {"logp_roll": np.zeros((2, 2), np.float32)}, "has `logp_roll` but not `logp_train`"),
    ("flat.npz", {"log_ratio": np.zeros(5, np.float32)}, "expected 2-D [rows, tokens]"),
    ("shapes.npz", {"logp_train": np.zeros((2, 3), np.float32), "logp_roll": np.zeros((3, 2), np.float32)},
     "`logp_roll` has shape (3, 2)"),
    ("mask.npz", {"log_ratio": np.zeros((2, 3), np.float32), "mask": np.ones(3, bool)}, "`mask` has shape (3,)"),
    ("ints.npz", {"log_ratio": np.zeros((2, 3), np.int64)}, "expected floating point"),
])
def test_audit_bad_files_exit_2(tmp_path, name, arrays, message):
    np.savez(tmp_path / name, **arrays)
    done = run("audit", tmp_path / name)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stdout == ""


def test_audit_bad_paths_and_options_exit_2(tmp_path, saved):
    (tmp_path / "batch.csv").write_text("1,2\n")
    for args, message in (((tmp_path / "batch.csv",), "unknown extension '.csv'"),
                          ((tmp_path / "nothing.npz",), "no such file"),
                          ((saved[0] / "batch.npz", "--criteria", "max:k9<=1"), "estimator 'k9' is unknown"),
                          ((saved[0] / "batch.npz", "--clamp", "0"), "`clamp`")):
        done = run("audit", *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr


# ---------------------------------------------------------------------------------------------
# missing optional dependencies
# ---------------------------------------------------------------------------------------------

@pytest.fixture()
def without(tmp_path):
    """A PYTHONPATH entry on which `import <name>` fails, as if the package were not installed."""
    def block(name):
        package = tmp_path / "blocked" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"raise ImportError('{name} is blocked for this test')\n")
        return tmp_path / "blocked"
    return block


def test_plots_without_matplotlib_exit_3(without, saved, tmp_path):
    blocked = without("matplotlib")
    done = run("bounds", "--T", 10, "--kl-max", 1e-4, "--kl-seq", 0.01, "--plot", tmp_path / "b.png",
               extra_path=blocked)
    assert done.returncode == 3
    assert "install matplotlib (pip install 'trmask[plot]')" in done.stderr and done.stdout == ""
    done = run("audit", saved[0] / "batch.npz", "--plot", tmp_path / "a.png", extra_path=blocked)
    assert done.returncode == 3 and "pip install 'trmask[plot]'" in done.stderr
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()
    assert run("bounds", "--T", 10, "--kl-max", 1e-4, "--kl-seq", 0.01, extra_path=blocked).returncode == 0


def test_pt_without_torch_exit_3(without, tmp_path):
    blocked = without("torch")
    (tmp_path / "batch.pt").write_bytes(b"anything")
    done = run("audit", tmp_path / "batch.pt", extra_path=blocked)
    assert done.returncode == 3 and "reading .pt files needs torch" in done.stderr


# ---------------------------------------------------------------------------------------------
# what a new user hit (issue 14)
# ---------------------------------------------------------------------------------------------

def test_audit_reads_trainers_names_and_refuses_unknown_keys(tmp_path, saved):
    _, arrays = saved
    verl = {"old_log_probs": arrays["logp_train"], "rollout_log_probs": arrays["logp_roll"],
            "response_mask": arrays["mask"], "responses": np.zeros((40, 500), np.int64)}
    np.savez(tmp_path / "verl.npz", **verl)
    refused = run("audit", tmp_path / "verl.npz")
    assert refused.returncode == 2 and refused.stdout == ""
    assert "unknown keys responses" in refused.stderr and "--ignore-unknown-keys" in refused.stderr
    report = audit_json(tmp_path / "verl.npz", "--ignore-unknown-keys")
    assert "ignored: responses" in report["notes"] and "mask from response_mask" in report["notes"]
    ours = audit_json(saved[0] / "batch.npz")
    for key in ("rows_kept", "tokens", "rejected_per_criterion", "plugin_bounds"):
        assert report[key] == ours[key], key


def _closed_pipe_run(*args):
    """`python -m trmask *args` writing into a pipe whose reader is already gone (`| head -0`)."""
    read, write = os.pipe()
    os.close(read)
    paths = os.pathsep.join([str(PACKAGE_DIR), os.environ.get("PYTHONPATH", "")])
    try:
        return subprocess.run([sys.executable, "-m", "trmask", *map(str, args)], stdout=write, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=paths), timeout=120)
    finally:
        os.close(write)


@pytest.mark.parametrize("command", [("bounds", "--T", 4096, "--kl-max", 1e-4, "--kl-seq", 0.01), ("audit", None)])
def test_output_into_a_closed_pipe_stops_quietly(command, saved):
    args = [saved[0] / "batch.npz" if a is None else a for a in command]
    done = _closed_pipe_run(*args)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""  # no BrokenPipeError traceback


def test_bounds_say_when_they_certify_nothing():
    vacuous = run("bounds", "--T", 4096, "--kl-max", 1e-4, "--kl-seq", 0.01)  # B* = 8.192 > reward range 1
    assert vacuous.returncode == 0
    assert "B* = 8.192 is not below the reward range 1: it certifies nothing" in vacuous.stdout
    useful = run("bounds", "--T", 16, "--kl-max", 1e-6, "--kl-seq", 1e-5)
    assert useful.returncode == 0 and "certifies nothing" not in useful.stdout
    assert json.loads(run("bounds", "--T", 4096, "--kl-max", 1e-4, "--kl-seq", 0.01, "--json").stdout)["certifies_nothing"]
    wide = run("bounds", "--T", 4096, "--kl-max", 1e-4, "--kl-seq", 0.01, "--reward-range", 10, "--json")
    assert json.loads(wide.stdout)["certifies_nothing"]  # every bound scales with the range too


def test_audit_plug_in_bounds_say_when_they_certify_nothing(saved):
    done = run("audit", saved[0] / "batch.npz")
    assert done.returncode == 0
    report = audit_json(saved[0] / "batch.npz")["plugin_bounds"]
    for column in ("all_rows", "kept_rows"):
        vacuous = report[column]["bounds"]["unified"] >= 1
        assert report[column]["certifies_nothing"] == vacuous
    if report["all_rows"]["certifies_nothing"]:
        assert "all rows: B* = " in done.stdout and "it certifies nothing here" in done.stdout


def test_audit_histograms_show_the_criteria_used(saved):
    pytest.importorskip("matplotlib")
    from trmask.audit import audit, load_batch
    from trmask.plots import audit_figure

    result = audit(load_batch(saved[0] / "batch.npz"), "-0.001<=mean:delta<=0.001,token:ratio<=2,max:abs<=0.3")
    figure = audit_figure(result)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[:2] == ["per-row mean-delta (criterion -0.001<=mean:delta<=0.001)",
                          "per-row max-abs (criterion max:abs<=0.3)"]
    assert len(titles) == 3 and titles[2].startswith("kept fraction by row length")
    bounds_lines = [line.get_xdata()[0] for line in figure.axes[0].get_lines()]
    assert bounds_lines == [-0.001, 0.001]  # the criterion's two bounds, drawn where they are
    import matplotlib.pyplot as plt
    plt.close(figure)


def test_bounds_figure_has_readable_panels():
    pytest.importorskip("matplotlib")
    from trmask.plots import bounds_figure

    figure = bounds_figure(T=4096, kl_max=1e-4, kl_seq=0.01, eps=5e-3, tv_seq=0.05)
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert len(panels) == 4
    for axes in panels:
        labels = [text.get_text() for text in axes.get_legend().get_texts()]
        assert labels[0] == "unified B* (tightest)" and len(labels) <= 5  # B*, at most three bounds, the range
    assert "docs/semantics.md §7" in figure._suptitle.get_text()
    import matplotlib.pyplot as plt
    plt.close(figure)


def test_bfloat16_npz_without_ml_dtypes_says_how_to_save_it(without, tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    lt = np.zeros((2, 3), ml_dtypes.bfloat16)
    np.savez(tmp_path / "bf16.npz", logp_train=lt, logp_roll=np.zeros((2, 3), np.float32))
    done = run("audit", tmp_path / "bf16.npz", extra_path=without("ml_dtypes"))
    assert done.returncode == 2 and done.stdout == ""
    assert "`logp_train` has dtype |V2" in done.stderr and "install ml_dtypes" in done.stderr
    assert "x.astype(np.float32)" in done.stderr
    with_it = run("audit", tmp_path / "bf16.npz", "--json")
    assert with_it.returncode == 0 and "logp_train |V2 read as bfloat16" in json.loads(with_it.stdout)["notes"]
