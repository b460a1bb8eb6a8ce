"""The Azure Tables moves every webhook store makes: a RowKey for any text, conditional replace and delete on the
ETag just read (so concurrent instances cannot both win), and a best-effort purge.

Times are stored as floats (Edm.Double): a plain int above 2**31 is refused by the SDK as Int32.
"""

from __future__ import annotations

import hashlib
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode


def row_key(text: str) -> str:
    """A RowKey for arbitrary text: RowKeys forbid / \\ # ? and control characters and are limited to 1 KiB."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def delete_where(table: TableClient, query: str, parameters: dict[str, Any]) -> int:
    deleted = 0
    for row in table.query_entities(query, parameters=parameters, select=["PartitionKey", "RowKey"]):
        try:
            table.delete_entity(row["PartitionKey"], row["RowKey"])
            deleted += 1
        except ResourceNotFoundError:
            pass
    return deleted


def replace_if_unchanged(table: TableClient, entity: dict[str, Any], read: TableEntity) -> None:
    """Replace the row `read` came from with `entity`, only if nobody wrote it since (ResourceModifiedError)."""
    table.update_entity(entity, mode=UpdateMode.REPLACE, etag=read.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified)


def delete_if_unchanged(table: TableClient, partition: str, row: str, read: TableEntity) -> None:
    """Delete the row `read` came from, only if nobody wrote it since (ResourceModifiedError)."""
    table.delete_entity(partition, row, etag=read.metadata["etag"], match_condition=MatchConditions.IfNotModified)
