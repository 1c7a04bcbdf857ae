"""Pipelines read a gate's state: ``manage.py gate_status`` (exit 1 while closed, 0 once
open, 2 for no such gate; text or JSON) and ``GET /api/v1/gates/...`` (the same
document, ``suppressions:read``)."""

import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from accounts.selectors import suppression_feed_head
from api.models import Scope
from api.services.clients import api_client_create
from gates.services import consumer_confirmation_record, gate_open, gate_propose
from tests.factories import staff_user
from tests.gates_helpers import PLANNED, told_place

pytestmark = pytest.mark.django_db


@pytest.fixture
def place(purpose):
    return told_place(purpose)


def status(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("gate_status", *args, stdout=out)
    except SystemExit as leaving:
        return int(leaving.code or 0), out.getvalue()
    return 0, out.getvalue()


def opened(place):
    gate = place.gate()
    head = suppression_feed_head(purpose=place.purpose)
    consumer_confirmation_record(gate=gate, statement="applied", cursor=head, by=place.ben)
    gate_propose(gate=gate, by=place.ben)
    gate_open(gate=gate, by=place.cy)
    return gate


def test_a_closed_gate_exits_1_and_says_which_conditions_are_unmet(place):
    place.gate()
    code, text = status("--purpose", "ai-training", "--jurisdiction", "UK")
    assert code == 1
    assert (
        text.splitlines()[0]
        == f"ai-training in UK: CLOSED (opens to opt_out, planned {PLANNED.isoformat()})"
    )
    assert "  [met] Named campaigns completed: 1 of 1 completed" in text
    assert "  [UNMET] Suppression feed applied by every consumer: no consumer registered" in text


def test_an_open_gate_exits_0_with_the_same_figures_as_json(place):
    opened(place)
    code, text = status("--purpose", "ai-training", "--jurisdiction", "UK", "--json")
    assert code == 0
    (gate,) = json.loads(text)["gates"]
    assert (gate["state"], gate["open"], gate["conditions_met"]) == ("open", True, True)
    assert [c["key"] for c in gate["conditions"]] == [
        "campaigns",
        "window",
        "reach",
        "consumers",
        "ledger",
    ]
    reach = gate["conditions"][2]
    assert reach["numbers"]["campaigns"][0] | {"campaign": 0} == {
        "campaign": 0,
        "reached": 10,
        "targeted": 10,
        "met": True,
    }


def test_no_gate_for_the_place_asked_is_exit_2(place):
    place.gate()
    with pytest.raises(CommandError, match="no processing gate for ai-training in EU") as error:
        call_command("gate_status", "--purpose", "ai-training", "--jurisdiction", "EU")
    assert error.value.returncode == 2


def test_every_gate_is_listed_without_filters_and_any_closed_one_exits_1(place):
    place.gate()
    code, text = status()
    assert code == 1 and text.startswith("ai-training in UK: CLOSED")


def get(path: str, scopes) -> tuple[int, dict]:
    ines = User.objects.filter(username="ines").first() or staff_user(
        "ines", "api.manage_apiclient"
    )
    _client, key = api_client_create(name="pipeline", scopes=scopes, by=ines)
    response = Client().get(path, headers={"Authorization": f"Bearer {key}"})
    return response.status_code, response.json()


def test_the_api_answers_what_the_command_prints(place):
    place.gate()
    code, body = get("/api/v1/gates/ai-training/UK", [Scope.SUPPRESSIONS_READ])
    assert code == 200
    _exit, text = status("--json")
    printed = json.loads(text)["gates"][0]
    assert (body["state"], body["open"], body["planned_opening"]) == (
        "closed",
        False,
        PLANNED.isoformat(),
    )
    strip = lambda gate: [(c["key"], c["met"]) for c in gate["conditions"]]  # noqa: E731
    assert strip(body) == strip(printed)


def test_the_api_lists_every_gate_and_refuses_without_the_feed_scope(place):
    place.gate()
    code, body = get("/api/v1/gates", [Scope.SUPPRESSIONS_READ])
    assert code == 200 and [g["jurisdiction"] for g in body["gates"]] == ["UK"]
    assert get("/api/v1/gates", [Scope.CAMPAIGNS_READ])[0] == 403


def test_the_api_says_404_for_a_place_without_a_gate(place):
    code, body = get("/api/v1/gates/ai-training/US", [Scope.SUPPRESSIONS_READ])
    assert code == 404 and "no processing gate" in body["detail"]
