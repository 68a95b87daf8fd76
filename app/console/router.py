"""The console's place in the app: its pages, its assets and the offline ``/docs``."""

from __future__ import annotations

from fastapi import FastAPI

from app.config import Settings
from app.console import (
    admin_pages,
    dataset_pages,
    eval_pages,
    job_pages,
    playground_pages,
    registry_pages,
    session_pages,
    usage_pages,
)
from app.console.assets import mount_assets


def install_console(app: FastAPI, settings: Settings) -> None:
    app.include_router(session_pages.home)
    for module in (
        session_pages,
        job_pages,
        dataset_pages,
        playground_pages,
        registry_pages,
        eval_pages,
        usage_pages,
        admin_pages,
    ):
        app.include_router(module.router)
    mount_assets(app, settings.console_assets_dir)
    app.include_router(session_pages.unknown)  # last: any other /console/... is an HTML 404
