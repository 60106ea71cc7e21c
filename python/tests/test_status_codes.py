"""Every status code of the C ABI reached by a bad argument, straight through ctypes (bypassing the
Python checks), with outputs left untouched on error; and the header, the Python constants and
the library agreeing on every code and name (SPEC §11)."""

from __future__ import annotations

import ctypes
import math
import re

import numpy as np
import pytest

import trmask
from conftest import ROOT
from trmask import _ffi

HEADER = (ROOT / "include" / "trmask.h").read_text()
HEADER_STATUS = {name: int(value) for name, value in re.findall(r"#define (TRM_(?:OK|E_[A-Z_]+)) (\d+)", HEADER)}
lib = _ffi.lib


def _define(name: str) -> int:
    return int(re.search(rf"#define {name} (\d+)", HEADER).group(1))


def test_header_codes_match_library_names_and_messages():
    assert HEADER_STATUS["TRM_OK"] == 0
    codes = sorted(HEADER_STATUS.values())
    assert len(set(codes)) == len(codes), "codes are pinned and distinct"
    assert codes[:25] == list(range(25)), "the first codes are dense"  # later ones are assigned in ranges
    for name, code in HEADER_STATUS.items():
        assert lib.trm_status_name(code).decode() == name
        assert lib.trm_status_string(code).decode()
    for unknown in (-1, codes[-1] + 1, 2**31 - 1):
        assert lib.trm_status_name(unknown) == b"TRM_E_UNKNOWN"
        assert lib.trm_status_string(unknown) == b"unknown status"


def test_header_enums_match_python_constants():
    for name, value in _ffi.ESTIMATORS.items():
        assert _define(f"TRM_EST_{name.upper()}") == value
    for name, value in _ffi.AGGREGATIONS.items():
        assert _define(f"TRM_AGG_{name.upper()}") == value
    for name, value in _ffi.NAN_POLICIES.items():
        assert _define(f"TRM_NAN_{name.upper()}") == value
    for name in ("NONE", "F32", "F64", "F16", "BF16", "U8", "BOOL", "I32", "I64"):
        assert _define(f"TRM_DTYPE_{name}") == getattr(_ffi, f"DTYPE_{name}")
    assert _define("TRM_ABI_VERSION") == lib.trm_abi_version() == trmask._loader.ABI_VERSION
    assert re.search(r'#define TRM_VERSION_STRING "([^"]+)"', HEADER).group(1) == lib.trm_version().decode() == trmask.__version__


class Call:
    """A valid trm_mask call on a small padded batch; tests break one thing each."""

    def __init__(self, rows=3, cols=5):
        rng = np.random.default_rng(0)
        self.lt = rng.normal(-1, 0.1, (rows, cols)).astype(np.float32)
        self.lr = (self.lt + rng.normal(0, 0.01, (rows, cols))).astype(np.float32)
        self.mask = np.ones((rows, cols), np.uint8)
        self.lengths = np.full(rows, cols, np.int64)
        self.offsets = np.arange(rows + 1, dtype=np.int64) * cols
        self.keep = np.full(rows, 7, np.uint8)  # sentinel: must survive a refused call
        self.count = np.full(rows, -1, np.int64)
        self.stats = np.full((rows, 2), 7.0, np.float32)
        self.rejected = np.full(2, -1, np.int64)
        self.weights = np.full((rows, cols), 7.0, np.float32)
        self.metrics = _ffi.Metrics(ctypes.sizeof(_ffi.Metrics), 0, -7)
        self.batch = _ffi.Batch(ctypes.sizeof(_ffi.Batch), _ffi.LAYOUT_PADDED, rows, cols,
                                self.view(self.lt), self.view(self.lr), trmask._arrays.ABSENT, trmask._arrays.ABSENT,
                                self.view(self.mask, _ffi.DTYPE_U8), trmask._arrays.ABSENT, trmask._arrays.ABSENT)
        self.criteria = (_ffi.CCriterion * 2)(_ffi.CCriterion(0, 2, -math.inf, 0.1), _ffi.CCriterion(3, 3, -math.inf, 0.002))
        self.n_criteria = 2
        self.options = _ffi.Options(ctypes.sizeof(_ffi.Options), 0, math.inf, 0, 0)
        self.out = _ffi.MaskOut(ctypes.sizeof(_ffi.MaskOut), 0, _ffi.Out(self.keep.ctypes.data, 1, 0),
                                _ffi.Out(self.count.ctypes.data, 1, 0), _ffi.Out(None, 0, 0),
                                _ffi.Out(self.stats.ctypes.data, 2, 1), _ffi.Out(None, 0, 0), self.rejected.ctypes.data,
                                _ffi.Out(None, 0, 0), _ffi.WeightRule(0, 0, 0.0, 2.0), ctypes.addressof(self.metrics))

    @staticmethod
    def view(a, dtype=_ffi.DTYPE_F32):
        strides = [s // a.itemsize for s in a.strides]
        return _ffi.View(a.ctypes.data, dtype, 0, *(strides if a.ndim == 2 else [0] + strides))

    def run(self, batch=True, options=True, out=True):
        return lib.trm_mask(ctypes.byref(self.batch) if batch else None, self.criteria if self.n_criteria else None,
                            self.n_criteria, ctypes.byref(self.options) if options else None,
                            ctypes.byref(self.out) if out else None)

    def untouched(self):
        return ((self.keep == 7).all() and (self.count == -1).all() and (self.stats == 7).all()
                and (self.rejected == -1).all() and (self.weights == 7).all() and self.metrics.n_rows == -7)

    def want_weights(self, rule=None):
        self.out.weights = _ffi.Out(self.weights.ctypes.data, self.weights.shape[1], 1)
        if rule is not None:
            self.out.weight_rule = _ffi.WeightRule(*rule)

    def ln_trm(self, index=0, kl_max=0.01, eps=0.0):
        c = self.criteria[index]
        c.aggregation, c.estimator, c.kl_max, c.eps = _ffi.AGGREGATIONS["ln_trm"], _ffi.ESTIMATORS["tv"], kl_max, eps


def test_valid_call_succeeds():
    call = Call()
    assert call.run() == 0
    assert set(call.keep) <= {0, 1} and (call.count == 5).all()
    assert call.metrics.n_rows == 3 and call.metrics.n_tokens == 15
    call = Call()
    call.want_weights()
    call.ln_trm(1)
    assert call.run() == 0
    assert (call.weights != 7).all() and call.metrics.n_rows_kept == call.keep.sum()


def _packed(call):
    call.batch.layout = _ffi.LAYOUT_PACKED
    call.batch.n_cols = call.lt.size
    for name in ("logp_train", "logp_roll", "mask"):
        view = getattr(call.batch, name)
        view.stride_row, view.stride_col = 0, 1
    call.batch.offsets = call.view(call.offsets, _ffi.DTYPE_I64)
    call.out.stats = _ffi.Out(None, 0, 0)


BREAKS = {
    "TRM_E_NULL_POINTER": [
        lambda c: setattr(c, "null", "batch"),
        lambda c: setattr(c.batch.logp_train, "data", None),
        lambda c: setattr(c, "criteria", None),
    ],
    "TRM_E_BAD_STRUCT_SIZE": [
        lambda c: setattr(c.batch, "struct_size", 8),
        lambda c: setattr(c.options, "struct_size", 4),
        lambda c: setattr(c.out, "struct_size", 0),
        lambda c: setattr(c.metrics, "struct_size", 16),
    ],
    "TRM_E_BAD_SIZE": [
        lambda c: setattr(c.batch, "n_rows", -1),
        lambda c: setattr(c.batch, "n_cols", -5),
        lambda c: (setattr(c.batch, "n_rows", 2**40), setattr(c.batch, "n_cols", 2**40)),
        lambda c: setattr(c, "n_criteria", 65),
        lambda c: setattr(c, "n_criteria", -1),
    ],
    "TRM_E_BAD_DTYPE": [
        lambda c: setattr(c.batch.logp_train, "dtype", _ffi.DTYPE_U8),
        lambda c: setattr(c.batch.logp_roll, "dtype", 99),
        lambda c: setattr(c.batch.mask, "dtype", 42),
        lambda c: setattr(c.batch, "lengths", c.view(c.lengths.astype(np.float32), _ffi.DTYPE_F32)),
    ],
    "TRM_E_BAD_STRIDE": [
        lambda c: setattr(c.out.keep_row, "stride_row", 0),
        lambda c: setattr(c.out.keep_row, "stride_col", 1),
        lambda c: (setattr(c.out.row_stats, "stride_row", 1), setattr(c.out.row_stats, "stride_col", 1)),
        lambda c: (_packed(c), setattr(c.batch.logp_train, "stride_row", 5)),
        lambda c: (c.want_weights(), setattr(c.out.weights, "stride_row", 0)),
        lambda c: (_packed(c), c.want_weights()),  # a packed grid output has stride_row 0
    ],
    "TRM_E_OUT_OF_RANGE": [
        lambda c: setattr(c.batch.logp_train, "stride_col", 2**61),
        lambda c: setattr(c.batch.logp_roll, "stride_row", -(2**62)),
        lambda c: setattr(c.out.count, "stride_row", 2**61),
    ],
    "TRM_E_ALIASING": [
        lambda c: setattr(c.out.count, "data", c.lt.ctypes.data),
        lambda c: setattr(c.out, "rejected", c.count.ctypes.data),
        lambda c: (c.want_weights(), setattr(c.out.weights, "data", c.lr.ctypes.data)),
        lambda c: (c.want_weights(), setattr(c.out.weights, "data", c.stats.ctypes.data)),
    ],
    "TRM_E_BAD_LAYOUT": [lambda c: setattr(c.batch, "layout", 7)],
    "TRM_E_BAD_INPUTS": [
        lambda c: setattr(c.batch, "logp_roll", trmask._arrays.ABSENT),
        lambda c: setattr(c.batch, "log_ratio", c.view(c.lt)),
        lambda c: (setattr(c.batch, "logp_train", trmask._arrays.ABSENT), setattr(c.batch, "logp_roll", trmask._arrays.ABSENT)),
        lambda c: (_values_input(c), c.want_weights()),  # weights need a log-ratio
    ],
    "TRM_E_BAD_ESTIMATOR": [
        lambda c: setattr(c.criteria[0], "estimator", 99),
        lambda c: setattr(c.criteria[0], "estimator", _ffi.ESTIMATORS["value"]),
        lambda c: setattr(c.criteria[1], "aggregation", _ffi.AGGREGATIONS["ser"]),  # SER is on tv, not k3
        lambda c: (c.ln_trm(), setattr(c.criteria[0], "estimator", _ffi.ESTIMATORS["k2"])),
    ],
    "TRM_E_BAD_AGGREGATION": [lambda c: setattr(c.criteria[1], "aggregation", -3)],
    "TRM_E_BAD_NAN_POLICY": [lambda c: setattr(c.options, "nan_policy", 3)],
    "TRM_E_BAD_THRESHOLD": [
        lambda c: setattr(c.criteria[0], "hi", math.nan),
        lambda c: (setattr(c.criteria[0], "lo", 1.0), setattr(c.criteria[0], "hi", 0.5)),
        lambda c: setattr(c.criteria[0], "hi", -0.1),
        lambda c: (setattr(c.criteria[1], "estimator", _ffi.ESTIMATORS["ratio"]), setattr(c.criteria[1], "lo", -1.0)),
    ],
    "TRM_E_BAD_OFFSETS": [
        lambda c: (_packed(c), c.offsets.__setitem__(1, 20)),
        lambda c: (_packed(c), c.offsets.__setitem__(0, -1)),
        lambda c: (_packed(c), c.offsets.__setitem__(3, 16)),
        lambda c: (_packed(c), setattr(c.batch, "offsets", trmask._arrays.ABSENT)),
        lambda c: setattr(c.batch, "offsets", c.view(c.offsets, _ffi.DTYPE_I64)),
    ],
    "TRM_E_BAD_LENGTHS": [
        lambda c: (c.lengths.__setitem__(0, 6), setattr(c.batch, "lengths", c.view(c.lengths, _ffi.DTYPE_I64))),
        lambda c: (c.lengths.__setitem__(2, -1), setattr(c.batch, "lengths", c.view(c.lengths, _ffi.DTYPE_I64))),
    ],
    "TRM_E_BAD_OPTION": [
        lambda c: setattr(c.options, "clamp", -1.0),
        lambda c: setattr(c.options, "clamp", math.nan),
        lambda c: setattr(c.options, "threads", -1),
        lambda c: setattr(c.options, "reject_empty", 2),
        lambda c: setattr(c.batch.logp_train, "reserved", 1),
        lambda c: setattr(c.out, "reserved", 1),
        lambda c: setattr(c.metrics, "reserved", 1),
        lambda c: (setattr(c.options, "binary_eps_set", 1), setattr(c.options, "binary_eps", 0.5)),
        lambda c: (setattr(c.options, "binary_eps_set", 1), setattr(c.options, "binary_eps", -1e-9)),
        lambda c: setattr(c.options, "binary_eps_set", 2),
        lambda c: setattr(c.options, "reserved", 1),
    ],
    # The 2026 rules (docs/rules-2026.md).
    "TRM_E_NEEDS_LOG_PROBS": [
        lambda c: (_log_ratio_input(c), setattr(c.criteria[0], "estimator", _ffi.ESTIMATORS["bkl_sym"])),
        lambda c: (_log_ratio_input(c), _advantages(c, "bdiff", 0.2, 0.2)),
        lambda c: (_values_input(c), _advantages(c, "ratio", 0.8, 1.25)),
    ],
    "TRM_E_BAD_ADVANTAGE_RULE": [
        lambda c: _advantages(c, "ratio", 0.0, 1.25),
        lambda c: _advantages(c, "bdiff", -0.1, 0.2),
        lambda c: _advantages(c, "bkl", 0.1, math.nan),
        lambda c: (_advantages(c, "bdiff", 0.2, 0.2), setattr(c.options.advantage, "statistic", 9)),
        lambda c: (_advantages(c, "bdiff", 0.2, 0.2), setattr(c.options.advantage, "zero_advantage", 2)),
        lambda c: (_advantages(c, "bdiff", 0.2, 0.2), setattr(c.options.advantage, "sequence", 3)),
        lambda c: (_advantages(c, "bdiff", 0.2, 0.2), setattr(c.options.advantage, "reserved", 1)),
        lambda c: setattr(c.options.advantage, "low", 0.1),  # bounds on no rule
        lambda c: (_row_advantages(c), setattr(c.options.advantage, "sequence", 1),
                   setattr(c.options.advantage, "sequence_limit", math.nan)),
    ],
    "TRM_E_NEEDS_ADVANTAGES": [
        lambda c: (_advantages(c, "ratio", 0.8, 1.25), setattr(c.batch, "advantages", trmask._arrays.ABSENT)),
        lambda c: setattr(c.batch, "advantages", c.view(c.lr)),  # without a rule
        lambda c: (_advantages(c, "bdiff", 0.2, 0.2), _row_advantages(c)),  # both kinds
        lambda c: (_advantages(c, "bdiff", 0.2, 0.2), setattr(c.options.advantage, "sequence", 1)),  # sequence needs rows
    ],
    "TRM_E_BAD_LENGTH_NEUTRAL": [
        lambda c: setattr(c.criteria[0], "kl_max", 0.01),  # on a max criterion
        lambda c: setattr(c.criteria[1], "eps", 0.05),
        lambda c: c.ln_trm(kl_max=0.0),
        lambda c: c.ln_trm(kl_max=math.inf),
        lambda c: c.ln_trm(kl_max=math.nan),
        lambda c: c.ln_trm(eps=-0.1),
        lambda c: c.ln_trm(eps=math.nan),
    ],
    "TRM_E_BAD_WEIGHT_RULE": [
        lambda c: c.want_weights((0, 0, 0.0, -1.0)),  # a negative cap (0 is the zeroed default: no cap)
        lambda c: c.want_weights((3, 0, 0.0, 2.0)),
        lambda c: c.want_weights((0, -1, 0.0, 2.0)),
        lambda c: c.want_weights((0, 0, 0.5, 2.0)),  # truncate takes no lo
        lambda c: c.want_weights((1, 1, 2.0, 1.0)),
        lambda c: c.want_weights((2, 2, -1.0, 1.0)),
        lambda c: c.want_weights((0, 1, 0.0, math.nan)),
    ],
}


def _log_ratio_input(call):
    call.batch.log_ratio, call.batch.logp_train, call.batch.logp_roll = call.batch.logp_train, trmask._arrays.ABSENT, trmask._arrays.ABSENT


def _advantages(call, statistic, low, high):
    """A token advantage rule with per-token advantages (the rollout log-probs stand in)."""
    rule = call.options.advantage
    rule.statistic, rule.low, rule.high = _ffi.ADVANTAGE_STATISTICS[statistic], low, high
    call.batch.advantages = call.view(call.lr)


def _row_advantages(call):
    call.row_advantages = np.ones(call.lt.shape[0], np.float64)  # kept alive by the call
    call.batch.row_advantages = _ffi.View(call.row_advantages.ctypes.data, _ffi.DTYPE_F64, 0, 0, 1)


def _values_input(call):
    call.batch.values, call.batch.logp_train, call.batch.logp_roll = call.batch.logp_train, trmask._arrays.ABSENT, trmask._arrays.ABSENT
    for c in call.criteria:
        c.estimator = _ffi.ESTIMATORS["value"]


@pytest.mark.parametrize("name,index", [(n, i) for n, breaks in BREAKS.items() for i in range(len(breaks))])
def test_bad_argument_gives_status_and_writes_nothing(name, index):
    call = Call()
    call.null = None
    BREAKS[name][index](call)
    status = call.run(batch=call.null != "batch")
    assert lib.trm_status_name(status).decode() == name
    assert call.untouched()


def test_null_options_and_outputs():
    call = Call()
    assert call.run(options=False) == HEADER_STATUS["TRM_E_NULL_POINTER"]
    assert call.run(out=False) == HEADER_STATUS["TRM_E_NULL_POINTER"]


def test_token_entry_points_validate():
    call = Call()
    out = np.zeros_like(call.lt)
    status = lib.trm_token_values(ctypes.byref(call.batch), 99, ctypes.byref(call.options), _ffi.Out(out.ctypes.data, 5, 1))
    assert status == HEADER_STATUS["TRM_E_BAD_ESTIMATOR"]
    status = lib.trm_token_values(ctypes.byref(call.batch), 2, ctypes.byref(call.options), _ffi.Out(out.ctypes.data, 5, 1))
    assert status == HEADER_STATUS["TRM_E_BAD_INPUTS"], "token values take no mask"
    call.batch.mask = trmask._arrays.ABSENT
    status = lib.trm_token_values(ctypes.byref(call.batch), 2, ctypes.byref(call.options), _ffi.Out(None, 5, 1))
    assert status == HEADER_STATUS["TRM_E_NULL_POINTER"]
    status = lib.trm_token_values(ctypes.byref(call.batch), 2, ctypes.byref(call.options), _ffi.Out(call.lr.ctypes.data, 5, 1))
    assert status == HEADER_STATUS["TRM_E_ALIASING"]
    keep = np.ones(3, np.uint8)
    grid = np.zeros((3, 5), np.uint8)
    keep_view = _ffi.View(keep.ctypes.data, _ffi.DTYPE_F32, 0, 0, 1)
    status = lib.trm_token_keep(ctypes.byref(call.batch), call.criteria, 2, ctypes.byref(call.options), keep_view,
                                _ffi.Out(grid.ctypes.data, 5, 1))
    assert status == HEADER_STATUS["TRM_E_BAD_DTYPE"]
    keep_view.dtype = _ffi.DTYPE_U8
    status = lib.trm_token_keep(ctypes.byref(call.batch), call.criteria, 2, ctypes.byref(call.options), keep_view,
                                _ffi.Out(keep.ctypes.data, 0, 1))
    assert status == HEADER_STATUS["TRM_E_BAD_STRIDE"], "a zero row stride makes rows overlap"
    status = lib.trm_token_keep(ctypes.byref(call.batch), call.criteria, 2, ctypes.byref(call.options), keep_view,
                                _ffi.Out(keep.ctypes.data, 5, 1))
    assert status == HEADER_STATUS["TRM_E_ALIASING"]
    status = lib.trm_token_keep(ctypes.byref(call.batch), call.criteria, 2, ctypes.byref(call.options), keep_view,
                                _ffi.Out(grid.ctypes.data, 5, 1))
    assert status == 0 and grid.all()


def test_importance_weights_entry_point_validates():
    call = Call()
    weights = np.full((3, 5), 7.0, np.float32)
    keep = np.ones(3, np.uint8)

    def run(rule=(0, 0, 0.0, 2.0), keep_view=_ffi.View(*_ffi.ABSENT_VIEW), out=_ffi.Out(weights.ctypes.data, 5, 1)):
        return lib.trm_importance_weights(ctypes.byref(call.batch), ctypes.byref(call.options), _ffi.WeightRule(*rule),
                                          keep_view, out)

    assert run(out=_ffi.Out(None, 5, 1)) == HEADER_STATUS["TRM_E_NULL_POINTER"]
    assert run(rule=(0, 0, 0.0, -1.0)) == HEADER_STATUS["TRM_E_BAD_WEIGHT_RULE"]
    assert run(keep_view=_ffi.View(keep.ctypes.data, _ffi.DTYPE_F32, 0, 0, 1)) == HEADER_STATUS["TRM_E_BAD_DTYPE"]
    assert run(keep_view=_ffi.View(keep.ctypes.data, _ffi.DTYPE_U8, 0, 1, 1)) == HEADER_STATUS["TRM_E_BAD_STRIDE"]
    assert run(keep_view=_ffi.View(None, _ffi.DTYPE_U8, 0, 0, 1)) == HEADER_STATUS["TRM_E_NULL_POINTER"]
    aliased = _ffi.View(weights.ctypes.data, _ffi.DTYPE_U8, 0, 0, 1)
    assert run(keep_view=aliased) == HEADER_STATUS["TRM_E_ALIASING"]
    assert run(out=_ffi.Out(call.lt.ctypes.data, 5, 1)) == HEADER_STATUS["TRM_E_ALIASING"]
    assert (weights == 7).all(), "a refused call wrote weights"
    _values_input(call)
    assert run() == HEADER_STATUS["TRM_E_BAD_INPUTS"]
    call = Call()
    keep[1] = 0
    assert run(keep_view=_ffi.View(keep.ctypes.data, _ffi.DTYPE_U8, 0, 0, 1)) == 0
    assert (weights[1] == 0).all() and (weights[[0, 2]] > 0).all()


def test_internal_error_is_never_returned_by_construction():
    """TRM_E_INTERNAL exists for bugs; no code path returns it. The sources prove it: the only
    mention of the case outside its declaration would be a `return`/`throw`."""
    sources = "\n".join(p.read_text() for p in (ROOT / "Sources").rglob("*.swift"))
    uses = [line for line in sources.splitlines() if "internalError" in line]
    assert all("case internalError" in line or "case .internalError:" in line for line in uses), uses
