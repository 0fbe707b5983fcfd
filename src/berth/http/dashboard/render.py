"""HTML rendering of the dashboard: Jinja2 templates from this package with autoescaping on for every
template, so every value from the store is escaped; and the security headers every page carries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from modal_proto import api_pb2

HERE = Path(__file__).parent
STATIC = HERE / "static"

# Everything the pages load comes from this server (no CDN: the dashboard works air-gapped), and no inline
# script runs: what scripts there are live in static/.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(ts: float | None) -> str:
    if not ts:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    if value is None or value < 0:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def app_state(state: int) -> str:
    name: str = api_pb2.AppState.Name(state)
    return name.removeprefix("APP_STATE_").lower()


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(when=when, seconds=seconds, app_state=app_state)


def page(template: str, status: int = 200, **context: Any) -> web.Response:
    html = _env.get_template(template).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", headers=_HEADERS)


def error_page(status: int, title: str, message: str, viewer: object = None) -> web.Response:
    return page("error.html", status=status, title=title, message=message, viewer=viewer, env="")


def headers() -> dict[str, str]:
    return dict(_HEADERS)
