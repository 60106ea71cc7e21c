"""Audit a saved batch: mask, metrics, length bias and plug-in error bounds (`trmask audit`).

A batch file is a ``.npz`` (numpy) or ``.pt`` (torch, a dict of tensors) holding ``logp_train``
and ``logp_roll`` (float ``[rows, tokens]``, the log-probs of the sampled tokens under the training
and the rollout engine), or ``log_ratio`` (``logp_train - logp_roll``), and optionally a mask
(``[rows, tokens]``, nonzero = a token that counts) and ``lengths`` (``[rows]``: the first
``lengths[i]`` tokens of row ``i`` count). The names trainers save under are accepted too
(`KEY_NAMES`: verl's ``old_log_probs``, ``rollout_log_probs``, ``response_mask``; TRL's
``old_per_token_logps``, ``sampling_per_token_logps``, ``completion_mask``, ``attention_mask``).
Any other key is refused unless the caller asks to ignore unknown keys.

The batch is processed in chunks of rows; every per-row result (counts, statistics, keep
decisions) depends on its row alone, so the chunked results equal one call on the whole batch.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._api import MaskResult, trust_region_mask
from ._bounds import PluginBounds, plugin_bounds
from ._criteria import Criterion, normalize_criteria
from .errors import MissingDependencyError, TrmaskError

#: Statistics the audit needs whatever the criteria (infinite bounds: they test nothing).
STATS_CRITERIA = (Criterion("max", "k2"), Criterion("mean", "k3"), Criterion("sum", "k3"))
#: Tokens per chunk when the chunk size is automatic.
CHUNK_TOKENS = 1 << 22
_DATA_NAMES = ("logp_train", "logp_roll", "log_ratio")
#: Every key a batch file may hold, by the role it plays, in order of preference: the first name
#: present is used. verl saves old_log_probs (the training engine's log-probs of the rollout's
#: tokens), rollout_log_probs (vLLM/SGLang's) and response_mask; TRL old_per_token_logps,
#: sampling_per_token_logps and completion_mask. A full-sequence attention_mask (prompt and
#: response) is used only when its shape matches the log-probs and no response mask is there.
KEY_NAMES = {
    "logp_train": ("logp_train", "old_log_probs", "old_log_prob", "old_per_token_logps"),
    "logp_roll": ("logp_roll", "rollout_log_probs", "rollout_log_prob", "sampling_per_token_logps"),
    "log_ratio": ("log_ratio",),
    "mask": ("mask", "response_mask", "completion_mask", "attention_mask"),
    "lengths": ("lengths",),
}
_EXPECTED = ("expected `logp_train` and `logp_roll` (float [rows, tokens]), or `log_ratio` (float [rows, tokens]), "
             "and optionally `mask` ([rows, tokens], nonzero = valid) and `lengths` ([rows]); trainers' names are "
             "accepted too (docs/bounds-and-audit.md)")


@dataclass
class LoadedBatch:
    """A padded batch ready for the mask: float32 ``[rows, tokens]`` data, an optional bool
    mask, and notes on any conversion made while loading."""

    path: str
    logp_train: Optional[np.ndarray] = None
    logp_roll: Optional[np.ndarray] = None
    log_ratio: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    lengths: Optional[np.ndarray] = None
    notes: list = field(default_factory=list)

    @property
    def source(self) -> str:
        return "log_ratio" if self.log_ratio is not None else "logp_train - logp_roll"

    @property
    def shape(self) -> tuple:
        return (self.log_ratio if self.log_ratio is not None else self.logp_train).shape


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise TrmaskError(f"{path}: cannot read it as a .npz archive of arrays ({error})") from None


def _read_pt(path: Path) -> dict:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(f"{path}: reading .pt files needs torch: install torch "
                                     "(pip install 'trmask[torch]'), or save the batch with numpy.savez") from None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types (pickle, zip, runtime) for a bad file
        raise TrmaskError(f"{path}: cannot read it with torch.load ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict) or not all(isinstance(k, str) for k in content):
        raise TrmaskError(f"{path}: holds a {type(content).__name__}; expected a dict of tensors, "
                          "e.g. torch.save({'logp_train': lt, 'logp_roll': lr, 'mask': m}, path)")
    arrays = {}
    for name, value in content.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype in (torch.bfloat16, torch.float16):
                value = value.float()  # numpy has no bfloat16; float32 holds both exactly
            value = value.numpy()
        arrays[name] = value
    return arrays


def _bfloat16_from_void(name: str, array: np.ndarray, path: str, notes: list) -> np.ndarray:
    """numpy.savez stores an ml_dtypes bfloat16 array as raw 2-byte records (``|V2``): read them
    back as bfloat16 when ml_dtypes is installed."""
    try:
        import ml_dtypes
    except ImportError:
        raise TrmaskError(f"{path}: `{name}` has dtype {array.dtype.str} (raw 2-byte records: numpy.savez stores "
                          "bfloat16 arrays this way); install ml_dtypes (pip install ml_dtypes) to read it as "
                          "bfloat16, or save it as float32 (x.astype(np.float32), or tensor.float().numpy())") from None
    notes.append(f"{name} {array.dtype.str} read as bfloat16")
    return array.view(ml_dtypes.bfloat16)


def _float32(name: str, array: Any, path: str, notes: list) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TrmaskError(f"{path}: `{name}` is a {type(array).__name__}; expected a float array [rows, tokens]")
    if array.ndim != 2:
        raise TrmaskError(f"{path}: `{name}` has shape {array.shape}; expected 2-D [rows, tokens]")
    if array.dtype.kind == "V" and array.dtype.itemsize == 2 and array.dtype.names is None:
        array = _bfloat16_from_void(name, array, path, notes)
    if array.dtype.name == "bfloat16":
        notes.append(f"{name} bfloat16 widened to float32 (exact)")
        return array.astype(np.float32)
    if array.dtype.kind != "f":
        raise TrmaskError(f"{path}: `{name}` has dtype {array.dtype}; expected floating point (float32 preferred)")
    if array.dtype != np.float32:
        notes.append(f"{name} {array.dtype} rounded to float32")
        array = array.astype(np.float32)
    return array


def _pick_names(arrays: dict, path: Path, ignore_unknown: bool) -> tuple:
    """``{role: key}`` for the keys this file uses, and notes on the keys it holds but does not use.
    Refuses two names for one role (except masks: the first in `KEY_NAMES` order wins) and, unless
    `ignore_unknown`, any key no role knows."""
    known = {name for names in KEY_NAMES.values() for name in names}
    unknown = sorted(set(arrays) - known)
    if unknown and not ignore_unknown:
        recognised = "; ".join(f"{role}: {', '.join(names)}" for role, names in KEY_NAMES.items())
        raise TrmaskError(f"{path}: unknown keys {', '.join(unknown)}; the audit reads {recognised}. "
                          "Rename them, or pass --ignore-unknown-keys to audit without them")
    picked, notes = {}, []
    for role, names in KEY_NAMES.items():
        present = [name for name in names if name in arrays]
        if len(present) > 1 and role != "mask":
            raise TrmaskError(f"{path}: has {' and '.join(f'`{n}`' for n in present)}, two names for {role}; keep one")
        if present:
            picked[role] = present[0]
            notes += [f"{name} not used ({present[0]} is the mask)" for name in present[1:]]
    if unknown:
        notes.append(f"ignored: {', '.join(unknown)}")
    return picked, notes


def _mask(arrays: dict, key: str, shape: tuple, path: Path, notes: list) -> np.ndarray:
    mask = arrays[key]
    if not isinstance(mask, np.ndarray) or mask.shape != shape:
        got = getattr(mask, "shape", type(mask).__name__)
        hint = (" (attention_mask covers prompt and response; save the response mask as response_mask)"
                if key == "attention_mask" else "")
        raise TrmaskError(f"{path}: `{key}` has shape {got}; expected {shape} like the data{hint}")
    if mask.dtype.kind not in "biuf":
        raise TrmaskError(f"{path}: `{key}` has dtype {mask.dtype}; expected bool, integer or float (nonzero = valid)")
    if key != "mask":
        notes.append(f"mask from {key}")
    if mask.dtype not in (np.bool_, np.uint8):
        notes_binary = "" if np.isin(mask, (0, 1)).all() else ", non-binary values count as valid"
        notes.append(f"{key} {mask.dtype} read as nonzero = valid{notes_binary}")
        mask = mask != 0
    return mask


def _lengths(arrays: dict, rows: int, cols: int, path: Path) -> np.ndarray:
    lengths = arrays["lengths"]
    if not isinstance(lengths, np.ndarray) or lengths.shape != (rows,) or lengths.dtype.kind not in "iu":
        got = f"shape {lengths.shape} and dtype {lengths.dtype}" if isinstance(lengths, np.ndarray) else type(lengths).__name__
        raise TrmaskError(f"{path}: `lengths` has {got}; expected integers [{rows}], one per row")
    if lengths.size and (lengths.min() < 0 or lengths.max() > cols):
        raise TrmaskError(f"{path}: `lengths` must lie in 0..{cols} (tokens per row)")
    return lengths.astype(np.int64)


def load_batch(path: Any, *, ignore_unknown: bool = False) -> LoadedBatch:
    """Reads and checks a saved batch (see the module docstring). Raises `TrmaskError` with a
    message naming the file and the array at fault (an unknown key too, unless
    ``ignore_unknown``), or `MissingDependencyError` for a ``.pt`` file without torch."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".pt"):
        raise TrmaskError(f"{path}: unknown extension {path.suffix!r}; expected .npz (numpy.savez) or .pt (torch.save)")
    if not path.is_file():
        raise TrmaskError(f"{path}: no such file")
    arrays = _read_npz(path) if suffix == ".npz" else _read_pt(path)
    found = ", ".join(sorted(arrays)) or "none"
    picked, notes = _pick_names(arrays, path, ignore_unknown)
    has = {name: name in picked for name in _DATA_NAMES}
    if has["log_ratio"] and (has["logp_train"] or has["logp_roll"]):
        raise TrmaskError(f"{path}: has both `log_ratio` and log-probs; keep one source ({_EXPECTED})")
    if has["logp_train"] != has["logp_roll"]:
        present, absent = ("logp_train", "logp_roll") if has["logp_train"] else ("logp_roll", "logp_train")
        key = picked[present]
        raise TrmaskError(f"{path}: has `{key}`{'' if key == present else f' ({present})'} but not `{absent}` "
                          f"(arrays found: {found}); {_EXPECTED}")
    if not any(has.values()):
        raise TrmaskError(f"{path}: arrays found: {found}; {_EXPECTED}")
    batch = LoadedBatch(str(path))
    for role in _DATA_NAMES:
        if has[role]:
            key = picked[role]
            if key != role:
                batch.notes.append(f"{role} from {key}")
            setattr(batch, role, _float32(key, arrays[key], str(path), batch.notes))
    if has["logp_train"] and batch.logp_roll.shape != batch.logp_train.shape:
        raise TrmaskError(f"{path}: `{picked['logp_roll']}` has shape {batch.logp_roll.shape} but "
                          f"`{picked['logp_train']}` has {batch.logp_train.shape}; expected the same [rows, tokens]")
    if "mask" in picked:
        batch.mask = _mask(arrays, picked["mask"], batch.shape, path, batch.notes)
    if "lengths" in picked:
        batch.lengths = _lengths(arrays, *batch.shape, path)
    batch.notes += notes
    return batch


class Progress:
    """Progress of the chunks on stderr: tqdm when it is installed, else one updating line."""

    def __init__(self, total: int, label: str):
        self.total = total
        self.done = 0
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
            self.label = label
            self._draw()
        else:
            self.bar = tqdm(total=total, desc=label, unit="chunk", file=sys.stderr)

    def _draw(self) -> None:
        sys.stderr.write(f"\r{self.label}: chunk {self.done}/{self.total} ({self.done / max(self.total, 1):.0%})")
        sys.stderr.flush()

    def update(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        else:
            self._draw()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()


@dataclass
class AuditResult:
    """What `audit` returns: per-row arrays over the whole batch and the summary the report
    prints (`to_dict` gives the summary as JSON-ready values). ``plugin_all`` and
    ``plugin_kept`` are plug-in estimates: their ``kl_max`` is a batch maximum, not the maximum
    token KL over all reachable contexts that the theorems need (docs/semantics.md §7)."""

    path: str
    source: str
    rows: int
    cols: int
    notes: list
    criteria: tuple
    nan_policy: str
    clamp: Optional[float]
    keep_row: np.ndarray
    count: np.ndarray
    nonfinite: np.ndarray
    rejected: tuple
    row_stats: tuple
    max_k2: np.ndarray
    mean_k3: np.ndarray
    sum_k3: np.ndarray
    tokens_kept: int
    chunks: int
    plugin_all: Optional[PluginBounds]
    plugin_kept: Optional[PluginBounds]
    plugin_error: Optional[str]
    plugin_kept_error: Optional[str]
    length_bias: list

    @property
    def rows_nonempty(self) -> int:
        return int((self.count > 0).sum())

    @property
    def tokens(self) -> int:
        return int(self.count.sum())

    @property
    def min_length(self) -> int:
        nonempty = self.count[self.count > 0]
        return int(nonempty.min()) if nonempty.size else 0

    @property
    def max_length(self) -> int:
        return int(self.count.max()) if self.count.size else 0

    @property
    def rows_kept(self) -> int:
        return int(self.keep_row.sum())

    @property
    def masked_row_fraction(self) -> float:
        return 1 - self.rows_kept / self.rows if self.rows else 0.0

    @property
    def masked_token_fraction(self) -> float:
        return 1 - self.tokens_kept / self.tokens if self.tokens else 0.0

    def _finite_nonempty(self, values: np.ndarray) -> np.ndarray:
        values = values[self.count > 0].astype(np.float64)
        return values[np.isfinite(values)]

    @property
    def batch_max_max_k2(self) -> float:
        finite = self._finite_nonempty(self.max_k2)
        return float(finite.max()) if finite.size else math.nan

    @property
    def mean_mean_k3(self) -> float:
        finite = self._finite_nonempty(self.mean_k3)
        return float(finite.mean()) if finite.size else math.nan

    @property
    def rows_nonfinite(self) -> int:
        return int((self.nonfinite > 0).sum())

    @property
    def tokens_nonfinite(self) -> int:
        return int(self.nonfinite.sum())

    def to_dict(self) -> dict:
        return _json_ready({
            "file": self.path, "source": self.source, "shape": [self.rows, self.cols], "notes": self.notes,
            "criteria": [str(c) for c in self.criteria], "nan_policy": self.nan_policy, "clamp": self.clamp,
            "chunks": self.chunks, "rows": self.rows, "rows_nonempty": self.rows_nonempty, "tokens": self.tokens,
            "min_length": self.min_length, "max_length": self.max_length, "rows_kept": self.rows_kept,
            "rows_rejected": self.rows - self.rows_kept, "tokens_kept": self.tokens_kept,
            "masked_row_fraction": self.masked_row_fraction, "masked_token_fraction": self.masked_token_fraction,
            "rejected_per_criterion": {str(c): r for c, r in zip(self.criteria, self.rejected)},
            "batch_max_max_k2": self.batch_max_max_k2, "mean_mean_k3": self.mean_mean_k3,
            "rows_nonfinite": self.rows_nonfinite, "tokens_nonfinite": self.tokens_nonfinite,
            "length_bias": self.length_bias,
            "plugin_bounds": {
                "all_rows": self.plugin_all.to_dict() if self.plugin_all else None,
                "kept_rows": self.plugin_kept.to_dict() if self.plugin_kept else None,
                "all_rows_error": self.plugin_error,
                "kept_rows_error": self.plugin_kept_error,
            },
        })


def _json_ready(value: Any) -> Any:
    """Non-finite floats as the strings "nan", "inf", "-inf" (the convention of Tests/vectors),
    so the output is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, np.integer):
        return int(value)
    return value


def _passes(criterion: Criterion, stat: np.ndarray) -> np.ndarray:
    stat = stat.astype(np.float64)
    return (criterion.lo <= stat) & (stat <= criterion.hi)  # NaN fails, as in the library


def length_bias_table(count: np.ndarray, keep_row: np.ndarray, criteria: tuple, row_stats: tuple) -> list:
    """Kept fraction of non-empty rows by power-of-two row-length bucket ``[2^k, 2^(k+1) - 1]``,
    and the fraction passing each row criterion alone (docs/semantics.md §4.4)."""
    row_criteria = [c for c in criteria if c.is_row]
    nonempty = count > 0
    buckets = np.zeros(count.shape, dtype=np.int64)
    buckets[nonempty] = np.floor(np.log2(count[nonempty])).astype(np.int64)
    table = []
    for k in np.unique(buckets[nonempty]):
        rows = nonempty & (buckets == k)
        n = int(rows.sum())
        table.append({
            "lo": int(2**k), "hi": int(2 ** (k + 1) - 1), "rows": n,
            "kept": int(keep_row[rows].sum()), "kept_fraction": float(keep_row[rows].mean()),
            "pass_fraction": [float(_passes(c, s[rows]).mean()) for c, s in zip(row_criteria, row_stats)],
        })
    return table


def _plugin(result: MaskResult, reward_range: float, kept_only: bool) -> tuple:
    try:
        return plugin_bounds(result, reward_range=reward_range, kept_only=kept_only), None
    except TrmaskError as error:
        return None, str(error)


def audit(batch: LoadedBatch, criteria: Any = None, *, nan_policy: str = "reject", clamp: Optional[float] = None,
          threads: int = 0, chunk_rows: Optional[int] = None, progress: Optional[bool] = None,
          reward_range: float = 1.0) -> AuditResult:
    """Masks `batch` (`trust_region_mask` with these criteria and options, in chunks of rows) and
    summarises it: kept and rejected rows, statistics, length bias, and the plug-in error bounds
    of docs/semantics.md §7 at the longest row, over all rows and over kept rows.

    **The bounds are plug-in estimates**: their ``kl_max`` is a batch maximum, not the maximum
    token KL over all reachable contexts that the theorems need.

    ``chunk_rows``: rows per chunk (default: about 4M tokens per chunk). ``progress``: show
    progress on stderr (``None``: only when stderr is a terminal and there is more than one chunk).
    """
    criteria = normalize_criteria(criteria)
    rows, cols = batch.shape
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_TOKENS // max(cols, 1))
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise TrmaskError(f"`chunk_rows` is {chunk_rows!r}; expected an integer >= 1")
    starts = range(0, rows, chunk_rows)
    if progress is None:
        progress = len(starts) > 1 and sys.stderr.isatty()
    bar = Progress(len(starts), f"trmask audit {Path(batch.path).name}") if progress else None
    options = dict(nan_policy=nan_policy, clamp=clamp, threads=threads)
    parts = []
    try:
        for start in starts:
            rows_slice = slice(start, start + chunk_rows)
            data = {name: getattr(batch, name)[rows_slice] for name in (*_DATA_NAMES, "mask", "lengths")
                    if getattr(batch, name) is not None}
            result, stats = (trust_region_mask(**data, criteria=c, **options) for c in (criteria, STATS_CRITERIA))
            parts.append((result, stats, int(result.keep_token.sum())))
            if bar:
                bar.update()
    finally:
        if bar:
            bar.close()

    def joined(get, dtype) -> np.ndarray:
        return np.concatenate([get(p) for p in parts]) if parts else np.zeros(0, dtype)

    n_row_criteria = sum(c.is_row for c in criteria)
    keep_row = joined(lambda p: p[0].keep_row, bool)
    count = joined(lambda p: p[0].count, np.int64)
    row_stats = tuple(joined(lambda p, i=i: p[0].row_stats[i], np.float32) for i in range(n_row_criteria))
    stats = tuple(joined(lambda p, i=i: p[1].row_stats[i], np.float32) for i in range(len(STATS_CRITERIA)))
    rejected = tuple(int(sum(p[0].rejected[i] for p in parts)) for i in range(len(criteria)))
    # The statistics under STATS_CRITERIA with the keep decision of the audited criteria.
    ints = np.concatenate([count, np.zeros(len(count) + len(STATS_CRITERIA), np.int64)])  # count, nonfinite, rejected
    combined = MaskResult(keep_row, None, ints, np.stack(stats), STATS_CRITERIA)
    plugin_all, plugin_error = _plugin(combined, reward_range, kept_only=False)
    plugin_kept, plugin_kept_error = _plugin(combined, reward_range, kept_only=True)
    return AuditResult(
        path=batch.path, source=batch.source, rows=rows, cols=cols, notes=list(batch.notes), criteria=criteria,
        nan_policy=nan_policy, clamp=clamp, keep_row=keep_row, count=count,
        nonfinite=joined(lambda p: p[0].nonfinite, np.int64), rejected=rejected, row_stats=row_stats,
        max_k2=stats[0], mean_k3=stats[1], sum_k3=stats[2], tokens_kept=sum(p[2] for p in parts),
        chunks=len(parts), plugin_all=plugin_all, plugin_kept=plugin_kept, plugin_error=plugin_error,
        plugin_kept_error=plugin_kept_error,
        length_bias=length_bias_table(count, keep_row, criteria, row_stats))
