"""A migration's report: what moved, how, and the parity figures; as JSON (kept with the migration) and markdown."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.kit.schemas import Schema, UnixTime
from app.migration.models import Migration, MigrationStatus
from app.migration.schemas import MigrationItem


class ReportSummary(Schema):
    jobs: int
    completed: int
    failed: int
    skipped: int
    parity_measured: int
    parity_holds: int | None = Field(description="Items whose parity holds against max_regression; null: none set.")
    switched: bool


class MigrationReport(Schema):
    object: Literal["migration.report"] = "migration.report"
    migration_id: str
    provider: str
    target_provider: str
    base_model: str
    status: MigrationStatus
    max_regression: float | None
    created_at: UnixTime
    finished_at: UnixTime | None
    switched_at: UnixTime | None
    summary: ReportSummary
    items: list[MigrationItem]


def build_report(migration: Migration) -> MigrationReport:
    items = [MigrationItem.model_validate(item) for item in migration.items]
    measured = [i for i in items if i.parity is not None and i.parity.status == "completed"]
    max_regression = (migration.options.get("parity") or {}).get("max_regression")
    return MigrationReport(
        migration_id=migration.id,
        provider=migration.provider,
        target_provider=migration.target_provider,
        base_model=migration.base_model,
        status=migration.status,
        max_regression=max_regression,
        created_at=migration.created_at,
        finished_at=migration.finished_at,
        switched_at=migration.switched_at,
        summary=ReportSummary(
            jobs=len(items),
            completed=sum(1 for i in items if i.status == "completed"),
            failed=sum(1 for i in items if i.status == "failed"),
            skipped=sum(1 for i in items if i.status == "skipped"),
            parity_measured=len(measured),
            parity_holds=sum(1 for i in measured if i.parity and i.parity.holds)
            if max_regression is not None
            else None,
            switched=migration.switched_at is not None,
        ),
        items=items,
    )


def _pct(value: object) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, int | float) else "-"


def _cell(text: object) -> str:
    return str(text if text is not None else "-").replace("|", "\\|").replace("\n", " ")


def markdown(report: MigrationReport) -> str:
    """The report for people: a summary table, then each job's files, translations and parity."""
    s = report.summary
    lines = [
        f"# Migration {report.migration_id}: {report.provider} → {report.target_provider} ({report.base_model})",
        "",
        f"Status **{report.status.value}**; {s.completed} of {s.jobs} jobs moved, {s.failed} failed, {s.skipped} "
        f"skipped; parity measured for {s.parity_measured}"
        + (
            f", holding for {s.parity_holds} (max regression {report.max_regression:g} points)"
            if s.parity_holds is not None and report.max_regression is not None
            else ""
        )
        + ("; **switched**." if s.switched else "; not switched yet."),
        "",
        "| upstream model | alias | how | new model | status |",
        "| --- | --- | --- | --- | --- |",
    ]
    for item in report.items:
        lines.append(
            f"| {_cell(item.upstream_model)} | {_cell(item.alias)} | {item.action} | {_cell(item.local_model)} | "
            f"{item.status}{': ' + _cell(item.error['message']) if item.error else ''} |"
        )
    for item in report.items:
        lines += ["", f"## {item.upstream_job} ({_cell(item.upstream_model)})", ""]
        if item.reason:
            lines += [f"- Note: {item.reason}"]
        for name, copy in (("training", item.training_file), ("validation", item.validation_file)):
            if copy is not None:
                where = f"→ {copy.local_id} ({copy.bytes} bytes, sha256 {copy.sha256})" if copy.local_id else ""
                lines.append(f"- {name} file {copy.upstream_id}: {copy.state} {where}".rstrip())
        if item.distillation is not None:
            d = item.distillation
            lines.append(
                f"- distilled: {d.answered} of {d.prompts} prompts answered ({d.failed} refused) → training "
                f"{d.training_file}, held out {d.holdout_file or '-'}"
            )
        if item.local_job:
            lines.append(f"- new job {item.local_job} → {_cell(item.local_model)}")
        if item.alias_versions:
            versions = ", ".join(f"{k} v{v}" for k, v in sorted(item.alias_versions.items(), key=lambda kv: kv[1]))
            lines.append(f"- alias `{item.alias}`: {versions}")
        if item.translations:
            lines += ["", "| field | upstream | here | why |", "| --- | --- | --- | --- |"]
            lines += [
                f"| {t.field} | {_cell(t.upstream)} | {_cell(t.local)} | {_cell(t.note)} |" for t in item.translations
            ]
        parity = item.parity
        if parity is not None:
            lines += [
                "",
                f"Parity on {parity.rows} rows (eval {parity.eval_id}), {parity.disagreements} rows where they "
                "disagree"
                + ("" if parity.holds is None else ("; **holds**" if parity.holds else "; **does not hold**")),
                "",
                "| criterion | upstream | new | difference |",
                "| --- | --- | --- | --- |",
            ]
            for c in parity.criteria:
                diff = f"{c.difference:+.1f} points" if c.difference is not None else "-"
                lines.append(
                    f"| {_cell(c.name)} | {_pct(c.upstream.get('pass_rate'))} ({c.upstream.get('passed')}/"
                    f"{c.upstream.get('total')}) | {_pct(c.migrated.get('pass_rate'))} ({c.migrated.get('passed')}/"
                    f"{c.migrated.get('total')}) | {diff} |"
                )
            for example in parity.examples:
                lines.append(
                    f"- disagreement: upstream {_cell(example.get('upstream'))!s:.120} / new "
                    f"{_cell(example.get('migrated'))!s:.120}"
                )
    return "\n".join(lines) + "\n"
