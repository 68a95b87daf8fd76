"""Every ORM model, imported in one place so Alembic and the drift test see the whole schema."""

from app.auth.models import ApiKey, Project
from app.datasets.models import StoredReport
from app.files.models import StoredFile
from app.kit.orm import Base

metadata = Base.metadata

__all__ = ["ApiKey", "Project", "StoredFile", "StoredReport", "metadata"]
