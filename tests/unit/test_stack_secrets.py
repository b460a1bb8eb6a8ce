"""The local stack's secrets: Azurite's account key is generated (never the published one), kept, and read back
without being re-created by a second process."""

from __future__ import annotations

import base64
import json

import pytest

from local import stack_secrets
from local.processes import azurite_env
from shared.settings import AZURITE_ACCOUNT, azurite_connection_string

PUBLISHED_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def test_the_storage_key_is_64_random_bytes_in_base64_and_kept(tmp_path):
    first = stack_secrets.load_or_create(tmp_path)
    key = first[stack_secrets.STORAGE_KEY]
    assert len(base64.b64decode(key, validate=True)) == 64 and key != PUBLISHED_KEY
    assert stack_secrets.load_or_create(tmp_path) == first  # kept across starts
    assert stack_secrets.load_or_create(tmp_path / "other")[stack_secrets.STORAGE_KEY] != key
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_a_secrets_file_from_before_gets_a_storage_key_and_keeps_the_rest(tmp_path):
    old = {n: f"old-{n}" for n in ("pipeline_token", "scoring_key", "scoring_admin_key", "webhook_secret")}
    (tmp_path / "secrets.json").write_text(json.dumps(old))
    values = stack_secrets.load_or_create(tmp_path)
    assert {k: values[k] for k in old} == old and values[stack_secrets.STORAGE_KEY]
    assert json.loads((tmp_path / "secrets.json").read_text()) == values


def test_read_never_creates(tmp_path):
    assert stack_secrets.read(tmp_path) == {} and not (tmp_path / "secrets.json").exists()
    created = stack_secrets.load_or_create(tmp_path)
    assert stack_secrets.read(tmp_path) == created


def test_the_connection_string_needs_a_key():
    with pytest.raises(ValueError, match="account name and its key"):
        azurite_connection_string(AZURITE_ACCOUNT, "")
    conn = stack_secrets.storage_connection_string("a2V5" * 16, blob=1, queue=2, table=3)
    assert f"AccountName={AZURITE_ACCOUNT};AccountKey={'a2V5' * 16};" in conn
    assert "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;" in conn and "TableEndpoint=http://127.0.0.1:3/" in conn


def test_azurite_gets_the_key_in_a_form_it_cannot_misparse():
    key = stack_secrets.new_storage_key()
    assert azurite_env(AZURITE_ACCOUNT, key) == {"AZURITE_ACCOUNTS": f"{AZURITE_ACCOUNT}:{key}"}
    # Azurite falls back to the published key when it cannot parse AZURITE_ACCOUNTS: refuse such values here
    for account, bad in ((AZURITE_ACCOUNT, "short"), (AZURITE_ACCOUNT, "not base64!" * 8), ("Dev:Store", key),
                         ("ab", key), (AZURITE_ACCOUNT, key + ";x:y")):
        with pytest.raises(ValueError):
            azurite_env(account, bad)
