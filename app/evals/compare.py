"""Side by side: several runs of one eval (one per model) read as pass rates with confidence intervals, and the rows
on which the models disagree.

A pass rate is a binomial proportion, so its interval is the Wilson score interval (scipy's ``binomtest``): unlike
the normal approximation it stays inside [0, 1] and is honest at the small sample sizes evals have. Errored rows
count as not passed: a model that cannot answer a row has not passed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import binomtest

CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """One run's verdict on one row: its status, each criterion's pass, and the answer graded."""

    status: str  # pass | fail | error
    passed: tuple[bool, ...]  # per criterion, in the eval's order (empty when the row errored)
    output_text: str
    item: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RunOutcomes:
    run_id: str
    model: str | None
    status: str
    rows: Mapping[int, RowOutcome]


@dataclass(frozen=True, slots=True)
class Rate:
    passed: int
    total: int

    @property
    def value(self) -> float | None:
        return self.passed / self.total if self.total else None

    def interval(self) -> tuple[float, float] | None:
        if not self.total:
            return None
        ci = binomtest(self.passed, self.total).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
        return float(ci.low), float(ci.high)

    def as_dict(self) -> dict[str, Any]:
        interval = self.interval()
        return {
            "passed": self.passed,
            "total": self.total,
            "pass_rate": self.value,
            "ci_low": interval[0] if interval else None,
            "ci_high": interval[1] if interval else None,
        }


@dataclass(frozen=True)
class Comparison:
    criteria: Sequence[tuple[str, str]]  # (criterion id, name)
    runs: Sequence[RunOutcomes]
    rates: dict[str, list[Rate]] = field(default_factory=dict)  # run id -> per criterion
    overall: dict[str, Rate] = field(default_factory=dict)  # run id -> all criteria passed
    disagreements: list[int] = field(default_factory=list)  # row ids, ascending

    def as_dict(self, *, disagreements_limit: int) -> dict[str, Any]:
        shown = self.disagreements[:disagreements_limit]
        return {
            "object": "eval.comparison",
            "confidence_level": CONFIDENCE,
            "runs": [
                {
                    "run_id": r.run_id,
                    "model": r.model,
                    "status": r.status,
                    "overall": self.overall[r.run_id].as_dict(),
                    "per_testing_criteria": [
                        {"testing_criteria": cid, "name": name, **rate.as_dict()}
                        for (cid, name), rate in zip(self.criteria, self.rates[r.run_id], strict=True)
                    ],
                }
                for r in self.runs
            ],
            "disagreements": {
                "total": len(self.disagreements),
                "has_more": len(self.disagreements) > len(shown),
                "data": [self._row(row_id) for row_id in shown],
            },
        }

    def _row(self, row_id: int) -> dict[str, Any]:
        item = next((r.rows[row_id].item for r in self.runs if row_id in r.rows), {})
        return {
            "datasource_item_id": row_id,
            "datasource_item": dict(item),
            "outcomes": [
                {
                    "run_id": r.run_id,
                    "model": r.model,
                    "status": r.rows[row_id].status if row_id in r.rows else None,
                    "passed": list(r.rows[row_id].passed) if row_id in r.rows else None,
                    "output_text": r.rows[row_id].output_text if row_id in r.rows else None,
                }
                for r in self.runs
            ],
        }


def compare(criteria: Sequence[tuple[str, str]], runs: Sequence[RunOutcomes]) -> Comparison:
    """Pass rates of each run per criterion and overall, over the rows each run graded; the rows graded by every
    run on which their verdicts (status, or a criterion's pass) differ."""
    comparison = Comparison(criteria, runs)
    for run in runs:
        rows = list(run.rows.values())
        comparison.rates[run.run_id] = [
            Rate(sum(1 for row in rows if row.passed and row.passed[i]), len(rows)) for i in range(len(criteria))
        ]
        comparison.overall[run.run_id] = Rate(sum(1 for row in rows if row.status == "pass"), len(rows))
    if runs:
        common = set.intersection(*(set(r.rows) for r in runs))
        comparison.disagreements.extend(
            row_id
            for row_id in sorted(common)
            if len({(r.rows[row_id].status, r.rows[row_id].passed) for r in runs}) > 1
        )
    return comparison
