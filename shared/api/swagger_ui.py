"""The Swagger UI page served at GET /api/docs: swagger-ui-dist from the jsDelivr CDN (pinned, with Subresource
Integrity), pointed at GET /api/openapi.json. Static: built once, same bytes on every call."""

from __future__ import annotations

import base64
import functools
import hashlib

from shared.api.openapi import ROUTE_PREFIX

SWAGGER_UI_VERSION = "5.35.0"
CDN = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}"
# sha384 of the files in the npm tarball swagger-ui-dist-5.35.0.tgz (jsDelivr serves them unchanged).
BUNDLE_SRI = "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9"
CSS_SRI = "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I"
DOCUMENT_URL = f"{ROUTE_PREFIX}/openapi.json"

# The inline start-up script, byte for byte as it stands between <script> and </script> (the CSP allows it by hash).
_INIT = (
    "\n"
    "window.addEventListener('load', function () {\n"
    "  window.ui = SwaggerUIBundle({url: '" + DOCUMENT_URL + "', dom_id: '#swagger-ui', deepLinking: true,\n"
    "    persistAuthorization: false, tryItOutEnabled: false});\n"
    "});\n"
)

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>azureml-retrain API</title>
  <link rel="stylesheet" href="{CDN}/swagger-ui.css" integrity="{CSS_SRI}" crossorigin="anonymous">
</head>
<body>
  <div id="swagger-ui"></div>
  <noscript>The API description is at <a href="{DOCUMENT_URL}">{DOCUMENT_URL}</a>.</noscript>
  <script src="{CDN}/swagger-ui-bundle.js" integrity="{BUNDLE_SRI}" crossorigin="anonymous"></script>
  <script>{_INIT}</script>
</body>
</html>
"""


def _script_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


@functools.cache
def page_bytes() -> bytes:
    return _PAGE.encode("utf-8")


@functools.cache
def page_headers() -> dict[str, str]:
    """Only our inline start-up script (by hash) and the pinned CDN files may run; the page can only talk to us."""
    csp = "; ".join((
        "default-src 'none'",
        f"script-src https://cdn.jsdelivr.net {_script_hash(_INIT)}",
        "style-src https://cdn.jsdelivr.net 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src https://cdn.jsdelivr.net data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ))
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "public, max-age=300"}
