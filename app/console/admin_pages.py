"""Console pages: admin (being written)."""

from __future__ import annotations

from fastapi import APIRouter

from app.console.web import ConsoleRoute

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
