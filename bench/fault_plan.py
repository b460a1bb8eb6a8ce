"""The uploads of a fault campaign (bench/faults.py): deterministic per seed, so a failing seed can be replayed.

Bursts of 2-5 files: new rows, exact duplicates under another name, the same rows in the semicolon (UCI) dialect,
and malformed files (extra field, missing column, too few rows, non-numeric, bad target, not UTF-8, empty).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "bankmarketing_train.csv"
MALFORMED = ("extra_field", "missing_column", "too_few_rows", "non_numeric", "bad_target", "not_utf8", "empty")


@dataclass
class Upload:
    index: int
    burst: int
    name: str
    kind: str  # unique | exact_duplicate | semicolon | malformed:<why>
    content: int | None  # which unique content it carries (None for malformed)
    data: bytes
    uploaded_at: float | None = None


def source_frame() -> tuple[pd.DataFrame, str]:
    """The bank-marketing training file when the workspace has it, else the generated sample."""
    if SHARED_DATA.exists():
        return pd.read_csv(SHARED_DATA), str(SHARED_DATA)
    from shared.domain.sample_data import generate_sample

    return generate_sample(8000, seed=7), "generated (shared.domain.sample_data)"


def _malformed(why: str, frame: pd.DataFrame, rng: random.Random) -> bytes:
    if why == "empty":
        return b""
    if why == "too_few_rows":
        return frame.head(40).to_csv(index=False).encode()
    if why == "missing_column":
        return frame.drop(columns=["euribor3m"]).to_csv(index=False).encode()
    if why == "non_numeric":
        bad = frame.copy()
        bad["campaign"] = bad["campaign"].astype(object)
        bad.iloc[7, bad.columns.get_loc("campaign")] = "three"
        return bad.to_csv(index=False).encode()
    if why == "bad_target":
        bad = frame.copy()
        bad.iloc[2, bad.columns.get_loc("y")] = "maybe"
        return bad.to_csv(index=False).encode()
    lines = frame.to_csv(index=False).encode().split(b"\n")
    at = rng.randint(3, min(40, len(lines) - 2))
    if why == "extra_field":
        lines[at] += b",oops"
    else:  # not_utf8: a Latin-1 byte in the middle of a line
        lines[at] = lines[at].replace(b",", b",\xe9", 1)
    return b"\n".join(lines)


def build_plan(n: int, seed: int, frame: pd.DataFrame) -> list[Upload]:
    """Deterministic per seed: burst sizes, kinds, rows and names."""
    rng = random.Random(f"uploads-{seed}")
    uploads: list[Upload] = []
    uniques: list[pd.DataFrame] = []
    burst = 0
    tag = f"s{seed}"
    while len(uploads) < n:
        for _ in range(min(rng.randint(2, 5), n - len(uploads))):
            i = len(uploads)
            kind = "unique" if not uniques else rng.choices(
                ["unique", "exact_duplicate", "semicolon", "malformed"], weights=[45, 15, 15, 25])[0]
            if kind == "unique":
                rows = frame.sample(n=rng.randint(600, 1500), random_state=rng.randrange(2**31))
                uniques.append(rows)
                content, data = len(uniques) - 1, rows.to_csv(index=False).encode()
            elif kind == "exact_duplicate":
                content = rng.randrange(len(uniques))
                data = uniques[content].to_csv(index=False).encode()
            elif kind == "semicolon":  # the UCI original: ';' and every text field quoted
                content = rng.randrange(len(uniques))
                data = uniques[content].to_csv(index=False, sep=";", quoting=csv.QUOTE_NONNUMERIC).encode()
            else:
                why = rng.choice(MALFORMED)
                kind, content = f"malformed:{why}", None
                data = _malformed(why, frame.sample(n=600, random_state=rng.randrange(2**31)), rng)
            uploads.append(Upload(index=i, burst=burst, name=f"{tag}-{i:02d}-{kind.replace(':', '-')}.csv",
                                  kind=kind, content=content, data=data))
        burst += 1
    return uploads
