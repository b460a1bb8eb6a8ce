"""The bank-marketing schema: the 20 features and target `y` of Azure's public `bankmarketing_train.csv`."""

from __future__ import annotations

from typing import Final

TARGET: Final = "y"
TARGET_VALUES: Final = ("no", "yes")

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

# One realistic record (a row of the public sample file, without its label): swagger examples and smoke tests
# where no real records are at hand.
EXAMPLE_RECORD: Final[dict[str, object]] = {
    "age": 41, "job": "blue-collar", "marital": "married", "education": "basic.9y", "default": "no",
    "housing": "yes", "loan": "no", "contact": "cellular", "month": "may", "day_of_week": "thu",
    "duration": 312, "campaign": 2, "pdays": 999, "previous": 0, "poutcome": "nonexistent",
    "emp.var.rate": -1.8, "cons.price.idx": 92.893, "cons.conf.idx": -46.2, "euribor3m": 1.299,
    "nr.employed": 5099.1,
}
