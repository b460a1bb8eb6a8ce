"""The public HTTP API's description: the OpenAPI document (openapi.py) and the Swagger UI page (swagger_ui.py)."""
