"""schemathesis against the API's own OpenAPI schema, in-process (no network): for every
operation, generated requests never get a server error, and every answer (problems
included) is one the schema declares, with a body that matches it.

Generic on purpose: it reads the schema the app serves, so every endpoint added later is
tested here as it is mounted, with nothing to write per endpoint. A key with every
scope, a few members, the purpose and two campaigns give the generated requests
something to find. Bounded: a fixed number of examples per operation, derandomised so
that CI runs the same requests every time.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.models import ApiClient, Scope
from api.services.clients import api_client_create
from config.chunked import chunked_bodies_read
from tests.factories import MemberFactory, ai_training, campaign, staff_user

EXAMPLES_PER_OPERATION = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# config.wsgi's application, without its refusal to start on test settings' secrets
application = chunked_bodies_read(get_wsgi_application())
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@pytest.fixture
def connection_kept():
    """The app is called as a server would call it, and a server's request signals close
    the database connection after each request; the test's transaction needs it open
    (Django's test client does the same)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def key(db, connection_kept):
    """A key with every scope and room for every generated request, and a little data."""
    ines = staff_user("ines", "api.manage_apiclient")
    client, key = api_client_create(name="schemathesis", scopes=list(Scope.values), by=ines)
    ApiClient.objects.filter(pk=client.pk).update(rate="1000000/m")
    ai_training()
    for external_id in ("0", "1", "member-1"):
        MemberFactory(external_id=external_id)
    for pk in (1, 2):
        campaign(pk=pk)
    return key


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_answer_is_one_the_schema_declares_and_none_is_a_server_error(case, key):
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)
