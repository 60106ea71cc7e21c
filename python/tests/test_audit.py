"""Tests of the audit module (`trmask.audit`): loading and checking saved batches, chunked results
equal to one call of the Python API, the length-bias table, and the report.

Every comparison is exact: the audit calls the same kernels on row slices of the same float32
arrays, and per-row results depend on their row alone (SPEC §3).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import trmask
from trmask.audit import LoadedBatch, audit, length_bias_table, load_batch
from trmask.report import format_audit


def make_batch(seed=0, rows=37, cols=300):
    """A small batch with everything an audit meets: ragged and empty rows, spikes, a NaN and an
    infinite log-ratio on valid tokens, NaN in padding."""
    rng = np.random.default_rng(seed)
    lr = -rng.exponential(0.4, (rows, cols)).astype(np.float32)
    lt = (lr + rng.normal(0, 0.01, (rows, cols)) * rng.lognormal(0, 1, (rows, 1))).astype(np.float32)
    spikes = rng.random((rows, cols)) < 2e-3
    lt[spikes] += rng.normal(0, 1.5, int(spikes.sum())).astype(np.float32)
    lengths = rng.integers(1, cols + 1, rows)
    lengths[[0, rows // 2]] = 0
    lengths[1] = cols
    mask = np.arange(cols)[None, :] < lengths[:, None]
    lr[2, 0] = np.nan
    lt[3, 0] = -np.inf
    lt[4, cols - 1] = np.nan  # padding unless row 4 is full
    lengths[4] = min(lengths[4], cols - 1)
    mask[4] = np.arange(cols) < lengths[4]
    return {"logp_train": lt, "logp_roll": lr, "mask": mask}


def _loaded(arrays, path="batch.npz"):
    return LoadedBatch(path, arrays.get("logp_train"), arrays.get("logp_roll"), arrays.get("log_ratio"),
                       arrays.get("mask"))


@pytest.mark.parametrize("chunk_rows", [1, 5, 36, 37, 1000])
@pytest.mark.parametrize("criteria,nan_policy", [
    (None, "reject"), ("max:k2<=0.05,mean:k3<=0.001,0.5<=token:ratio<=2", "skip"), ("min:delta>=-2", "zero")])
def test_chunked_audit_equals_one_call(chunk_rows, criteria, nan_policy):
    arrays = make_batch()
    got = audit(_loaded(arrays), criteria, nan_policy=nan_policy, chunk_rows=chunk_rows)
    want = trmask.trust_region_mask(arrays["logp_train"], arrays["logp_roll"], arrays["mask"], criteria=criteria,
                                    nan_policy=nan_policy)
    np.testing.assert_array_equal(got.keep_row, want.keep_row)
    np.testing.assert_array_equal(got.count, want.count)
    np.testing.assert_array_equal(got.nonfinite, want.nonfinite)
    assert got.rejected == want.rejected
    for a, b in zip(got.row_stats, want.row_stats):
        np.testing.assert_array_equal(a, b)
    assert got.tokens_kept == int(want.keep_token.sum())
    stats = trmask.sequence_stats(arrays["logp_train"], arrays["logp_roll"], arrays["mask"], nan_policy=nan_policy)
    np.testing.assert_array_equal(got.max_k2, stats.stats["k2"]["max"])
    np.testing.assert_array_equal(got.mean_k3, stats.stats["k3"]["mean"])
    np.testing.assert_array_equal(got.sum_k3, stats.stats["k3"]["sum"])
    plugin = trmask.plugin_bounds(stats)
    assert (got.plugin_all.T, got.plugin_all.kl_max, got.plugin_all.kl_seq, got.plugin_all.excluded_rows) == (
        plugin.T, plugin.kl_max, plugin.kl_seq, plugin.excluded_rows)
    assert got.plugin_all.bounds == plugin.bounds
    assert got.chunks == math.ceil(37 / chunk_rows)


def test_summary_numbers():
    arrays = make_batch(1)
    got = audit(_loaded(arrays))
    want = trmask.trust_region_mask(arrays["logp_train"], arrays["logp_roll"], arrays["mask"])
    stats = trmask.sequence_stats(arrays["logp_train"], arrays["logp_roll"], arrays["mask"])
    count = np.asarray(want.count)
    nonempty = count > 0
    max_k2 = stats.stats["k2"]["max"][nonempty].astype(np.float64)
    mean_k3 = stats.stats["k3"]["mean"][nonempty].astype(np.float64)
    assert got.rows_kept == int(want.keep_row.sum())
    assert got.masked_row_fraction == 1 - int(want.keep_row.sum()) / 37
    assert got.tokens == int(count.sum()) == int(arrays["mask"].sum())
    assert got.batch_max_max_k2 == max_k2[np.isfinite(max_k2)].max()
    assert got.mean_mean_k3 == mean_k3[np.isfinite(mean_k3)].mean()
    assert (got.rows_nonfinite, got.tokens_nonfinite) == (2, 2)
    kept = trmask.plugin_bounds(
        trmask.trust_region_mask(arrays["logp_train"], arrays["logp_roll"], arrays["mask"],
                                 criteria="max:k2<=0.1,mean:k3<=0.002,max:k2,sum:k3"), kept_only=True)
    assert got.plugin_kept.bounds == kept.bounds and got.plugin_kept.kl_max <= 0.1


def test_length_bias_table_agrees_with_rejected_counts():
    arrays = make_batch(2, rows=200, cols=1000)
    got = audit(_loaded(arrays), "max:k2<=0.02,mean:k3<=0.0005")
    table = got.length_bias
    assert sum(b["rows"] for b in table) == got.rows_nonempty
    assert sum(b["kept"] for b in table) == got.rows_kept - (got.rows - got.rows_nonempty)  # empty rows are kept
    for i in range(2):  # rows each criterion rejects, rebuilt from the pass fractions
        rebuilt = sum(round(b["rows"] * (1 - b["pass_fraction"][i])) for b in table)
        assert rebuilt == got.rejected[i]
    for b in table:
        assert b["lo"] <= b["hi"] and b["lo"] & (b["lo"] - 1) == 0
    assert length_bias_table(np.zeros(3, np.int64), np.ones(3, bool), (), ()) == []


def test_report_text_and_json():
    got = audit(_loaded(make_batch(3)))
    text = format_audit(got)
    for needle in ("rows kept", "masked row fraction", "rejected by max:k2<=0.1", "batch max of max-k2",
                   "rows with non-finite log-ratios: 2", "length bias", "plug-in bounds", "NOTE: plug-in estimate",
                   "unified B*", "kept rows"):
        assert needle in text, needle
    summary = json.loads(json.dumps(got.to_dict(), allow_nan=False))
    assert summary["plugin_bounds"]["all_rows"]["caveat"] == trmask.PLUGIN_CAVEAT
    assert summary["rows_kept"] == got.rows_kept


def test_an_empty_batch_and_a_batch_without_tokens():
    empty = audit(_loaded({"log_ratio": np.zeros((0, 8), np.float32)}))
    assert (empty.rows, empty.rows_kept, empty.plugin_all) == (0, 0, None)
    assert "no non-empty rows" in empty.plugin_error
    no_tokens = audit(_loaded({"log_ratio": np.zeros((3, 8), np.float32), "mask": np.zeros((3, 8), bool)}))
    assert no_tokens.rows_kept == 3 and no_tokens.plugin_all is None
    assert "plug-in bounds: none" in format_audit(no_tokens)
    json.dumps(no_tokens.to_dict(), allow_nan=False)


def test_load_npz_converts_and_notes(tmp_path):
    arrays = make_batch(4, rows=5, cols=20)
    path = tmp_path / "b.npz"
    np.savez(path, logp_train=arrays["logp_train"].astype(np.float64), logp_roll=arrays["logp_roll"],
             mask=arrays["mask"].astype(np.int64), extra=np.arange(3))
    with pytest.raises(trmask.TrmaskError, match="unknown keys extra;.*--ignore-unknown-keys"):
        load_batch(path)
    batch = load_batch(path, ignore_unknown=True)
    assert batch.logp_train.dtype == np.float32 and batch.mask.dtype == bool
    np.testing.assert_array_equal(batch.mask, arrays["mask"])
    assert any("logp_train float64 rounded to float32" in n for n in batch.notes)
    assert any("mask int64 read as nonzero = valid" in n for n in batch.notes)
    assert any("ignored: extra" in n for n in batch.notes)


@pytest.mark.parametrize("arrays,message", [
    ({"foo": np.zeros((2, 2))}, "unknown keys foo; the audit reads logp_train: logp_train, old_log_probs"),
    ({"mask": np.ones((2, 2), bool)}, "arrays found: mask; expected `logp_train` and `logp_roll`"),
    ({"old_log_probs": np.zeros((2, 2), np.float32)}, r"has `old_log_probs` \(logp_train\) but not `logp_roll`"),
    ({"logp_train": np.zeros((2, 2), np.float32), "old_log_probs": np.zeros((2, 2), np.float32),
      "logp_roll": np.zeros((2, 2), np.float32)}, "has `logp_train` and `old_log_probs`, two names for logp_train"),
    ({"log_ratio": np.zeros((2, 3), np.float32), "attention_mask": np.ones((2, 5), bool)},
     r"`attention_mask` has shape \(2, 5\); expected \(2, 3\) like the data \(attention_mask covers prompt"),
    ({"log_ratio": np.zeros((2, 3), np.float32), "lengths": np.array([1, 4])}, "`lengths` must lie in 0..3"),
    ({"log_ratio": np.zeros((2, 3), np.float32), "lengths": np.array([1.0, 2.0])}, "`lengths` has shape"),
    ({"logp_train": np.zeros((2, 2), np.float32)}, "has `logp_train` but not `logp_roll`"),
    ({"log_ratio": np.zeros((2, 2), np.float32), "logp_roll": np.zeros((2, 2), np.float32)}, "has both `log_ratio`"),
    ({"log_ratio": np.zeros(4, np.float32)}, r"`log_ratio` has shape \(4,\); expected 2-D"),
    ({"log_ratio": np.zeros((2, 3), np.int32)}, "`log_ratio` has dtype int32; expected floating point"),
    ({"logp_train": np.zeros((2, 3), np.float32), "logp_roll": np.zeros((2, 4), np.float32)},
     r"`logp_roll` has shape \(2, 4\) but `logp_train` has \(2, 3\)"),
    ({"log_ratio": np.zeros((2, 3), np.float32), "mask": np.ones((3, 2), bool)},
     r"`mask` has shape \(3, 2\); expected \(2, 3\)"),
    ({"log_ratio": np.zeros((2, 3), np.float32), "mask": np.array([["a", "b", "c"]] * 2)}, "`mask` has dtype"),
])
def test_bad_npz_files_are_explained(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(trmask.TrmaskError, match=message):
        load_batch(path)


def test_bad_paths_are_explained(tmp_path):
    with pytest.raises(trmask.TrmaskError, match="unknown extension '.csv'; expected .npz"):
        load_batch(tmp_path / "x.csv")
    with pytest.raises(trmask.TrmaskError, match="no such file"):
        load_batch(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(trmask.TrmaskError, match="cannot read it as a .npz"):
        load_batch(tmp_path / "junk.npz")


def test_load_pt(tmp_path):
    torch = pytest.importorskip("torch")
    arrays = make_batch(5, rows=6, cols=30)
    path = tmp_path / "b.pt"
    torch.save({"logp_train": torch.from_numpy(arrays["logp_train"]).to(torch.bfloat16),
                "logp_roll": torch.from_numpy(arrays["logp_roll"]), "mask": torch.from_numpy(arrays["mask"])}, path)
    batch = load_batch(path)
    want = torch.from_numpy(arrays["logp_train"]).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(batch.logp_train, want)
    assert batch.notes == []  # bfloat16 widens to float32 exactly: nothing to note
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(trmask.TrmaskError, match="holds a list; expected a dict of tensors"):
        load_batch(tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(trmask.TrmaskError, match="cannot read it with torch.load"):
        load_batch(tmp_path / "junk.pt")


def test_bad_chunk_rows():
    with pytest.raises(trmask.TrmaskError, match="`chunk_rows`"):
        audit(_loaded(make_batch(6, rows=6, cols=4)), chunk_rows=0)


def _trainer_batch(arrays: dict, names: dict, **extra) -> dict:
    return {names[k]: v for k, v in arrays.items()} | extra


@pytest.mark.parametrize("names", [
    {"logp_train": "old_log_probs", "logp_roll": "rollout_log_probs", "mask": "response_mask"},  # verl
    {"logp_train": "old_per_token_logps", "logp_roll": "sampling_per_token_logps", "mask": "completion_mask"},  # TRL
    {"logp_train": "logp_train", "logp_roll": "logp_roll", "mask": "attention_mask"},
])
def test_trainers_key_names_give_the_same_audit(tmp_path, names):
    arrays = make_batch(5, rows=9, cols=40)
    np.savez(tmp_path / "ours.npz", **arrays)
    # verl also saves the full-sequence attention mask, wider than the response: not the mask.
    extra = {"attention_mask": np.ones((9, 70), bool)} if names["mask"] == "response_mask" else {}
    np.savez(tmp_path / "theirs.npz", **_trainer_batch(arrays, names, **extra))
    ours, theirs = audit(load_batch(tmp_path / "ours.npz")), audit(load_batch(tmp_path / "theirs.npz"))
    assert theirs.rows_kept == ours.rows_kept and theirs.tokens == ours.tokens == int(arrays["mask"].sum())
    assert theirs.rejected == ours.rejected
    if names["mask"] != "mask":
        assert f"mask from {names['mask']}" in theirs.notes
    if extra:
        assert "attention_mask not used (response_mask is the mask)" in theirs.notes


def test_lengths_count_like_the_equivalent_mask(tmp_path):
    arrays = make_batch(6, rows=8, cols=30)
    lengths = np.array([0, 3, 30, 7, 12, 29, 1, 15])
    mask = np.arange(30)[None, :] < lengths[:, None]
    np.savez(tmp_path / "lengths.npz", logp_train=arrays["logp_train"], logp_roll=arrays["logp_roll"], lengths=lengths)
    np.savez(tmp_path / "mask.npz", logp_train=arrays["logp_train"], logp_roll=arrays["logp_roll"], mask=mask)
    by_lengths = audit(load_batch(tmp_path / "lengths.npz"), chunk_rows=3)
    by_mask = audit(load_batch(tmp_path / "mask.npz"))
    assert by_lengths.tokens == int(lengths.sum())
    np.testing.assert_array_equal(by_lengths.keep_row, by_mask.keep_row)
    np.testing.assert_array_equal(by_lengths.count, by_mask.count)


def test_bfloat16_saved_by_numpy_reads_back(tmp_path):
    """numpy.savez stores an ml_dtypes bfloat16 array as raw 2-byte records (|V2)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    arrays = make_batch(7, rows=6, cols=25)
    train16 = arrays["logp_train"].astype(ml_dtypes.bfloat16)
    np.savez(tmp_path / "bf16.npz", logp_train=train16, logp_roll=arrays["logp_roll"], mask=arrays["mask"])
    with np.load(tmp_path / "bf16.npz") as raw:
        assert raw["logp_train"].dtype.str == "|V2"  # what the audit has to undo
    batch = load_batch(tmp_path / "bf16.npz")
    np.testing.assert_array_equal(batch.logp_train, train16.astype(np.float32))
    assert "logp_train |V2 read as bfloat16" in batch.notes
    # The API itself names the raw records and the fix.
    with np.load(tmp_path / "bf16.npz") as raw, pytest.raises(trmask.TrmaskError, match=r"\|V2.*ml_dtypes.bfloat16"):
        trmask.trust_region_mask(raw["logp_train"], arrays["logp_roll"])
