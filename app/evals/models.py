"""ORM models of evals, their runs and the runs' output items (one per graded data source item)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base, PublicIdMixin, TimestampMixin
from app.kit.time import utcnow


class RunStatus(StrEnum):
    queued = "queued"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"
    canceled = "canceled"


# A run in one of these never moves again; the others may still be canceled.
FINAL = frozenset({RunStatus.completed, RunStatus.failed, RunStatus.canceled})
ACTIVE = frozenset(RunStatus) - FINAL


class OutputItemStatus(StrEnum):
    passed = "pass"
    failed = "fail"
    errored = "error"


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


class Eval(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "evals"
    __table_args__ = (
        Index(None, "project_id", "created_at"),
        Index(None, "project_id", "updated_at"),
    )

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(512))
    data_source_config: Mapped[dict[str, Any]] = mapped_column(JSON, doc="As returned: custom, with its schema.")
    testing_criteria: Mapped[list[dict[str, Any]]] = mapped_column(JSON, doc="The graders, each with its id.")
    eval_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def item_schema(self) -> dict[str, Any]:
        """The JSON schema of each row's ``item``, as the eval was created with."""
        schema: dict[str, Any] = self.data_source_config["schema"]["properties"]["item"]
        return schema

    @property
    def includes_sample(self) -> bool:
        return "sample" in self.data_source_config["schema"]["properties"]


class EvalRun(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "eval_runs"
    __table_args__ = (
        Index(None, "eval_id", "created_at"),
        # The workers' claim: the oldest queued run, or one whose lease has expired.
        Index(None, "status", "lease_expires_at"),
    )

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    eval_id: Mapped[str] = mapped_column(ForeignKey("evals.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(512))
    model: Mapped[str | None] = mapped_column(String(512), doc="The model sampled (completions runs).")
    status: Mapped[RunStatus] = mapped_column(Enum(RunStatus, native_enum=False, length=16, values_callable=_values))
    data_source: Mapped[dict[str, Any]] = mapped_column(JSON, doc="As accepted: jsonl or completions.")
    result_counts: Mapped[dict[str, int]] = mapped_column(JSON, doc="{total, errored, failed, passed}")
    per_model_usage: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    per_testing_criteria_results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[dict[str, str] | None] = mapped_column(JSON, default=None, doc="{code, message} once failed.")
    run_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    report_url: Mapped[str] = mapped_column(String(2048))
    created_by: Mapped[str | None] = mapped_column(
        String(64), doc="The API key that created it: its usage is that key's."
    )
    # Worker coordination: who holds the run and until when.
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EvalOutputItem(PublicIdMixin, TimestampMixin, Base):
    __tablename__ = "eval_output_items"
    # One output item per data source item of a run: a resumed run never grades an item twice. The constraint's
    # index is also the listing order.
    __table_args__ = (UniqueConstraint("run_id", "datasource_item_id"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    eval_id: Mapped[str] = mapped_column(ForeignKey("evals.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"))
    datasource_item_id: Mapped[int] = mapped_column(Integer, doc="The item's position in the data source, from 0.")
    datasource_item: Mapped[dict[str, Any]] = mapped_column(JSON, doc="The row's item.")
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, doc="One grader result per testing criterion.")
    sample: Mapped[dict[str, Any]] = mapped_column(JSON, doc="OpenAI's sample: input, output, usage …")
    status: Mapped[OutputItemStatus] = mapped_column(
        Enum(OutputItemStatus, native_enum=False, length=8, values_callable=_values)
    )
