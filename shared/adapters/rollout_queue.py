"""The rollout queue on Storage: one base64 JSON message per finished run, for function_app/rollout_queue.py.

The Python worker's queue trigger expects base64 bodies by default (host.json `extensions.queues.messageEncoding`,
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json), hence
TextBase64EncodePolicy. The queue is created on the first put when missing (infra does not create queues)."""

from __future__ import annotations

import json
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.settings import Settings


class StorageRolloutQueue:
    """`RolloutQueue` (shared.ports) on an Azure Storage queue (Azurite locally)."""

    def __init__(self, client: QueueClient):
        self.client = client

    def put(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, sort_keys=True)
        try:
            self.client.send_message(body)
        except ResourceNotFoundError:
            try:
                self.client.create_queue()
            except ResourceExistsError:
                pass
            self.client.send_message(body)


def rollout_queue(settings: Settings, credential: TokenCredential | None = None) -> StorageRolloutQueue:
    """The queue named ROLLOUT_QUEUE on the app's storage (AzureWebJobsStorage), where the trigger listens."""
    policy = TextBase64EncodePolicy()
    if settings.storage_account_url:
        url = settings.storage_account_url.replace(".blob.", ".queue.")
        client = QueueClient(url, settings.rollout_queue, credential=credential, message_encode_policy=policy)
    else:
        client = QueueClient.from_connection_string(settings.storage_connection, settings.rollout_queue,
                                                    message_encode_policy=policy)
    return StorageRolloutQueue(client)
