"""Drift on a window too large for one function execution: profile the partitions in parallel, merge, compare.

Profiles are mergeable (`shared.domain.profile`): the partial profiles of partitions, all built on the
reference's bin edges, add up to the profile of the whole window. This module is the process entry each node
of the Azure ML job runs (`shared.jobs.drift_pipeline`), and the same code runs in one process locally
(`profile_in_partitions`):

    python -m shared.jobs.drift_job profile --reference REF.json --inputs DIR --partitions N --partition-index I \
        --out OUT [--datasets DIR --manifest MANIFEST.json]
    python -m shared.jobs.drift_job merge --reference REF.json --partials DIR [DIR ...] --out OUT \
        [--threshold 0.1 --share 0.5 --min-rows 100 --critical a,b]

Inputs are the `*.csv` (any dialect `profile.read_frame` reads) and `*.jsonl` files under DIR (recursively; the
`.jsonl` files are Azure ML data collector blobs, one envelope `{"specversion", ..., "time", "data": [records]}`
per line). Files are sorted by their path relative to DIR and file k belongs to partition k % N.

With `--manifest` (what the drift check writes when it hands a large window over), the files are exactly those the
manifest lists, in its order: `{"since": T0, "until": T1, "files": [{"root": "window" | "datasets", "path": REL}]}`
with `window` paths relative to `--inputs` (the collector's container) and `datasets` paths relative to
`--datasets` (the dataset versions' container); collector lines outside [since, until) are left out, as the
drift check's own reader does. `profile`
writes OUT/partial-I.json: the partition's profile plus a `partition` block (index, partitions, files, the
reference's sha256); a partition without files writes an empty profile (0 rows), which merges as the identity.
`merge` checks that the partials are exactly 0..N-1 of one partitioning on the same reference, and writes
OUT/current_profile.json (the merged profile) and OUT/drift.json (`compare_profiles(...).to_dict()`).

Labels: a file with a `y` column contributes its labels, others (collector blobs) count as unlabelled rows, so the
merged profile equals `build_profile` of all the files concatenated. As in the drift check, the label
distribution only counts when every row is labelled (`shared.domain.label_rule`); otherwise the comparison leaves
`y` out.

Input errors are one line on stderr and exit code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from shared.domain import schema
from shared.domain.collected_data import EnvelopeError, rows_in_window
from shared.domain.drift import DriftResult, compare_profiles
from shared.domain.label_rule import as_compared
from shared.domain.profile import ColumnProfile, Profile, ProfileError, build_profile, read_frame

PATTERNS = ("*.csv", "*.jsonl")
PARTIAL_PREFIX = "partial-"
CURRENT_PROFILE = "current_profile.json"
DRIFT_RESULT = "drift.json"


class InputError(ValueError):
    """Bad input to the job (one-line message; exit code 2)."""


# ------------------------------------------------------------------------------------------------- reading

def list_inputs(folder: str | Path) -> list[Path]:
    """The input files under `folder` (recursively), sorted by their path relative to it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    files = {p for pattern in PATTERNS for p in folder.rglob(pattern) if p.is_file()}
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def partition_files(files: Sequence[Path], partitions: int, index: int) -> list[Path]:
    """File k (of `files` in the given order) belongs to partition k % partitions."""
    if partitions < 1:
        raise InputError(f"partitions must be >= 1, got {partitions}")
    if not 0 <= index < partitions:
        raise InputError(f"partition index must be in 0..{partitions - 1}, got {index}")
    return list(files)[index::partitions]


def read_collector_jsonl(path: str | Path, since: float | None = None, until: float | None = None) -> pd.DataFrame:
    """The rows of a data collector blob (Azure ML's envelope, `shared.domain.collected_data`), only the lines
    whose time is in [since, until) when those are given."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return pd.DataFrame.from_records(rows_in_window(text, since, until))
    except EnvelopeError as exc:
        raise InputError(f"{path}: {exc}") from None


def read_input(path: str | Path, since: float | None = None, until: float | None = None) -> pd.DataFrame:
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        return read_collector_jsonl(path, since, until)
    return read_frame(path)


def manifest_files(manifest: str | Path, roots: dict[str, Path | None]) -> tuple[list[Path], float | None,
                                                                              float | None]:
    """The files a manifest lists (resolved against their roots, in the manifest's order) and its time window."""
    try:
        data = json.loads(Path(manifest).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{manifest}: not a readable JSON manifest ({type(exc).__name__})") from None
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputError(f'{manifest}: expected {{"since", "until", "files": [{{"root", "path"}}]}}')
    files = []
    for i, entry in enumerate(entries):
        root_name = entry.get("root") if isinstance(entry, dict) else None
        rel = entry.get("path") if isinstance(entry, dict) else None
        unsafe = not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in rel.split("/")
        if root_name not in roots or unsafe:
            raise InputError(f"{manifest}: files[{i}] must be {{\"root\": one of {sorted(roots)}, \"path\": a "
                             "relative path}")
        root = roots[root_name]
        if root is None:
            raise InputError(f"{manifest}: files[{i}] is under root {root_name!r} but no --{root_name} folder "
                             "was given")
        files.append(Path(root) / rel)
    since, until = data.get("since"), data.get("until")
    return files, (None if since is None else float(since)), (None if until is None else float(until))


# ----------------------------------------------------------------------------------------------- profiling

def empty_profile(reference: Profile) -> Profile:
    """The profile of no rows on the reference's edges: the identity of `merge_partials`."""
    return build_profile(pd.DataFrame({name: pd.Series(dtype=object) for name in reference.columns}),
                         reference=reference)


def _unlabelled_target(rows: int) -> ColumnProfile:
    return ColumnProfile(name=schema.TARGET, kind="categorical", declared="cat", count=rows, missing=rows)


def merge_partials(profiles: Iterable[Profile]) -> Profile:
    """Merge profiles built on the same edges. Unlike `Profile.merge`, a labelled and an unlabelled profile
    merge: the unlabelled rows count as missing labels, as in the profile of the concatenated frames."""
    profiles = list(profiles)
    if not profiles:
        raise InputError("nothing to merge")
    if any(p.target is not None for p in profiles):
        profiles = [p if p.target is not None else replace(p, target=_unlabelled_target(p.rows)) for p in profiles]
    out = profiles[0]
    for p in profiles[1:]:
        out = out.merge(p)
    return out


def profile_files(files: Iterable[str | Path], reference: Profile, since: float | None = None,
                  until: float | None = None) -> Profile:
    """The profile of the given files on the reference's edges (one file in memory at a time)."""
    parts = [empty_profile(reference)]
    for path in files:
        frame = read_input(path, since, until)
        if len(frame) == 0:
            continue  # an empty collector blob or a header-only CSV adds nothing
        try:
            parts.append(build_profile(frame, reference=reference))
        except ProfileError as exc:
            raise InputError(f"{path}: {exc}") from None
    return merge_partials(parts)


def profile_in_partitions(files: Iterable[str | Path], reference: Profile | str | Path, partitions: int) -> Profile:
    """The local path: profile each partition exactly as a node of the Azure ML job does, then merge."""
    if not isinstance(reference, Profile):
        reference = Profile.load(reference)
    ordered = sorted((Path(f) for f in files), key=lambda p: p.as_posix())
    return merge_partials(profile_files(partition_files(ordered, partitions, i), reference)
                          for i in range(partitions))


def compare_window(reference: Profile, current: Profile, *, threshold: float = 0.1, share: float = 0.5,
                   min_rows: int = 100, critical: Sequence[str] = ()) -> DriftResult:
    """`compare_profiles` with the drift check's label rule: `y` only counts when every row is labelled."""
    current, has_labels = as_compared(current)
    return compare_profiles(reference, current, threshold=threshold, share=share, min_rows=min_rows,
                            critical=critical, target_counts=has_labels)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_reference(path: str) -> tuple[Profile, str]:
    ref_path = Path(path)
    if ref_path.is_dir():  # an Azure ML uri_folder holding the model folder's reference_profile.json
        ref_path = ref_path / "reference_profile.json"
    reference = Profile.load(ref_path)
    return reference, _sha256(ref_path)


# ---------------------------------------------------------------------------------------------- commands

def run_profile(args: argparse.Namespace) -> Path:
    reference, digest = _load_reference(args.reference)
    folder = Path(args.inputs)
    since = until = None
    if args.manifest:
        listed, since, until = manifest_files(args.manifest, {"window": folder, "datasets": args.datasets})
    else:
        listed = list_inputs(folder)
    files = partition_files(listed, args.partitions, args.partition_index)
    profile = profile_files(files, reference, since, until)
    out = Path(args.out) / f"{PARTIAL_PREFIX}{args.partition_index}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = profile.to_dict()
    data["partition"] = {"index": args.partition_index, "partitions": args.partitions, "reference_sha256": digest,
                         "files": [_relative(f, folder, args.datasets) for f in files]}
    out.write_text(json.dumps(data, separators=(",", ":")))
    print(f"partition {args.partition_index}/{args.partitions}: {len(files)} file(s), {profile.rows} row(s) -> {out}")
    return out


def _relative(path: Path, *roots) -> str:
    for root in roots:
        if root is not None and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.as_posix()


def _read_partial(path: Path) -> tuple[Profile, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON partial profile ({type(exc).__name__})") from None
    meta = data.get("partition") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or not {"index", "partitions", "reference_sha256"} <= set(meta):
        raise InputError(f"{path}: not a partial profile written by `profile` (no partition block)")
    try:
        return Profile.from_dict(data), meta
    except ProfileError as exc:
        raise InputError(f"{path}: {exc}") from None


def load_partials(folders: Sequence[str | Path], reference_sha256: str | None = None) -> list[Profile]:
    """Every partial-*.json in the folders, checked to be partitions 0..N-1 of one run on one reference."""
    paths: list[Path] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder")
        paths.extend(sorted(folder.glob(f"{PARTIAL_PREFIX}*.json")))
    if not paths:
        raise InputError(f"no {PARTIAL_PREFIX}*.json in {', '.join(map(str, folders))}")
    partials = [(path, *_read_partial(path)) for path in paths]
    counts = {meta["partitions"] for _, _, meta in partials}
    if len(counts) != 1:
        raise InputError(f"partials come from different partitionings (partitions {sorted(counts)})")
    (n,) = counts
    indices = sorted(meta["index"] for _, _, meta in partials)
    if indices != list(range(n)):
        missing = sorted(set(range(n)) - set(indices))
        duplicate = sorted({i for i in indices if indices.count(i) > 1})
        raise InputError(f"expected partials 0..{n - 1} once each"
                         + (f"; missing {missing}" if missing else "") + (f"; duplicated {duplicate}" if duplicate
                                                                         else ""))
    if reference_sha256 is not None:
        other = [str(path) for path, _, meta in partials if meta["reference_sha256"] != reference_sha256]
        if other:
            raise InputError(f"partials built on another reference: {', '.join(other)}")
    return [profile for _, profile, _ in sorted(partials, key=lambda t: t[2]["index"])]


def run_merge(args: argparse.Namespace) -> DriftResult:
    reference, digest = _load_reference(args.reference)
    current = merge_partials(load_partials(args.partials, digest))
    critical = [c.strip() for c in (args.critical or "").split(",") if c.strip()]
    result = compare_window(reference, current, threshold=args.threshold, share=args.share, min_rows=args.min_rows,
                            critical=critical)
    out = Path(args.out)
    current.save(out / CURRENT_PROFILE)
    (out / DRIFT_RESULT).write_text(json.dumps(result.to_dict(), indent=1))
    print(f"{current.rows} row(s): {result.verdict} -> {out / DRIFT_RESULT}")
    return result


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2 (raised to main)
        raise InputError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m shared.jobs.drift_job", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("profile", help="profile one partition of the window on the reference's edges")
    p.add_argument("--reference", required=True, help="reference profile JSON (or a folder holding "
                                                       "reference_profile.json)")
    p.add_argument("--inputs", required=True, help="folder of *.csv / collector *.jsonl files")
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--partition-index", type=int, required=True)
    p.add_argument("--out", required=True, help="folder to write partial-I.json into")
    p.add_argument("--datasets", type=Path, default=None, help="folder the manifest's `datasets` paths are under")
    p.add_argument("--manifest", default=None, help="JSON list of the window's files and its [since, until)")
    m = sub.add_parser("merge", help="merge the partial profiles and compare the result with the reference")
    m.add_argument("--reference", required=True)
    m.add_argument("--partials", nargs="+", required=True, help="folders holding partial-*.json")
    m.add_argument("--out", required=True, help="folder for current_profile.json and drift.json")
    m.add_argument("--threshold", type=float, default=0.1)
    m.add_argument("--share", type=float, default=0.5)
    m.add_argument("--min-rows", type=int, default=100)
    m.add_argument("--critical", default="", help="comma-separated columns whose drift alone is a drift")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "profile":
            run_profile(args)
        else:
            run_merge(args)
    except (InputError, ProfileError, OSError) as exc:
        text = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = " ".join(text.split())
        print(f"drift_job: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
