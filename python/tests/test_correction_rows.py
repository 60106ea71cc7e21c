"""Row records of rollout correction and their reduce (docs/sharded-rows.md): the statistics of a
batch split by rows into shards, reduced from the shards' records, equal those of one call on the
whole batch bit for bit, over random shapes, splits (empty shards included), NaN, mask dtypes and
configs; and every bad argument refused with its status."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

import trmask
from trmask import Rejection, TrmaskError, WeightRule, _ffi

BAD_CORRECTION_ROWS = 33


def assert_same_bits(ours, theirs, path="statistics"):
    """Equal dicts, lists and numbers, floats compared by their bits (NaN included)."""
    if isinstance(theirs, dict):
        assert ours.keys() == theirs.keys(), path
        for key in theirs:
            assert_same_bits(ours[key], theirs[key], f"{path}[{key!r}]")
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), path
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_bits(a, b, f"{path}[{index}]")
    elif isinstance(theirs, float):
        assert np.float64(ours).tobytes() == np.float64(theirs).tobytes(), f"{path}: {ours!r} != {theirs!r}"
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


REJECTIONS = [Rejection("token", "k1", lo=-0.2, hi=0.2), Rejection("seq_sum", "k2", hi=0.3),
              Rejection("seq_mean", "k3", hi=0.01), Rejection("seq_max", "k1", lo=-0.5, hi=0.4),
              Rejection("token", "k3", hi=0.05)]
RULES = [None, WeightRule("token", "truncate", hi=2.0), WeightRule("sequence", "truncate", hi=3.0),
         WeightRule("token", "mask", lo=0.5, hi=2.0), WeightRule("sequence", "mask", lo=0.25, hi=4.0)]


def random_case(seed: int):
    """A batch, a config and a split of its rows into shards (some empty)."""
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(0, 12)), int(rng.integers(1, 20))
    dtype = rng.choice([np.float32, np.float64])
    logp_roll = -np.abs(rng.normal(0, 2, (rows, cols))).astype(dtype)
    logp_train = (logp_roll + rng.normal(0, 0.3, (rows, cols))).astype(dtype)
    logp_train[rng.random((rows, cols)) < 0.03] = np.nan
    kind = rng.choice(["bool", "float32", "int32", "float64", "none"])
    valid = rng.random((rows, cols)) < 0.8
    if kind == "none":
        mask = None
    elif kind in ("float32", "float64"):
        mask = (valid * rng.choice([0.5, 1.0, 2.0], (rows, cols))).astype(kind)
    else:
        mask = valid.astype(kind)
    options = [REJECTIONS[i] for i in rng.permutation(len(REJECTIONS))[:int(rng.integers(0, 4))]]
    config = dict(rejections=options, weights=RULES[int(rng.integers(0, len(RULES)))],
                  mask_weights=bool(rng.integers(0, 2)) and mask is not None)
    shards = int(rng.integers(1, 5))
    cuts = [0, *sorted(rng.integers(0, rows + 1, shards - 1).tolist()), rows]
    lengths = rng.integers(0, cols + 1, rows) if rng.random() < 0.3 else None
    return logp_train, logp_roll, mask, lengths, config, cuts


def pieces(a, cuts):
    return [None if a is None else a[lo:hi] for lo, hi in zip(cuts, cuts[1:])]


@pytest.mark.parametrize("seed", range(60))
def test_reduce_of_shards_equals_one_call_on_the_whole_batch_bit_for_bit(seed):
    logp_train, logp_roll, mask, lengths, config, cuts = random_case(seed)
    whole = trmask.rollout_correction(logp_train, logp_roll, mask, lengths=lengths, row_records=True, **config)
    shards = [trmask.rollout_correction(t, r, m, lengths=n, row_records=True, **config).rows
              for t, r, m, n in zip(pieces(logp_train, cuts), pieces(logp_roll, cuts), pieces(mask, cuts),
                                    pieces(lengths, cuts))]
    # A row's record is the same whether it is computed alone or in the whole batch...
    joined = np.concatenate([shard.records for shard in shards])
    assert joined.tobytes() == whole.rows.records.tobytes()
    # ...and the reduce of the shards' records is the whole call's reduction.
    assert_same_bits(trmask.reduce_correction_rows(shards), whole.statistics)
    assert_same_bits(trmask.reduce_correction_rows([whole.rows]), whole.statistics)


def test_records_change_nothing_else_of_the_call():
    logp_train, logp_roll, mask, lengths, config, _ = random_case(3)
    plain = trmask.rollout_correction(logp_train, logp_roll, mask, lengths=lengths, **config)
    recorded = trmask.rollout_correction(logp_train, logp_roll, mask, lengths=lengths, row_records=True, **config)
    assert plain.rows is None
    assert_same_bits(recorded.statistics, plain.statistics)
    assert np.array_equal(recorded.mask, plain.mask) and np.array_equal(recorded.keep_row, plain.keep_row)


def test_records_hold_the_row_sums():
    logp_train = np.float32([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    logp_roll = np.float32([[-1.5, -2.0, -2.0], [-0.5, -0.25, -0.5]])
    mask = np.float32([[1, 2, 0], [0, 0, 0]])
    rows = trmask.rollout_correction(logp_train, logp_roll, mask, mask_weights=True, row_records=True,
                                     rejections=[Rejection("seq_sum", "k1", hi=-1.0)]).rows
    assert rows.records.shape == (2, 28)
    assert list(rows.records[:, :5].ravel()) == [3.0, 2.0, 0.5, -5.0, -5.5, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert rows.records[0, 18 + 7] == np.float32(-0.5)  # the option's row statistic: sum m k1
    assert rows.records[0, 18 + 9] == 1.0 and rows.records[1, 18 + 9] == 0.0  # any_rejected


def test_torch_inputs_give_torch_records():
    torch = pytest.importorskip("torch")
    logp_train, logp_roll, mask, lengths, config, cuts = random_case(7)
    result = trmask.rollout_correction(torch.from_numpy(logp_train), torch.from_numpy(logp_roll),
                                       None if mask is None else torch.from_numpy(mask), row_records=True, **config)
    assert isinstance(result.rows.records, torch.Tensor) and result.rows.records.dtype == torch.float64
    assert_same_bits(trmask.reduce_correction_rows([result.rows]), result.statistics)


@pytest.fixture()
def two_shards():
    rng = np.random.default_rng(11)
    t, r = rng.normal(-1, 0.3, (6, 8)).astype(np.float32), rng.normal(-1, 0.3, (6, 8)).astype(np.float32)
    config = dict(rejections=[Rejection("token", "k2", hi=0.05)], weights=WeightRule("token", "truncate", hi=2.0))
    return [trmask.rollout_correction(t[a:b], r[a:b], row_records=True, **config).rows for a, b in ((0, 2), (2, 6))]


def refused(shards, status):
    with pytest.raises(TrmaskError) as error:
        trmask.reduce_correction_rows(shards)
    assert error.value.status == status, error.value
    return error.value


@pytest.mark.parametrize("column,value", [(1, 0.5), (1, -1.0), (1, math.nan), (1, 2.0**54), (8, 2.0), (8, math.nan),
                                          (18 + 9, 0.5)])
def test_a_count_or_flag_out_of_its_domain_is_refused(two_shards, column, value):
    records = two_shards[1].records.copy()
    records[1, column] = value
    refused([two_shards[0], two_shards[1].like(records)], BAD_CORRECTION_ROWS)


def test_nan_sums_in_records_propagate_as_in_a_call(two_shards):
    records = two_shards[1].records.copy()
    records[0, 2] = math.nan  # a row's log-ratio sum
    stats = trmask.reduce_correction_rows([two_shards[0], two_shards[1].like(records)])
    assert math.isnan(stats["offpolicy"]["kl"]) and not math.isnan(stats["mask_sum"])


def test_shards_of_different_inputs_or_configs_are_refused(two_shards):
    t = np.zeros((2, 8), np.float32)
    ratio = trmask.rollout_correction(log_ratio=t, row_records=True, rejections=[Rejection("token", "k2", hi=0.05)],
                                      weights=WeightRule("token", "truncate", hi=2.0)).rows
    refused([two_shards[0], ratio], BAD_CORRECTION_ROWS)  # log-probs and a log-ratio: different statistics
    other = trmask.rollout_correction(t, t, row_records=True, rejections=[Rejection("token", "k2", hi=0.1)],
                                      weights=WeightRule("token", "truncate", hi=2.0)).rows
    assert refused([two_shards[0], other], 0).status == 0  # another config: the Python check
    with pytest.raises(TrmaskError, match="non-empty sequence"):
        trmask.reduce_correction_rows([])
    with pytest.raises(TrmaskError, match=r"expected \[rows, 28\]"):
        trmask.reduce_correction_rows([two_shards[0].like(np.zeros((2, 27)))])
    with pytest.raises(TrmaskError, match="C-contiguous"):
        trmask.reduce_correction_rows([two_shards[0].like(np.zeros((28, 2)).T)])


def _reduce(shards, n_shards, stats, config):
    return _ffi.lib.trm_correction_reduce(ctypes.byref(config), shards, n_shards, stats)


def test_the_c_entry_refuses_bad_shards_and_writes_nothing(two_shards):
    config = two_shards[0]._call.config
    descriptors = (_ffi.CorrectionRows * 2)(*(shard.descriptor() for shard in two_shards))
    stats = _ffi.CorrectionStats()
    stats.struct_size = ctypes.sizeof(stats)
    stats.n_rows = -7
    names = {}
    for n in (-1, _ffi.MAX_CORRECTION_SHARDS + 1):
        names[n] = _reduce(descriptors, n, ctypes.byref(stats), config)
    names["null shards"] = _reduce(None, 1, ctypes.byref(stats), config)
    names["null stats"] = _reduce(descriptors, 2, None, config)
    descriptors[1].reserved = 1
    names["reserved"] = _reduce(descriptors, 2, ctypes.byref(stats), config)
    descriptors[1].reserved, descriptors[1].log_probs = 0, 2
    names["flag"] = _reduce(descriptors, 2, ctypes.byref(stats), config)
    descriptors[1].log_probs, descriptors[1].weights_dtype = 1, _ffi.DTYPE_U8
    names["weights dtype"] = _reduce(descriptors, 2, ctypes.byref(stats), config)
    descriptors[1].weights_dtype, descriptors[1].mask_dtype = _ffi.DTYPE_F32, 99
    names["mask dtype"] = _reduce(descriptors, 2, ctypes.byref(stats), config)
    descriptors[1].mask_dtype, descriptors[1].n_rows = 0, -1
    names["rows"] = _reduce(descriptors, 2, ctypes.byref(stats), config)
    descriptors[1].n_rows, saved = 4, descriptors[1].data
    descriptors[1].data = None
    names["null data"] = _reduce(descriptors, 2, ctypes.byref(stats), config)
    descriptors[1].data, descriptors[1].mask_dtype = saved, _ffi.DTYPE_BOOL
    names["facts"] = _reduce(descriptors, 2, ctypes.byref(stats), config)
    descriptors[1].mask_dtype = 0
    overlapping = _ffi.CorrectionStats.from_address(saved)  # the stats over a shard's records (its first 8 bytes
    overlapping.struct_size, overlapping.reserved = ctypes.sizeof(stats), 0  # hold a valid struct_size, reserved)
    names["aliasing"] = _reduce(descriptors, 2, ctypes.addressof(overlapping), config)
    assert {key: _ffi.lib.trm_status_name(code).decode() for key, code in names.items()} == {
        -1: "TRM_E_BAD_SIZE", _ffi.MAX_CORRECTION_SHARDS + 1: "TRM_E_BAD_SIZE", "null shards": "TRM_E_NULL_POINTER",
        "null stats": "TRM_E_NULL_POINTER", "reserved": "TRM_E_BAD_OPTION", "flag": "TRM_E_BAD_OPTION",
        "weights dtype": "TRM_E_BAD_DTYPE", "mask dtype": "TRM_E_BAD_DTYPE", "rows": "TRM_E_BAD_SIZE",
        "null data": "TRM_E_NULL_POINTER", "facts": "TRM_E_BAD_CORRECTION_ROWS", "aliasing": "TRM_E_ALIASING"}
    assert stats.n_rows == -7  # nothing written
    assert _reduce(descriptors, 2, ctypes.byref(stats), config) == 0 and stats.n_rows == 6
    assert _reduce(None, 0, ctypes.byref(stats), config) == 0 and stats.n_rows == 0  # no shards: an empty batch


def test_the_correction_refuses_records_that_do_not_describe_the_call():
    t = np.zeros((3, 4), np.float32)
    mask = np.ones((3, 4), np.uint8)
    for field, value in (("n_rows", 2), ("mask_dtype", _ffi.DTYPE_BOOL), ("weights_dtype", _ffi.DTYPE_F32),
                         ("log_probs", 0)):
        records = np.zeros((3, 18))
        rows = _ffi.CorrectionRows(records.ctypes.data, 3, _ffi.DTYPE_U8, 0, 1, 0)
        setattr(rows, field, value)
        assert _correct(t, mask, rows) == BAD_CORRECTION_ROWS, field
    records = np.zeros((3, 18))
    assert _correct(t, mask, _ffi.CorrectionRows(records.ctypes.data, 3, _ffi.DTYPE_U8, 0, 1, 0)) == 0
    assert records[:, 1].tolist() == [4.0, 4.0, 4.0]
    aliased = _ffi.CorrectionRows(mask.ctypes.data, 3, _ffi.DTYPE_U8, 0, 1, 0)
    assert _correct(t, mask, aliased) == 7  # TRM_E_ALIASING: the records over an input


def _correct(t, mask, rows):
    batch = _ffi.Batch(ctypes.sizeof(_ffi.Batch), _ffi.LAYOUT_PADDED, *t.shape,
                       _ffi.View(t.ctypes.data, _ffi.DTYPE_F32, 0, t.shape[1], 1),
                       _ffi.View(t.ctypes.data, _ffi.DTYPE_F32, 0, t.shape[1], 1), trmask._arrays.ABSENT,
                       trmask._arrays.ABSENT, _ffi.View(mask.ctypes.data, _ffi.DTYPE_U8, 0, t.shape[1], 1))
    config = _ffi.CorrectionConfig(ctypes.sizeof(_ffi.CorrectionConfig), _ffi.DTYPE_F32, _ffi.DTYPE_F32, 0, 20.0, 0, 0,
                                   None, 0, 0, _ffi.WeightRule(0, 0, 0.0, 0.0))
    out = _ffi.CorrectionOut(ctypes.sizeof(_ffi.CorrectionOut), 0, _ffi.TypedOut(0, 0, 0, 0, 0), _ffi.Out(None, 0, 0),
                             _ffi.TypedOut(0, 0, 0, 0, 0), None, rows)
    return _ffi.lib.trm_rollout_correction(ctypes.byref(batch), ctypes.byref(config), ctypes.byref(out))
