"""The C ABI's zero-initialised structs are the defaults (docs/c-abi.md, include/trmask.h): a struct
with only `struct_size` set behaves as the documented defaults, through ctypes. Fields a zero cannot
default keep their checks (a negative clamp is still refused)."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

import trmask
from trmask import _ffi

lib = _ffi.lib
# Row 1 has a log-ratio of 50 at one token: k2 = 1250 unclamped, 200 under verl's clamp of 20.
LT = np.array([[-0.5, -1.2, -0.1], [-0.5, 49.5, -0.1]], np.float32)
LR = np.array([[-0.5, -1.21, -0.1], [-0.5, -0.5, -0.1]], np.float32)


def _view(a: np.ndarray, dtype: int) -> _ffi.View:
    return _ffi.View(a.ctypes.data, dtype, 0, a.strides[0] // a.itemsize, a.strides[1] // a.itemsize)


def _mask(options: _ffi.Options, rule: _ffi.WeightRule = None) -> tuple:
    """trm_mask on LT, LR with max:k2<=1000; (status, keep_row, weights)."""
    batch = _ffi.Batch()  # zeroed: padded layout, no mask, no lengths
    batch.struct_size, batch.n_rows, batch.n_cols = ctypes.sizeof(_ffi.Batch), 2, 3
    batch.logp_train, batch.logp_roll = _view(LT, _ffi.DTYPE_F32), _view(LR, _ffi.DTYPE_F32)
    criteria = (_ffi.CCriterion * 1)(_ffi.CCriterion(0, _ffi.ESTIMATORS["k2"], -math.inf, 1000.0, 0.0, 0.0))
    keep = np.full(2, 7, np.uint8)
    weights = np.full((2, 3), -1.0, np.float32)
    out = _ffi.MaskOut()  # zeroed: no output wanted
    out.struct_size = ctypes.sizeof(_ffi.MaskOut)
    out.keep_row = _ffi.Out(keep.ctypes.data, 1, 0)
    if rule is not None:
        out.weights, out.weight_rule = _ffi.Out(weights.ctypes.data, 3, 1), rule
    status = lib.trm_mask(ctypes.byref(batch), criteria, 1, ctypes.byref(options), ctypes.byref(out))
    return status, keep.tolist(), weights


def _options(**fields) -> _ffi.Options:
    options = _ffi.Options()
    options.struct_size = ctypes.sizeof(_ffi.Options)
    for name, value in fields.items():
        setattr(options, name, value)
    return options


def test_zeroed_options_are_reject_no_clamp_automatic_threads():
    zeroed = _mask(_options())
    explicit = _mask(_options(nan_policy=0, clamp=math.inf, reject_empty=0, threads=0))
    assert zeroed[:2] == explicit[:2] == (0, [1, 0])  # no clamp: k2 = 1250 > 1000 rejects row 1
    assert _mask(_options(clamp=20.0))[:2] == (0, [1, 1])  # clamped: k2 = 200


@pytest.mark.parametrize("clamp", [-1.0, -math.inf, math.nan])
def test_a_clamp_that_is_not_a_default_is_still_refused(clamp):
    status, keep, _ = _mask(_options(clamp=clamp))
    assert lib.trm_status_name(status) == b"TRM_E_BAD_OPTION" and keep == [7, 7]


def test_zeroed_weight_rule_is_uncapped_token_weights():
    status, _, weights = _mask(_options(), _ffi.WeightRule())
    assert status == 0
    want = trmask.importance_weights(LT, LR, level="token", mode="truncate", hi=math.inf, keep_row=np.array([True, False]))
    np.testing.assert_array_equal(weights, want)
    assert weights[0].max() > 1  # no cap at 0 (which would zero every weight)


def test_zeroed_logit_options_mean_temperature_one():
    rng = np.random.default_rng(0)
    roll = rng.normal(0, 2, (4, 9)).astype(np.float32)
    train = (roll + rng.normal(0, 0.3, roll.shape)).astype(np.float32)
    kl = np.zeros(4, np.float32)
    pair = _ffi.LogitPair(ctypes.sizeof(_ffi.LogitPair), 0, 4, 1, 9,
                          _ffi.View3(roll.ctypes.data, _ffi.DTYPE_F32, 0, 9, 0, 1),
                          _ffi.View3(train.ctypes.data, _ffi.DTYPE_F32, 0, 9, 0, 1))
    out = _ffi.ExactKLOut()
    out.struct_size, out.kl = ctypes.sizeof(_ffi.ExactKLOut), _ffi.Out(kl.ctypes.data, 1, 0)
    options = _ffi.LogitOptions()
    options.struct_size = ctypes.sizeof(_ffi.LogitOptions)
    assert lib.trm_exact_kl(ctypes.byref(pair), ctypes.byref(options), ctypes.byref(out)) == 0
    np.testing.assert_array_equal(kl, trmask.exact_kl(train, roll, temperature=1.0).kl)


def test_zero_reward_range_means_one():
    inputs = _ffi.BoundInputs(ctypes.sizeof(_ffi.BoundInputs), 0, 4096, 1e-4, 0.01, math.nan, math.nan)
    out = _ffi.BoundsOut()
    out.struct_size = ctypes.sizeof(_ffi.BoundsOut)
    assert lib.trm_bounds_compute(ctypes.byref(inputs), ctypes.byref(out)) == 0
    assert out.unified == trmask.bounds(4096, 1e-4, 0.01, reward_range=1.0)["unified"]
