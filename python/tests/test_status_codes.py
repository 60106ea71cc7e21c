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
    assert len(set(codes)) == len(codes), "codes are distinct"
    assert codes[:21] == list(range(21)), "codes 0-20 are pinned"  # 21-23 are reserved by another branch
    for name, code in HEADER_STATUS.items():
        assert lib.trm_status_name(code).decode() == name
        assert lib.trm_status_string(code).decode()
    for unknown in (-1, max(codes) + 1, 2**31 - 1):
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
        self.batch = _ffi.Batch(ctypes.sizeof(_ffi.Batch), _ffi.LAYOUT_PADDED, rows, cols,
                                self.view(self.lt), self.view(self.lr), trmask._arrays.ABSENT, trmask._arrays.ABSENT,
                                self.view(self.mask, _ffi.DTYPE_U8), trmask._arrays.ABSENT, trmask._arrays.ABSENT)
        self.criteria = (_ffi.CCriterion * 2)(_ffi.CCriterion(0, 2, -math.inf, 0.1), _ffi.CCriterion(3, 3, -math.inf, 0.002))
        self.n_criteria = 2
        self.options = _ffi.Options(ctypes.sizeof(_ffi.Options), 0, math.inf, 0, 0)
        self.out = _ffi.MaskOut(ctypes.sizeof(_ffi.MaskOut), 0, _ffi.Out(self.keep.ctypes.data, 1, 0),
                                _ffi.Out(self.count.ctypes.data, 1, 0), _ffi.Out(None, 0, 0),
                                _ffi.Out(self.stats.ctypes.data, 2, 1), _ffi.Out(None, 0, 0), self.rejected.ctypes.data)

    @staticmethod
    def view(a, dtype=_ffi.DTYPE_F32):
        strides = [s // a.itemsize for s in a.strides]
        return _ffi.View(a.ctypes.data, dtype, 0, *(strides if a.ndim == 2 else [0] + strides))

    def run(self, batch=True, options=True, out=True):
        return lib.trm_mask(ctypes.byref(self.batch) if batch else None, self.criteria if self.n_criteria else None,
                            self.n_criteria, ctypes.byref(self.options) if options else None,
                            ctypes.byref(self.out) if out else None)

    def untouched(self):
        return (self.keep == 7).all() and (self.count == -1).all() and (self.stats == 7).all() and (self.rejected == -1).all()


def test_valid_call_succeeds():
    call = Call()
    assert call.run() == 0
    assert set(call.keep) <= {0, 1} and (call.count == 5).all()


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
    ],
    "TRM_E_OUT_OF_RANGE": [
        lambda c: setattr(c.batch.logp_train, "stride_col", 2**61),
        lambda c: setattr(c.batch.logp_roll, "stride_row", -(2**62)),
        lambda c: setattr(c.out.count, "stride_row", 2**61),
    ],
    "TRM_E_ALIASING": [
        lambda c: setattr(c.out.count, "data", c.lt.ctypes.data),
        lambda c: setattr(c.out, "rejected", c.count.ctypes.data),
    ],
    "TRM_E_BAD_LAYOUT": [lambda c: setattr(c.batch, "layout", 7)],
    "TRM_E_BAD_INPUTS": [
        lambda c: setattr(c.batch, "logp_roll", trmask._arrays.ABSENT),
        lambda c: setattr(c.batch, "log_ratio", c.view(c.lt)),
        lambda c: (setattr(c.batch, "logp_train", trmask._arrays.ABSENT), setattr(c.batch, "logp_roll", trmask._arrays.ABSENT)),
    ],
    "TRM_E_BAD_ESTIMATOR": [
        lambda c: setattr(c.criteria[0], "estimator", 99),
        lambda c: setattr(c.criteria[0], "estimator", _ffi.ESTIMATORS["value"]),
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
        lambda c: setattr(c.options, "clamp", 0.0),
        lambda c: setattr(c.options, "clamp", math.nan),
        lambda c: setattr(c.options, "threads", -1),
        lambda c: setattr(c.options, "reject_empty", 2),
        lambda c: setattr(c.batch.logp_train, "reserved", 1),
        lambda c: setattr(c.out, "reserved", 1),
    ],
}


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


def test_internal_error_is_never_returned_by_construction():
    """TRM_E_INTERNAL exists for bugs; no code path returns it. The sources prove it: the only
    mention of the case outside its declaration would be a `return`/`throw`."""
    sources = "\n".join(p.read_text() for p in (ROOT / "Sources").rglob("*.swift"))
    uses = [line for line in sources.splitlines() if "internalError" in line]
    assert all("case internalError" in line or "case .internalError:" in line for line in uses), uses
