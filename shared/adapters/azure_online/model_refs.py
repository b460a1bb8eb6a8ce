"""Which registered model a deployment serves, read from our tags or from its model reference, and the tags the
deployer writes (the live and previous versions are kept on the endpoint: Azure keeps one deployment)."""

from __future__ import annotations

import re
from typing import Any

VERSION_TAG = "model_version"  # on deployments: the registered model version they serve
MODEL_TAG = "model_name"
LIVE_TAG = "live_model_version"  # on the endpoint, written with each traffic shift
PREVIOUS_TAG = "previous_model_version"
PREVIOUS_MODEL_TAG = "previous_model"  # azureml:<name>:<version>, for a previous model registered under another name

_ARM_MODEL = re.compile(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")
_SHORT_MODEL = re.compile(r"^azureml:(?P<name>[^:/]+):(?P<version>[^:/]+)$")


def model_identity(deployment: Any) -> tuple[str | None, str | None]:
    """(registered model name, version) a deployment serves: our tags, else its model reference.

    The reference also covers deployments made by hand or by the studio (an endpoint we take over).
    """
    tags = getattr(deployment, "tags", None) or {}
    model = getattr(deployment, "model", None)
    reference = model if isinstance(model, str) else getattr(model, "id", None) or ""
    name, version = parse_model_reference(reference)
    if not name and model is not None and not isinstance(model, str):
        name, version = getattr(model, "name", None), getattr(model, "version", None)
    version = tags.get(VERSION_TAG) or version
    name = tags.get(MODEL_TAG) or name
    return (str(name) if name else None), (str(version) if version else None)


def model_version_of(deployment: Any) -> str | None:
    return model_identity(deployment)[1]


def parse_model_reference(reference: str) -> tuple[str | None, str | None]:
    reference = reference.removeprefix("azureml:") if reference.startswith("azureml:/") else reference
    match = _ARM_MODEL.search(reference) or _SHORT_MODEL.match(reference)
    return (match.group("name"), match.group("version")) if match else (None, None)



def deployment_model_ref(deployment: Any) -> str | None:
    model = getattr(deployment, "model", None)
    return model if isinstance(model, str) or model is None else getattr(model, "id", None) or str(model)
