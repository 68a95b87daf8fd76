"""Every ORM model, imported in one place so Alembic and the drift test see the whole schema."""

from app.auth.models import ApiKey, ConsoleSession, Project
from app.batches.models import Batch
from app.datasets.models import StoredReport
from app.evals.models import Eval, EvalOutputItem, EvalRun
from app.files.models import StoredFile
from app.fine_tuning.models import FineTuningJob, JobCheckpoint, JobEvent
from app.kit.orm import Base
from app.migration.models import Migration
from app.registry.models import AliasVersion, FineTunedModel, ModelAlias, RegistryChange
from app.uploads.models import Upload, UploadPart
from app.usage.models import UsageBucket
from app.webhooks.models import Webhook, WebhookDelivery

metadata = Base.metadata

__all__ = [
    "AliasVersion",
    "ApiKey",
    "Batch",
    "ConsoleSession",
    "Eval",
    "EvalOutputItem",
    "EvalRun",
    "FineTunedModel",
    "FineTuningJob",
    "JobCheckpoint",
    "JobEvent",
    "Migration",
    "ModelAlias",
    "Project",
    "RegistryChange",
    "StoredFile",
    "StoredReport",
    "Upload",
    "UploadPart",
    "UsageBucket",
    "Webhook",
    "WebhookDelivery",
    "metadata",
]
