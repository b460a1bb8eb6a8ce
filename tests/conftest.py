"""Fixtures shared by every test: a real Azurite on free loopback ports, and bank-marketing data."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.processes import azurite_argv, azurite_env, start_on_free_ports
from local.stack_secrets import new_storage_key
from shared.settings import AZURITE_ACCOUNT, azurite_connection_string

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bankmarketing_train.csv"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """A real Azurite (the npm package) for the whole session; yields its connection string. It runs with a
    generated account key, like the local stack: its published development key is refused, so no test passes
    because of it."""
    root = tmp_path_factory.mktemp("azurite")
    key = new_storage_key()
    child, (blob, queue, table) = start_on_free_ports(  # started again on new ports if one was taken meanwhile
        "azurite", 3, lambda ports: azurite_argv(root / "data", *ports), log_dir=root,
        env=azurite_env(AZURITE_ACCOUNT, key))
    try:
        yield azurite_connection_string(AZURITE_ACCOUNT, key, blob=blob, queue=queue, table=table)
    finally:
        child.stop()


@pytest.fixture(scope="session")
def bank_csv(tmp_path_factory) -> Path:
    """The real sample file when `../shared/data` has it, otherwise a generated file with the same schema."""
    if SHARED_DATA.exists():
        return SHARED_DATA
    from shared.domain.sample_data import write_sample_csv

    path = tmp_path_factory.mktemp("data") / "bankmarketing_generated.csv"
    write_sample_csv(path, rows=6000, seed=7)
    return path


@pytest.fixture(scope="session")
def training_rows(bank_csv) -> set[tuple]:
    """Every row of the training file (the real one when present), its features as a tuple: what no public
    document may show."""
    import pandas as pd

    from shared.domain import schema

    frame = pd.read_csv(bank_csv)
    return {tuple(row) for row in frame[list(schema.FEATURES)].itertuples(index=False)}


@pytest.fixture(scope="session")
def small_bank_csv(bank_csv, tmp_path_factory) -> Path:
    """A 3,000-row stratified slice, so tests that train stay fast."""
    import pandas as pd

    df = pd.read_csv(bank_csv)
    part = df.groupby("y", group_keys=False).sample(frac=min(1.0, 3000 / len(df)), random_state=1)
    part = part.sample(frac=1.0, random_state=2)  # shuffled: the groupby leaves it sorted by class
    path = tmp_path_factory.mktemp("data") / "bank_small.csv"
    part.to_csv(path, index=False)
    return path
