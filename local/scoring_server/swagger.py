"""The OpenAPI (Swagger 2.0) document of /score, in the shape Azure ML generates for a deployed model."""

from __future__ import annotations

from typing import Any

from local.scoring_server.formats import AUTOML_METHODS, FORMATS_HINT
from shared.domain import schema
from shared.scoring.runtime import ScoringModel

EXAMPLE_RECORD: dict[str, Any] = dict(schema.EXAMPLE_RECORD)


def _property(column: str, kind: str) -> dict[str, Any]:
    if kind == "int":
        return {"type": "integer", "format": "int64"}
    if kind == "float":
        return {"type": "number", "format": "double"}
    spec: dict[str, Any] = {"type": "string"}
    if column in schema.LEVELS:
        spec["description"] = "known values: " + ", ".join(schema.LEVELS[column]) + " (others are scored as unseen)"
    return spec


def _labels() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "enum": [schema.POSITIVE, schema.NEGATIVE]}}


def _definitions(record: dict[str, Any], example: dict[str, Any], version: str) -> dict[str, Any]:
    """Swagger 2.0 has no oneOf: ServiceInput / ServiceOutput list every format's fields (exactly one format
    per request), and each format also has its own definition."""
    columns = list(record["properties"])
    automl = {"Inputs": {"data": [example]}, "GlobalParameters": {"method": "predict"}}
    mlflow = {"input_data": {"columns": columns, "index": [0], "data": [[example[c] for c in columns]]}}
    inputs = {
        "DataInput": {"type": "object", "required": ["data"],
                      "properties": {"data": {"type": "array", "items": record}}, "example": {"data": [example]}},
        "AutoMLInput": {"type": "object", "required": ["Inputs"], "properties": {
            "Inputs": {"type": "object", "required": ["data"],
                       "properties": {"data": {"type": "array", "items": record}}},
            "GlobalParameters": {"type": "object", "properties": {
                "method": {"type": "string", "enum": list(AUTOML_METHODS), "default": "predict"}}}},
            "example": automl},
        "MLflowInput": {"type": "object", "required": ["input_data"], "properties": {"input_data": {
            "type": "object", "required": ["columns", "data"],
            "description": "pandas split orientation: a row per record, values in `columns` order",
            "properties": {"columns": {"type": "array", "items": {"type": "string", "enum": columns}},
                           "index": {"type": "array", "items": {}},
                           "data": {"type": "array", "items": {"type": "array", "items": {}}}}}},
            "example": mlflow},
    }
    probabilities = {"type": "array", "items": {"type": "number", "format": "double"},
                     "description": "probability of `yes` per record"}
    outputs = {
        "DataOutput": {"type": "object", "properties": {"result": _labels(), "probabilities": probabilities,
                                                        "model_version": {"type": "string"}},
                       "example": {"result": ["no"], "probabilities": [0.0731], "model_version": version}},
        "AutoMLOutput": {"type": "object", "properties": {"Results": {
            "type": "array", "items": {},
            "description": 'method "predict": a label ("yes" | "no") per record; "predict_proba": '
                           "[P(no), P(yes)] per record"}}, "example": {"Results": ["no"]}},
        "MLflowOutput": {"type": "object", "properties": {"predictions": _labels()},
                         "example": {"predictions": ["no"]}},
    }
    union_in = {k: v for d in inputs.values() for k, v in d["properties"].items()}
    union_out = {k: v for d in outputs.values() for k, v in d["properties"].items()}
    return {
        "ServiceInput": {"type": "object", "properties": union_in, "example": {"data": [example]},
                         "description": "exactly one of: `data` (DataInput), `Inputs` + optional "
                                        "`GlobalParameters` (AutoMLInput, Azure AutoML v2), `input_data` "
                                        "(MLflowInput, Azure ML MLflow deployment)",
                         "x-examples": {"data": {"data": [example]}, "automl": automl, "mlflow": mlflow}},
        "ServiceOutput": {"type": "object", "properties": union_out,
                          "description": "DataOutput for `data`, AutoMLOutput for `Inputs`, MLflowOutput for "
                                         "`input_data`", "example": outputs["DataOutput"]["example"]},
        **inputs, **outputs,
    }


def swagger_document(model: ScoringModel | None) -> dict[str, Any]:
    """Swagger 2.0 for /score in the shape Azure ML generates for a deployed model's scoring script."""
    kinds = model.kinds if model is not None else {c: schema.COLUMNS[c] for c in schema.FEATURES}
    # The document is public (no key): its example is the fixed synthetic record, never the model's saved input
    # example (a model trained before those were synthetic carries rows of its training data there).
    example = {c: EXAMPLE_RECORD.get(c) for c in kinds}
    record_schema = {"type": "object", "required": list(kinds),
                     "properties": {c: _property(c, k) for c, k in kinds.items()}}
    error = {"schema": {"$ref": "#/definitions/ErrorResponse"}}
    return {
        "swagger": "2.0",
        "info": {
            "title": "bankmarketing",
            "description": "API specification for the Azure Machine Learning service bankmarketing "
                           "(local scoring endpoint)",
            "version": "1.0",
        },
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "Bearer": {"type": "apiKey", "name": "Authorization", "in": "header",
                       "description": "For example: Bearer abc123"},
        },
        "paths": {
            "/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Health check: whether the service is up and which model version serves.",
                    "responses": {"200": {"description": "The service is up.",
                                          "schema": {"$ref": "#/definitions/Health"}}},
                },
            },
            "/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run the deployed model on the records and return a prediction for each. "
                                   "Three request formats: " + FORMATS_HINT + ". The headers "
                                   "`azureml-model-deployment` and `x-model-version` name the slot and model.",
                    "security": [{"Bearer": []}],
                    "parameters": [{
                        "name": "serviceInputPayload", "in": "body", "required": True,
                        "description": "The input payload for the real-time machine learning service.",
                        "schema": {"$ref": "#/definitions/ServiceInput"},
                    }],
                    "responses": {
                        "200": {"description": "A prediction per input record, in order, in the request "
                                               "format's answer shape.",
                                "schema": {"$ref": "#/definitions/ServiceOutput"}},
                        "400": {"description": "The body is not JSON, matches no format, or a record is invalid "
                                               "(the message names the record index and the column).", **error},
                        "401": {"description": "Missing or invalid key.", **error},
                        "503": {"description": "No model is deployed yet.", **error},
                        "default": {"description": "The service failed to execute due to an error.", **error},
                    },
                },
            },
        },
        "definitions": {
            **_definitions(record_schema, example, model.version if model is not None else "1"),
            "Health": {
                "type": "object",
                "properties": {"status": {"type": "string"}, "model_version": {"type": "string", "x-nullable": True}},
            },
            "ErrorResponse": {"type": "object", "properties": {"error": {"type": "string"}}},
        },
    }
