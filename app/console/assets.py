"""Static files: the console's own scripts and styles, the npm packages it uses, and an offline ``/docs``.

Only the folders named in :data:`VENDOR` are served from ``node_modules`` (never the whole tree). When the packages
are missing (``make install`` not run), pages still render and say so, and ``/ready`` stays as it is: the API does
not need them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("ftgw.console")

STATIC = Path(__file__).parent / "static"
# URL name under /console/vendor -> folder inside node_modules (package.json pins the versions).
VENDOR = {
    "pico": "@picocss/pico/css",
    "chart.js": "chart.js/dist",
    "swagger-ui": "swagger-ui-dist",
}


def missing_packages(node_modules: Path) -> list[str]:
    return [package for package in VENDOR.values() if not (node_modules / package).is_dir()]


def mount_assets(app: FastAPI, node_modules: Path) -> None:
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    missing = missing_packages(node_modules)
    if missing:
        log.warning("console packages missing in %s (%s): run `make install`", node_modules, ", ".join(missing))
    for name, folder in VENDOR.items():
        # check_dir=False: a missing package answers 404 for its files instead of stopping the gateway.
        directory = node_modules / folder
        app.mount(f"/console/vendor/{name}", StaticFiles(directory=directory, check_dir=False), name=f"vendor-{name}")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/console/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/console/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/console/vendor/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
