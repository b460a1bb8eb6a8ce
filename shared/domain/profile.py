"""Reference profiles: a small, mergeable summary of a dataset that drift checks compare against.

A profile is stored with the model at training time (`DIR/model/reference_profile.json`), so a drift check
never needs the raw training data again. Per column of `shared.domain.schema` (typed by the schema's declared
kinds, never re-guessed from the values, so an integer column with few values stays numeric):

- numeric: a histogram on fixed bin edges plus the sum of the values in each bin (so each bin also knows its
  mean), the column's sum and sum of squares (its exact mean and standard deviation), min and max, and the
  count of missing values;
- categorical: the count of each value (missing values are counted apart), hence the `unknown` share;
- the row count, and for the target `y` (when present) the label counts, hence the target rate.

Edges are decided once, from the reference: when the reference has at most `max_bins` distinct values each
value gets its own bin (edges at the midpoints between consecutive values), otherwise the edges are the
reference's quantiles. A current window is profiled on the reference's edges (`build_profile(frame,
reference=ref)`), and profiles on the same edges merge by adding counts and sums (`merge_profiles`), so the
partial profiles of partitions combine into the profile of the whole.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shared.domain import schema

FORMAT_VERSION = 1
MAX_BINS = 320
FEW_VALUES_PROBE = 20_000  # rows probed to choose the few-distinct-values path
MISSING = "(missing)"  # how a missing categorical value is counted

REFERENCE_PROFILE = "reference_profile.json"  # beside MLmodel in every model folder the pipeline writes


class ProfileError(ValueError):
    """A frame or a stored profile that cannot be profiled / compared (one-line message)."""


@dataclass
class ColumnProfile:
    name: str
    kind: str  # "numeric" | "categorical"
    declared: str  # the schema kind: "int" | "float" | "cat"
    count: int = 0  # rows, missing included
    missing: int = 0
    # numeric
    edges: list[float] = field(default_factory=list)
    bin_counts: list[int] = field(default_factory=list)  # len(edges) + 1; bin i holds edges[i-1] <= x < edges[i]
    bin_sums: list[float] = field(default_factory=list)
    total: float = 0.0
    total_sq: float = 0.0
    min: float | None = None
    max: float | None = None
    # categorical (missing values are not in here)
    levels: dict[str, int] = field(default_factory=dict)

    @property
    def present(self) -> int:
        return self.count - self.missing

    @property
    def missing_share(self) -> float:
        return self.missing / self.count if self.count else 0.0

    @property
    def unknown_share(self) -> float:
        return self.levels.get("unknown", 0) / self.count if self.count else 0.0

    @property
    def mean(self) -> float:
        return self.total / self.present if self.present else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation (as `np.std`), from the sum and sum of squares."""
        n = self.present
        if not n:
            return math.nan
        mean = self.total / n
        return math.sqrt(max(0.0, self.total_sq / n - mean * mean))

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        if (other.name, other.kind) != (self.name, self.kind):
            raise ProfileError(f"cannot merge column {other.name!r} ({other.kind}) into {self.name!r} ({self.kind})")
        merged = ColumnProfile(name=self.name, kind=self.kind, declared=self.declared,
                               count=self.count + other.count, missing=self.missing + other.missing)
        if self.kind == "numeric":
            if self.edges != other.edges:
                raise ProfileError(f"column {self.name!r}: profiles were built on different bin edges")
            merged.edges = list(self.edges)
            merged.bin_counts = [a + b for a, b in zip(self.bin_counts, other.bin_counts, strict=True)]
            merged.bin_sums = [a + b for a, b in zip(self.bin_sums, other.bin_sums, strict=True)]
            merged.total = self.total + other.total
            merged.total_sq = self.total_sq + other.total_sq
            mins = [v for v in (self.min, other.min) if v is not None]
            maxs = [v for v in (self.max, other.max) if v is not None]
            merged.min = min(mins) if mins else None
            merged.max = max(maxs) if maxs else None
        else:
            levels = dict(self.levels)
            for level, n in other.levels.items():
                levels[level] = levels.get(level, 0) + n
            merged.levels = levels
        return merged

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "declared": self.declared, "count": self.count, "missing": self.missing}
        if self.kind == "numeric":
            out.update(edges=self.edges, bin_counts=self.bin_counts, bin_sums=self.bin_sums, total=self.total,
                       total_sq=self.total_sq, min=self.min, max=self.max)
        else:
            out["levels"] = self.levels
        return out

    @classmethod
    def from_dict(cls, name: str, d: dict) -> ColumnProfile:
        try:
            col = cls(name=name, kind=d["kind"], declared=d.get("declared", ""), count=int(d["count"]),
                      missing=int(d["missing"]))
            if col.kind == "numeric":
                col.edges = [float(v) for v in d["edges"]]
                col.bin_counts = [int(v) for v in d["bin_counts"]]
                col.bin_sums = [float(v) for v in d["bin_sums"]]
                col.total, col.total_sq = float(d["total"]), float(d["total_sq"])
                col.min = None if d.get("min") is None else float(d["min"])
                col.max = None if d.get("max") is None else float(d["max"])
                if not (len(col.bin_counts) == len(col.bin_sums) == len(col.edges) + 1):
                    raise ProfileError(f"column {name!r}: bin counts/sums do not match the edges")
            elif col.kind == "categorical":
                col.levels = {str(k): int(v) for k, v in d["levels"].items()}
            else:
                raise ProfileError(f"column {name!r}: unknown kind {col.kind!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"column {name!r}: malformed profile ({type(exc).__name__}: {exc})") from None
        return col


@dataclass
class Profile:
    rows: int
    columns: dict[str, ColumnProfile]
    target: ColumnProfile | None = None
    version: int = FORMAT_VERSION

    @property
    def target_rate(self) -> float | None:
        """Share of the positive label (`yes`) among the labelled rows, or None without labels."""
        if self.target is None or not self.target.present:
            return None
        return self.target.levels.get(schema.TARGET_VALUES[1], 0) / self.target.present

    def merge(self, other: Profile) -> Profile:
        if list(self.columns) != list(other.columns):
            raise ProfileError("cannot merge profiles of different columns")
        target = None
        if self.target is not None and other.target is not None:
            target = self.target.merge(other.target)
        elif self.target is not None or other.target is not None:
            raise ProfileError("cannot merge a labelled profile with an unlabelled one")
        return Profile(rows=self.rows + other.rows,
                       columns={n: c.merge(other.columns[n]) for n, c in self.columns.items()}, target=target)

    __add__ = merge

    def to_dict(self) -> dict:
        return {"version": self.version, "rows": self.rows,
                "columns": {n: c.to_dict() for n, c in self.columns.items()},
                "target": None if self.target is None else {"name": self.target.name, **self.target.to_dict()}}

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        if not isinstance(d, dict) or "columns" not in d or "rows" not in d:
            raise ProfileError("not a reference profile (needs 'rows' and 'columns')")
        if d.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise ProfileError(f"unsupported profile version {d.get('version')!r} (expected {FORMAT_VERSION})")
        if not isinstance(d["columns"], dict):
            raise ProfileError("profile 'columns' must be an object")
        target = d.get("target")
        return cls(rows=int(d["rows"]),
                   columns={n: ColumnProfile.from_dict(n, c) for n, c in d["columns"].items()},
                   target=None if not target else ColumnProfile.from_dict(target.get("name", schema.TARGET),
                                                                          target))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ProfileError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProfileError(f"{path} is not a JSON profile ({exc})") from None
        return cls.from_dict(data)


def merge_profiles(profiles) -> Profile:
    """The profile of the union of the partitions the given profiles (built on the same edges) describe."""
    profiles = list(profiles)
    if not profiles:
        raise ProfileError("nothing to merge")
    out = profiles[0]
    for p in profiles[1:]:
        out = out.merge(p)
    return out


# ------------------------------------------------------------------------------------------------ building

def _edges_for(values: np.ndarray, max_bins: int) -> list[float]:
    if values.size == 0:
        return []
    uniq = np.unique(values)
    if uniq.size <= max_bins:
        edges = (uniq[:-1] + uniq[1:]) / 2  # one bin per distinct reference value
    else:
        edges = np.unique(np.quantile(values, np.linspace(0, 1, max_bins + 1)[1:-1], method="linear"))
    return [float(e) for e in edges]


def _numeric_values(series: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype) or not pd.api.types.is_numeric_dtype(series.dtype):
        try:
            series = pd.to_numeric(series, errors="raise")
        except (ValueError, TypeError):
            bad = pd.to_numeric(series, errors="coerce").isna() & series.notna()
            example = series[bad].iloc[0] if bad.any() else "?"
            raise ProfileError(f"column {name!r} must be numeric: found {example!r}") from None
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _profile_numeric(name: str, declared: str, series: pd.Series, edges: list[float] | None,
                     max_bins: int) -> ColumnProfile:
    x = _numeric_values(series, name)
    probe = x[:FEW_VALUES_PROBE]
    if x.size > FEW_VALUES_PROBE and np.unique(probe[~np.isnan(probe)]).size <= FEW_VALUES_PROBE // 20:
        # Few distinct values (integers, the macro columns): hash them once, then bin the distinct values
        # only; about twice as fast as binary-searching every row.
        codes, uniques = pd.factorize(x, use_na_sentinel=True)
        per_value = np.bincount(codes[codes >= 0], minlength=uniques.size).astype(np.float64)
        n_missing = int(x.size - per_value.sum())
        values, weights = np.asarray(uniques, dtype=np.float64), per_value
    else:
        finite = ~np.isnan(x)
        n_missing = int(x.size - np.count_nonzero(finite))
        values, weights = (x[finite] if n_missing else x), None
    present = values if weights is None else values[weights > 0]
    if edges is None:
        edges = _edges_for(values if weights is None else np.repeat(values, weights.astype(np.int64)), max_bins)
    edge_arr = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(edge_arr, values, side="right")
    nbins = edge_arr.size + 1
    if weights is None:
        counts = np.bincount(idx, minlength=nbins)
        sums = np.bincount(idx, weights=values, minlength=nbins)
        total, total_sq = float(values.sum()), float(np.dot(values, values))
    else:
        counts = np.bincount(idx, weights=weights, minlength=nbins).astype(np.int64)
        weighted = values * weights
        sums = np.bincount(idx, weights=weighted, minlength=nbins)
        total, total_sq = float(weighted.sum()), float(np.dot(weighted, values))
    return ColumnProfile(name=name, kind="numeric", declared=declared, count=int(series.size), missing=n_missing,
                         edges=list(edges), bin_counts=counts.tolist(), bin_sums=sums.tolist(),
                         total=total, total_sq=total_sq,
                         min=float(present.min()) if present.size else None,
                         max=float(present.max()) if present.size else None)


def _profile_categorical(name: str, declared: str, series: pd.Series) -> ColumnProfile:
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        uniques = [str(c) for c in series.cat.categories]
    else:
        codes, uniques_idx = pd.factorize(series, use_na_sentinel=True)
        uniques = [str(u) for u in uniques_idx]
    valid = codes >= 0
    n_missing = int(codes.size - np.count_nonzero(valid))
    counts = np.bincount(codes[valid] if n_missing else codes, minlength=len(uniques))
    levels: dict[str, int] = {}
    for level, n in zip(uniques, counts.tolist(), strict=True):
        if n:
            if level == "":
                n_missing += n
            else:
                levels[level] = levels.get(level, 0) + n  # "1" and 1 read as the same level
    return ColumnProfile(name=name, kind="categorical", declared=declared, count=int(series.size),
                         missing=n_missing, levels=dict(sorted(levels.items())))


def build_profile(frame: pd.DataFrame, *, reference: Profile | None = None, kinds: dict[str, str] | None = None,
                  max_bins: int = MAX_BINS) -> Profile:
    """Profile `frame`. With `reference`, use its columns, kinds and bin edges (a current window, mergeable
    with other windows on the same reference); otherwise decide the edges from `frame` (a reference).

    `kinds` maps column -> "int" | "float" | "cat" (default: `schema.COLUMNS`); the target column is profiled
    as labels when present. Raises ProfileError for missing columns or non-numeric values in numeric ones."""
    if not isinstance(frame, pd.DataFrame):
        raise ProfileError("expected a pandas DataFrame")
    kinds = dict(schema.COLUMNS if kinds is None else kinds)
    target_name = schema.TARGET if schema.TARGET in kinds else None
    kinds.pop(schema.TARGET, None)
    if reference is not None:
        kinds = {n: c.declared or ("cat" if c.kind == "categorical" else "float") for n, c in reference.columns.items()}
    missing = [c for c in kinds if c not in frame.columns]
    if missing:
        raise ProfileError(f"missing columns: {', '.join(missing)}")
    columns: dict[str, ColumnProfile] = {}
    for name, declared in kinds.items():
        if declared in ("int", "float"):
            edges = reference.columns[name].edges if reference is not None else None
            columns[name] = _profile_numeric(name, declared, frame[name], edges, max_bins)
        else:
            columns[name] = _profile_categorical(name, declared, frame[name])
    target = None
    if target_name is not None and target_name in frame.columns:
        target = _profile_categorical(target_name, "cat", frame[target_name])
    return Profile(rows=len(frame), columns=columns, target=target)


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a bank-marketing CSV in any dialect the upload validation accepts (comma; semicolon, quoted or
    with a decimal comma). Raises ProfileError with a one-line reason for a missing, empty or malformed file."""
    from shared.domain.validation import sniff_dialect

    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path} is not a file")
    try:
        with path.open("r", encoding="utf-8-sig") as fh:
            head = fh.read(64_000)
        dialect = sniff_dialect(head)
        frame = pd.read_csv(path, sep=dialect.delimiter, decimal=dialect.decimal, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ProfileError(f"{path} is not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise ProfileError(f"{path} is empty") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ProfileError(f"{path}: malformed CSV ({reason})") from None
    return frame
