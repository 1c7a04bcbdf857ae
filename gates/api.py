"""``/api/v1/gates``: processing gates as pipelines read them (``suppressions:read``: the
systems that follow the suppression feed are the ones a gate holds back).

Mounted into the API by ``config.urls`` (the gates sit above the API in the layers, so
the API cannot import them). The same figures as ``manage.py gate_status``
(``GateStatus.as_dict``); a pipeline refuses to start unless ``open`` is true.
"""

from datetime import date, datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from api.auth import scope_require
from api.models import Scope
from gates.selectors import gate_evaluate, gate_get, gates_list

router = Router(tags=["gates"])


class ConditionOut(Schema):
    key: Literal["campaigns", "window", "reach", "consumers", "ledger"]
    label: str
    met: bool
    figure: str = Field(description='what decides it, e.g. "reach 93.1% of 10,000 ≥ 90%"')
    numbers: dict[str, Any] = Field(description="the figures behind it")


class GateOut(Schema):
    purpose: str
    jurisdiction: str
    state: Literal["closed", "open"]
    open: bool = Field(description="true only once two people opened it; pipelines wait for it")
    opens_to: Literal["opt_out", "opt_in"]
    planned_opening: date
    proposed_by: str | None
    proposed_at: datetime | None
    opened_at: datetime | None
    policy_mode: str = Field(description="the jurisdiction's policy for the purpose now")
    policy_agrees: bool = Field(
        description="false when the policy was changed outside the gate (look before you run)"
    )
    conditions_met: bool
    conditions: list[ConditionOut]
    evaluated_at: datetime


class GatesOut(Schema):
    gates: list[GateOut]


@router.get("", response=GatesOut)
def gates_read(request: HttpRequest) -> dict[str, Any]:
    """Every processing gate with its state and conditions (``suppressions:read``)."""
    scope_require(request, Scope.SUPPRESSIONS_READ)
    return {"gates": [gate_evaluate(gate=gate).as_dict() for gate in gates_list()]}


@router.get("/{purpose_slug}/{jurisdiction}", response=GateOut)
def gate_read(request: HttpRequest, purpose_slug: str, jurisdiction: str) -> dict[str, Any]:
    """One gate's state and conditions; 404 when the purpose has no gate there."""
    scope_require(request, Scope.SUPPRESSIONS_READ)
    gate = gate_get(purpose_slug=purpose_slug, jurisdiction=jurisdiction)
    if gate is None:
        raise HttpError(404, f"no processing gate for {purpose_slug} in {jurisdiction}")
    return gate_evaluate(gate=gate).as_dict()
