"""The dashboard page (GET /api/dashboard) and its two assets (GET /api/dashboard/assets/{name}).

Self-contained: no CDN, no inline script or style (the Content-Security-Policy allows only this app's own files),
no data and no key in the page source. The script reads the function key from the page's own `?code=` at run time
and sends it as `x-functions-key` to GET /api/dashboard/data, which it polls; it builds every element with
textContent, never HTML from data. `Referrer-Policy: no-referrer` keeps the key out of Referer headers.
"""

from __future__ import annotations

import functools
from importlib import resources

STATIC = "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
POLL_S = 3  # the page's refresh period; the data route is cheap enough (bench/dashboard.py)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
ASSET_HEADERS = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"}
DATA_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

TABS = (("timeline", "Timeline"), ("models", "Models"), ("quality", "Quality"), ("drift", "Drift"),
        ("outbox", "Outbox"))


def _tabs() -> str:
    buttons = "\n".join(
        f'      <button type="button" role="tab" id="tab-{name}" aria-controls="panel-{name}" '
        f'aria-selected="{"true" if i == 0 else "false"}" tabindex="{0 if i == 0 else -1}">{label}</button>'
        for i, (name, label) in enumerate(TABS))
    panels = "\n".join(
        f'    <section role="tabpanel" id="panel-{name}" aria-labelledby="tab-{name}" tabindex="0"'
        f'{"" if i == 0 else " hidden"}><h2>{label}</h2><div class="body" id="{name}-body"></div></section>'
        for i, (name, label) in enumerate(TABS))
    return f'    <div role="tablist" aria-label="Dashboard sections">\n{buttons}\n    </div>\n{panels}'


@functools.cache
def page_bytes() -> bytes:
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <link rel="icon" href="data:,">
  <title>azureml-retrain dashboard</title>
  <link rel="stylesheet" href="dashboard/assets/dashboard.css">
</head>
<body data-poll-s="{POLL_S}">
  <a class="skip" href="#main">Skip to the dashboard</a>
  <header>
    <h1>azureml-retrain</h1>
    <p id="live-model" class="live">Live model: <span id="live-version">…</span></p>
    <p id="status" role="status" aria-live="polite">Loading…</p>
  </header>
  <main id="main" tabindex="-1">
{_tabs()}
  </main>
  <noscript>This page needs JavaScript. The same data: GET /api/runs, /api/models and /api/dashboard/data.</noscript>
  <script src="dashboard/assets/dashboard.js"></script>
</body>
</html>
""".encode()


@functools.cache
def asset(name: str) -> tuple[bytes, str] | None:
    """An asset's bytes and media type, or None for a name outside the two files (never a path from the URL)."""
    media = ASSETS.get(name)
    if media is None:
        return None
    return resources.files("shared.api").joinpath(STATIC, name).read_bytes(), media
