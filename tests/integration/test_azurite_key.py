"""The tests' Azurite, like the local stack's, runs with a generated account key: the published development key
is refused, so no test can pass because of it."""

from __future__ import annotations

import re
import uuid

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from tests.unit.test_stack_secrets import PUBLISHED_KEY


def with_key(connection: str, key: str) -> str:
    return re.sub(r"AccountKey=[^;]+", "AccountKey=" + key, connection)


def test_the_session_azurite_refuses_the_published_key(azurite):
    assert PUBLISHED_KEY not in azurite
    published = with_key(azurite, PUBLISHED_KEY)
    with pytest.raises(HttpResponseError) as info:
        TableServiceClient.from_connection_string(published).create_table(f"pub{uuid.uuid4().hex[:8]}")
    assert info.value.status_code == 403
    with pytest.raises((ClientAuthenticationError, HttpResponseError)) as info:
        next(iter(BlobServiceClient.from_connection_string(published).list_containers()))
    assert info.value.status_code == 403


def test_its_own_key_works(azurite):
    name = f"own{uuid.uuid4().hex[:8]}"
    tables = TableServiceClient.from_connection_string(azurite)
    tables.create_table(name)
    assert name in [t.name for t in tables.list_tables()]
    tables.delete_table(name)
