"""The OpenAPI (Swagger 2.0) document of /score, in the shape Azure ML's inference server generates for a no-code
MLflow deployment (azureml_inference_server_http/server/swagger2_template.json, with inference-schema's
ServiceInput / ServiceOutput): it describes exactly what formats.py accepts."""

from __future__ import annotations

from typing import Any

from local.scoring_server.formats import FORMATS_HINT
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


def _service_input(record: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    """`input_data` in pandas split orientation and an optional `params`, as inference-schema describes the
    no-code deployment's run(input_data, params=None) (PandasParameterType(orient="split"): format
    "pandas.DataFrame:split"); other top-level keys are ignored by the server."""
    columns = list(record["properties"])
    cells = [record["properties"][c] for c in columns]
    return {
        "type": "object", "required": ["input_data"],
        "properties": {
            "input_data": {
                "type": "object", "required": ["columns", "data"], "format": "pandas.DataFrame:split",
                "description": "one row per record, its values in `columns` order; `index` optional",
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string", "enum": columns}},
                    "index": {"type": "array", "items": {"type": "integer", "format": "int64"}},
                    "data": {"type": "array", "items": {"type": "array", "items": {}, "minItems": len(columns),
                                                        "maxItems": len(columns),
                                                        "x-column-types": cells}},
                },
            },
            "params": {"type": "object", "description": "optional; this model takes no parameters"},
        },
        "example": {"input_data": {"columns": columns, "index": [0], "data": [[example[c] for c in columns]]}},
    }


SERVICE_OUTPUT: dict[str, Any] = {
    "type": "array", "format": "numpy.ndarray",
    "items": {"type": "integer", "format": "int64", "enum": [0, 1]},
    "description": f'the model\'s prediction per row, in order: 1 = "{schema.POSITIVE}", 0 = "{schema.NEGATIVE}"',
    "example": [0],
}


def swagger_document(model: ScoringModel | None) -> dict[str, Any]:
    """Swagger 2.0 for /score in the shape Azure ML generates for a deployed model's scoring script."""
    kinds = model.kinds if model is not None else {c: schema.COLUMNS[c] for c in schema.FEATURES}
    # The document is public (no key): its example is the fixed synthetic record, never the model's saved input
    # example (a model trained before those were synthetic carries rows of its training data there).
    example = {c: EXAMPLE_RECORD.get(c) for c in kinds}
    record_schema = {"type": "object", "required": list(kinds),
                     "properties": {c: _property(c, k) for c, k in kinds.items()}}
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
                    "description": "Run the deployed model on the rows and return a prediction for each: "
                                   + FORMATS_HINT + ". The header `azureml-model-deployment` names the "
                                   "deployment (slot) that answered.",
                    "security": [{"Bearer": []}],
                    "consumes": ["application/json"],
                    "parameters": [{
                        "name": "serviceInputPayload", "in": "body", "required": True,
                        "description": "The input payload for executing the real-time machine learning service.",
                        "schema": {"$ref": "#/definitions/ServiceInput"},
                    }],
                    "responses": {
                        "200": {"description": "A prediction per input row, in order.",
                                "schema": {"$ref": "#/definitions/ServiceOutput"}},
                        "401": {"description": "Missing or invalid key."},
                        "404": {"description": "The endpoint has no deployment with traffic yet."},
                        "424": {"description": "The deployment refused the request or failed: the header "
                                               "`ms-azureml-model-error-statuscode` gives its status (400: not a JSON "
                                               "object or no `input_data`; 405: not POST; 415: Content-Type is not "
                                               "application/json; 500: `input_data` is not a valid split-oriented "
                                               "frame of the model's columns and types, or the model failed).",
                                "schema": {"$ref": "#/definitions/ErrorResponse"}},
                    },
                },
            },
        },
        "definitions": {
            "ServiceInput": _service_input(record_schema, example),
            "ServiceOutput": SERVICE_OUTPUT,
            "Health": {
                "type": "object",
                "properties": {"status": {"type": "string"}, "model_version": {"type": "string", "x-nullable": True}},
            },
            "ErrorResponse": {"type": "object", "properties": {"message": {"type": "string"}}},
        },
    }
