"""The bank-marketing schema: the 20 features and target `y` of Azure's public `bankmarketing_train.csv`."""

from __future__ import annotations

from typing import Final

TARGET: Final = "y"
# The target's two labels, defined here once: training encodes POSITIVE as 1 and NEGATIVE as 0, scoring answers
# them, validation accepts only them.
POSITIVE: Final = "yes"
NEGATIVE: Final = "no"
TARGET_VALUES: Final = (NEGATIVE, POSITIVE)

# Column -> kind, in file order. "int" / "float" are numeric; "cat" is a string category.
COLUMNS: Final[dict[str, str]] = {
    "age": "int",
    "job": "cat",
    "marital": "cat",
    "education": "cat",
    "default": "cat",
    "housing": "cat",
    "loan": "cat",
    "contact": "cat",
    "month": "cat",
    "day_of_week": "cat",
    "duration": "int",
    "campaign": "int",
    "pdays": "int",
    "previous": "int",
    "poutcome": "cat",
    "emp.var.rate": "float",
    "cons.price.idx": "float",
    "cons.conf.idx": "float",
    "euribor3m": "float",
    "nr.employed": "float",
    "y": "cat",
}
FEATURES: Final = tuple(c for c in COLUMNS if c != TARGET)
NUMERIC: Final = tuple(c for c, k in COLUMNS.items() if k in ("int", "float"))
CATEGORICAL: Final = tuple(c for c, k in COLUMNS.items() if k == "cat" and c != TARGET)

# Known category levels (UCI documentation); other values are allowed but reported by validation.
LEVELS: Final[dict[str, tuple[str, ...]]] = {
    "job": ("admin.", "blue-collar", "entrepreneur", "housemaid", "management", "retired", "self-employed",
            "services", "student", "technician", "unemployed", "unknown"),
    "marital": ("divorced", "married", "single", "unknown"),
    "education": ("basic.4y", "basic.6y", "basic.9y", "high.school", "illiterate", "professional.course",
                  "university.degree", "unknown"),
    "default": ("no", "yes", "unknown"),
    "housing": ("no", "yes", "unknown"),
    "loan": ("no", "yes", "unknown"),
    "contact": ("cellular", "telephone"),
    "month": ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    "day_of_week": ("mon", "tue", "wed", "thu", "fri"),
    "poutcome": ("failure", "nonexistent", "success"),
}

# Columns whose values must be one of LEVELS (case-insensitive; stored lower-case). Other categories only warn.
CLOSED_LEVELS: Final = ("month", "day_of_week")

# Inclusive (low, high) bounds of numeric columns; None: unbounded on that side. pdays 999 = never contacted.
RANGES: Final[dict[str, tuple[float | None, float | None]]] = {
    "age": (0, 120),
    "duration": (0, None),
    "campaign": (0, None),
    "pdays": (0, None),
    "previous": (0, None),
}

# Fixed synthetic records (valid values for every feature, no label), for everything that is shown rather than
# learned from: the scoring swagger (served without a key), the MLflow model's input examples, smoke tests. They
# are not rows of any training file: each euribor3m has four decimals (the public file's have three), so no
# customer's record is ever published as an example.
SYNTHETIC_RECORDS: Final[tuple[dict[str, object], ...]] = (
    {"age": 35, "job": "technician", "marital": "single", "education": "university.degree", "default": "no",
     "housing": "yes", "loan": "no", "contact": "cellular", "month": "may", "day_of_week": "wed",
     "duration": 180, "campaign": 1, "pdays": 999, "previous": 0, "poutcome": "nonexistent",
     "emp.var.rate": -1.8, "cons.price.idx": 92.893, "cons.conf.idx": -46.2, "euribor3m": 1.2345,
     "nr.employed": 5099.1},
    {"age": 52, "job": "admin.", "marital": "married", "education": "high.school", "default": "no",
     "housing": "no", "loan": "no", "contact": "telephone", "month": "jun", "day_of_week": "mon",
     "duration": 95, "campaign": 3, "pdays": 999, "previous": 0, "poutcome": "nonexistent",
     "emp.var.rate": 1.4, "cons.price.idx": 94.465, "cons.conf.idx": -41.8, "euribor3m": 4.8615,
     "nr.employed": 5228.1},
    {"age": 29, "job": "services", "marital": "single", "education": "basic.9y", "default": "unknown",
     "housing": "yes", "loan": "yes", "contact": "cellular", "month": "jul", "day_of_week": "thu",
     "duration": 420, "campaign": 2, "pdays": 999, "previous": 1, "poutcome": "failure",
     "emp.var.rate": 1.4, "cons.price.idx": 93.918, "cons.conf.idx": -42.7, "euribor3m": 4.9615,
     "nr.employed": 5228.1},
    {"age": 61, "job": "retired", "marital": "married", "education": "basic.4y", "default": "no",
     "housing": "yes", "loan": "no", "contact": "cellular", "month": "oct", "day_of_week": "tue",
     "duration": 610, "campaign": 1, "pdays": 6, "previous": 2, "poutcome": "success",
     "emp.var.rate": -3.4, "cons.price.idx": 92.431, "cons.conf.idx": -26.9, "euribor3m": 0.7545,
     "nr.employed": 5017.5},
    {"age": 44, "job": "management", "marital": "divorced", "education": "professional.course", "default": "no",
     "housing": "unknown", "loan": "unknown", "contact": "cellular", "month": "nov", "day_of_week": "fri",
     "duration": 140, "campaign": 4, "pdays": 999, "previous": 0, "poutcome": "nonexistent",
     "emp.var.rate": -0.1, "cons.price.idx": 93.2, "cons.conf.idx": -42.0, "euribor3m": 4.1535,
     "nr.employed": 5195.8},
)
# One of them: swagger examples and smoke tests where no other records are at hand.
EXAMPLE_RECORD: Final[dict[str, object]] = SYNTHETIC_RECORDS[0]
