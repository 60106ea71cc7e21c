"""The ctypes view of include/trmask.h: struct layouts, constants, and one table of function
signatures applied once at import. Keep in step with the header (a test compares them)."""

from __future__ import annotations

import ctypes
import struct
from ctypes import POINTER, c_char_p, c_double, c_int32, c_int64, c_uint32, c_void_p

from . import _loader

# Element types (TRM_DTYPE_*).
DTYPE_NONE, DTYPE_F32, DTYPE_F64, DTYPE_F16, DTYPE_BF16, DTYPE_U8, DTYPE_BOOL, DTYPE_I32, DTYPE_I64 = range(9)
DTYPE_I8, DTYPE_I16, DTYPE_U16, DTYPE_U32, DTYPE_U64 = range(9, 14)
# Layouts (TRM_LAYOUT_*).
LAYOUT_PADDED, LAYOUT_PACKED = 0, 1
# Estimators (TRM_EST_*), aggregations (TRM_AGG_*) and NaN policies (TRM_NAN_*), by name.
ESTIMATORS = {"delta": 0, "k1": 1, "k2": 2, "k3": 3, "abs": 4, "ratio": 5, "tv": 6, "value": 7,
              "bdiff": 8, "btv": 9, "bkl": 10, "bkl_tr": 11, "bkl_sym": 12}
#: The binary estimators (semantics §4.7): functions of p_t and p_r, which need both log-probs.
BINARY_ESTIMATORS = ("bdiff", "btv", "bkl", "bkl_tr", "bkl_sym")
AGGREGATIONS = {"max": 0, "min": 1, "sum": 2, "mean": 3, "token": 4, "ser": 5, "ln_trm": 6, "geo": 7}
NAN_POLICIES = {"reject": 0, "skip": 1, "zero": 2}
# Advantage rules (TRM_ADV_*, TRM_ADV_ZERO_*; semantics §4.8).
ADVANTAGE_STATISTICS = {"none": 0, "bdiff": 1, "bkl": 2, "ratio": 3}
ZERO_ADVANTAGE = {"lower": 0, "keep": 1}
#: The advantage rule's counts (trm_mask_out_t.advantage_counts), in order.
ADVANTAGE_COUNTS = ("adv_masked_upper", "adv_masked_lower", "adv_masked_positive", "adv_masked_negative",
                    "adv_rows_rejected")
# Importance weight levels (TRM_WEIGHT_*) and modes (TRM_WEIGHT_MODE_*).
WEIGHT_LEVELS = {"token": 0, "sequence": 1, "geometric": 2}
WEIGHT_MODES = {"truncate": 0, "clip": 1, "mask": 2}
#: TRM_MAX_CRITERIA: the length of the per-criterion arrays of trm_metrics_t.
MAX_CRITERIA = 64


class View(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("dtype", c_int32), ("reserved", c_int32),
                ("stride_row", c_int64), ("stride_col", c_int64)]


class Out(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("stride_row", c_int64), ("stride_col", c_int64)]


class Batch(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("layout", c_int32), ("n_rows", c_int64), ("n_cols", c_int64),
                ("logp_train", View), ("logp_roll", View), ("log_ratio", View), ("values", View),
                ("mask", View), ("lengths", View), ("offsets", View), ("advantages", View), ("row_advantages", View)]


class AdvantageRule(ctypes.Structure):
    _fields_ = [("statistic", c_int32), ("zero_advantage", c_int32), ("low", c_double), ("high", c_double),
                ("sequence", c_int32), ("reserved", c_int32), ("sequence_limit", c_double)]


class Options(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("nan_policy", c_int32), ("clamp", c_double),
                ("reject_empty", c_int32), ("threads", c_int32),
                ("binary_eps_set", c_int32), ("reserved", c_int32), ("binary_eps", c_double),
                ("advantage", AdvantageRule)]


class CCriterion(ctypes.Structure):
    _fields_ = [("aggregation", c_int32), ("estimator", c_int32), ("lo", c_double), ("hi", c_double),
                ("kl_max", c_double), ("eps", c_double)]


class WeightRule(ctypes.Structure):
    _fields_ = [("level", c_int32), ("mode", c_int32), ("lo", c_double), ("hi", c_double)]


#: The scalar fields of trm_metrics_t after struct_size and reserved: counts, then doubles.
METRIC_COUNTS = ("n_rows", "n_rows_nonempty", "n_tokens", "n_rows_kept", "n_tokens_kept", "max_len")
#: The drift metrics of the semantics §9 additions (doubles appended after n_tokens_rejected).
DRIFT_METRICS = ("delta_mean", "delta_abs_mean", "k3_clamped_token_mean", "k3_clamped_row_mean")
METRIC_DOUBLES = ("masked_row_fraction", "log_ppl_abs_diff", "kl_k1", "kl_k3", "chi2_token", "plugin_kl_max",
                  "plugin_kl_seq")


class Metrics(ctypes.Structure):
    _fields_ = ([("struct_size", c_uint32), ("reserved", c_int32)] + [(key, c_int64) for key in METRIC_COUNTS]
                + [(key, c_double) for key in METRIC_DOUBLES]
                + [("token_mean", c_double * 8), ("token_max", c_double * 8), ("row_mean", c_double * MAX_CRITERIA),
                   ("row_max", c_double * MAX_CRITERIA), ("row_min", c_double * MAX_CRITERIA),
                   ("binary_token_mean", c_double * 5), ("binary_token_max", c_double * 5),
                   ("n_positions", c_int64), ("n_tokens_rejected", c_int64)]
                + [(key, c_double) for key in DRIFT_METRICS])


class MaskOut(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32), ("keep_row", Out), ("count", Out),
                ("nonfinite", Out), ("row_stats", Out), ("keep_token", Out), ("rejected", c_void_p),
                ("weights", Out), ("weight_rule", WeightRule), ("metrics", c_void_p), ("advantage_counts", c_void_p)]


def _pack_format(structure) -> str:
    """A `struct` format with the layout of a ctypes Structure (native alignment, flattened
    nested structures), so a hot path can fill one with a single `pack_into` call."""
    codes = {c_uint32: "I", c_int32: "i", c_int64: "q", c_double: "d", c_void_p: "P"}
    return "".join(_pack_format(kind) if issubclass(kind, ctypes.Structure) else codes[kind]
                   for _, kind in structure._fields_)


def _packer(structure) -> struct.Struct:
    packer = struct.Struct("@" + _pack_format(structure))
    if packer.size != ctypes.sizeof(structure):
        raise ImportError(f"trmask: the pack format of {structure.__name__} does not match its ctypes layout")
    return packer


#: Fill a Batch / MaskOut in one call: ``BATCH_PACKER.pack_into(Batch(), 0, *fields)``.
BATCH_PACKER = _packer(Batch)
MASK_OUT_PACKER = _packer(MaskOut)
#: The fields of an absent View.
ABSENT_VIEW = (0, DTYPE_NONE, 0, 0, 0)


class Partials(ctypes.Structure):
    """trm_partials_t: per-row partials of some estimators (docs/semantics.md §3, partial rows)."""
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32), ("n_rows", c_int64), ("n_estimators", c_int64),
                ("estimators", POINTER(c_int32)), ("count", Out), ("nonfinite", Out), ("sum", Out), ("max", Out),
                ("min", Out)]


class BoundInputs(ctypes.Structure):
    """trm_bound_inputs_t: NaN in ``eps`` / ``tv_seq`` = derive them (docs/semantics.md §7)."""
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32), ("T", c_int64), ("kl_max", c_double),
                ("kl_seq", c_double), ("eps", c_double), ("tv_seq", c_double), ("reward_range", c_double),
                ("dbar", POINTER(c_double)), ("dbar_count", c_int64)]


#: The fields of trm_bounds_t after struct_size and reserved, in order (the keys of bounds.json).
BOUND_KEYS = ("classical_tv", "classical_kl", "coupling", "pm_kl", "pm_tv", "mixed_kl", "mixed_tv", "linear",
              "adaptive", "unified")


class BoundsOut(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32)] + [(key, c_double) for key in BOUND_KEYS]


class View3(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("dtype", c_int32), ("reserved", c_int32),
                ("stride_row", c_int64), ("stride_col", c_int64), ("stride_depth", c_int64)]


class LogitPair(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32), ("n_rows", c_int64), ("n_cols", c_int64),
                ("vocab", c_int64), ("rollout", View3), ("train", View3), ("mask", View), ("token_ids", View)]


class LogitOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("threads", c_int32), ("temperature", c_double)]


class ExactKLOut(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32), ("kl", Out), ("tv", Out),
                ("logp_roll_token", Out), ("logp_train_token", Out)]


class TopKBatch(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32), ("n_rows", c_int64), ("n_cols", c_int64),
                ("vocab", c_int64), ("k", c_int64), ("rollout_logprobs", View3), ("rollout_ids", View3),
                ("train", View3), ("mask", View)]


# Rollout correction in verl's arithmetic: rejection levels (TRM_REJECT_*) and the struct layouts.
REJECTION_LEVELS = {"token": 0, "seq_sum": 1, "seq_mean": 2, "seq_max": 3}
#: TRM_MAX_REJECTIONS: the length of trm_correction_stats_t.rejections.
MAX_REJECTIONS = 16


class CRejection(ctypes.Structure):
    _fields_ = [("level", c_int32), ("estimator", c_int32), ("lo", c_double), ("hi", c_double)]


class TypedOut(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("dtype", c_int32), ("reserved", c_int32),
                ("stride_row", c_int64), ("stride_col", c_int64)]


class CorrectionConfig(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("compute_dtype", c_int32), ("mean_dtype", c_int32),
                ("mask_weights", c_int32), ("clamp", c_double), ("threads", c_int32), ("n_rejections", c_int32),
                ("rejections", c_void_p), ("weights", c_int32), ("normalize", c_int32), ("weight_rule", WeightRule)]


#: The fields of trm_weight_stats_t, trm_rejection_stats_t and trm_offpolicy_stats_t, in order.
WEIGHT_STAT_KEYS = ("mean", "max", "min", "std", "eff_sample_size", "ratio_fraction_high", "ratio_fraction_low",
                    "seq_mean", "seq_std", "seq_max", "seq_min", "seq_max_deviation", "seq_fraction_high",
                    "seq_fraction_low", "oob_ratio", "norm_sum", "norm_count", "norm_factor")
REJECTION_STAT_KEYS = ("mean", "max", "min", "std", "fraction_high", "fraction_low", "seq_mean", "seq_std", "seq_max",
                       "seq_min", "seq_max_deviation", "seq_fraction_high", "seq_fraction_low", "masked_fraction",
                       "seq_masked_fraction")
OFFPOLICY_STAT_KEYS = ("kl", "k3_kl", "training_ppl", "training_log_ppl", "rollout_ppl", "rollout_log_ppl",
                       "log_ppl_diff", "log_ppl_abs_diff", "log_ppl_diff_max", "log_ppl_diff_min", "ppl_ratio",
                       "chi2_token", "chi2_seq")


class WeightStats(ctypes.Structure):
    _fields_ = [(key, c_double) for key in WEIGHT_STAT_KEYS]


class RejectionStats(ctypes.Structure):
    _fields_ = [(key, c_double) for key in REJECTION_STAT_KEYS]


class OffPolicyStats(ctypes.Structure):
    _fields_ = [(key, c_double) for key in OFFPOLICY_STAT_KEYS]


class CorrectionStats(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32), ("n_rows", c_int64), ("n_rows_valid", c_int64),
                ("n_tokens_valid", c_int64), ("mask_sum", c_double), ("masked_fraction", c_double),
                ("seq_masked_fraction", c_double), ("weights", WeightStats), ("offpolicy", OffPolicyStats),
                ("rejections", RejectionStats * MAX_REJECTIONS)]


#: TRM_CORRECTION_ROW_FIELDS, TRM_CORRECTION_OPTION_FIELDS, TRM_MAX_CORRECTION_SHARDS.
CORRECTION_ROW_FIELDS = 18
CORRECTION_OPTION_FIELDS = 10
MAX_CORRECTION_SHARDS = 65536


def correction_row_width(n_rejections: int) -> int:
    """TRM_CORRECTION_ROW_WIDTH: doubles per row record."""
    return CORRECTION_ROW_FIELDS + CORRECTION_OPTION_FIELDS * n_rejections


class CorrectionRows(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("n_rows", c_int64), ("mask_dtype", c_int32), ("weights_dtype", c_int32),
                ("log_probs", c_int32), ("reserved", c_int32)]


class CorrectionOut(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32), ("mask", TypedOut), ("keep_row", Out),
                ("weights", TypedOut), ("stats", c_void_p), ("rows", CorrectionRows)]


class Groups(ctypes.Structure):
    """trm_groups_t: GRPO group advantages over the rows that vote (semantics §4.10)."""
    _fields_ = [("struct_size", c_uint32), ("reserved", c_int32), ("n_rows", c_int64), ("group", View), ("reward", View),
                ("keep", View), ("no_std_normalization", c_int32), ("singleton", c_int32), ("eps_set", c_int32),
                ("reserved2", c_int32), ("eps", c_double)]


#: The counts of trm_group_out_t, in order.
GROUP_COUNTS = ("n_groups", "n_groups_no_voter", "n_groups_one_voter", "n_rows_nonfinite_reward")
SINGLETON_RULES = {"zero": 0, "raw": 1}


class GroupOut(ctypes.Structure):
    _fields_ = ([("struct_size", c_uint32), ("reserved", c_int32), ("advantages", Out), ("voters", Out), ("mean", Out),
                 ("std", Out)] + [(key, c_int64) for key in GROUP_COUNTS])


_status = c_int32
# Pointer arguments are plain addresses: ctypes converts `byref(x)`, arrays and ints to c_void_p
# several times faster than to a typed POINTER (a tiny batch's call is a few microseconds).
_pointer = c_void_p
_FUNCTIONS = [
    ("trm_abi_version", [], c_uint32),
    ("trm_version", [], c_char_p),
    ("trm_status_string", [_status], c_char_p),
    ("trm_status_name", [_status], c_char_p),
    ("trm_mask", [_pointer, _pointer, c_int64, _pointer, _pointer], _status),
    ("trm_token_keep", [_pointer, _pointer, c_int64, _pointer, View, Out], _status),
    ("trm_token_values", [_pointer, c_int32, _pointer, Out], _status),
    ("trm_importance_weights", [_pointer, _pointer, WeightRule, View, Out], _status),
    # Error bounds (docs/semantics.md §7).
    ("trm_bounds_compute", [_pointer, _pointer], _status),
    # Exact per-position divergence from logits (docs/semantics.md §6).
    ("trm_exact_kl", [_pointer, _pointer, _pointer], _status),
    ("trm_topk_kl_lower_bound", [_pointer, _pointer, Out], _status),
    # Sharded rows (docs/semantics.md §3, partial rows).
    ("trm_partials_compute", [_pointer, _pointer, _pointer], _status),
    ("trm_partials_merge", [_pointer, _pointer, _pointer], _status),
    ("trm_partials_decide", [_pointer, _pointer, c_int64, _pointer, _pointer], _status),
    # Rollout correction in verl's arithmetic.
    ("trm_rollout_correction", [_pointer, _pointer, _pointer], _status),
    ("trm_weights_divide", [c_int32, c_int64, c_int64, View, c_double, TypedOut], _status),
    ("trm_correction_reduce", [_pointer, _pointer, c_int64, _pointer], _status),
    # GRPO group advantages (semantics §4.10).
    ("trm_group_advantages", [_pointer, _pointer], _status),
]

lib = _loader.load()
for _name, _argtypes, _restype in _FUNCTIONS:
    _function = getattr(lib, _name)
    _function.argtypes = _argtypes
    _function.restype = _restype
