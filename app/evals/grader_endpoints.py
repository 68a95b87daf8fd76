"""/v1/fine_tuning/alpha/graders/run and /validate: OpenAI's graders API, to try a grader on one sample.

Model graders judge through the inference gateway as the caller's project (usage metered as for any call).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from app.auth.principal import PrincipalDep
from app.evals.graders import Sample, grade, parse_grader
from app.evals.graders.schemas import (
    RunGraderRequest,
    RunGraderResponse,
    ValidateGraderRequest,
    ValidateGraderResponse,
)
from app.evals.judge import GatewayJudge

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders", tags=["Graders"])


@router.post("/run", response_model=RunGraderResponse)
async def run_grader(body: RunGraderRequest, request: Request, principal: PrincipalDep) -> RunGraderResponse:
    """Grade one model sample (and its dataset item) with a grader."""
    grader = parse_grader(body.grader, "grader", for_eval=False)
    started = time.perf_counter()
    judge = GatewayJudge(request.app.state.inference, principal)
    result = await grade(grader, body.item or {}, Sample.of(body.model_sample), judge)
    return RunGraderResponse.of(result, time.perf_counter() - started)


@router.post("/validate", response_model=ValidateGraderResponse)
async def validate_grader(body: ValidateGraderRequest, _: PrincipalDep) -> ValidateGraderResponse:
    """Check a grader's configuration (a 400 names the field at fault)."""
    return ValidateGraderResponse.of(parse_grader(body.grader, "grader", for_eval=False))
