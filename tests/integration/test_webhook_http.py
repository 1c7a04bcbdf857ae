"""ESP webhooks through gunicorn, as production serves them."""

import http.client
import subprocess
import sys
from base64 import b64encode
from pathlib import Path

import pytest

from campaigns.models import DeliveryEvent
from tests.integration.conftest import ROOT, stop, wait_for, worker_env
from tests.integration.support import _free_port

pytestmark = pytest.mark.integration
PAYLOAD = Path(__file__).parents[1] / "webhook_payloads" / "postmark" / "delivery.json"


@pytest.fixture
def gunicorn(services, transactional_db, tmp_path):
    port = _free_port()
    env = worker_env(tmp_path, RENOTIFY_WEBHOOK_ESPS="postmark")
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _answers(port), timeout=60, what="gunicorn", process=process)
        yield port
    finally:
        stop(process)
        log.close()


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def test_a_chunked_postmark_event_is_stored_whole(gunicorn):
    """It was answered 200 and stored as an empty unparseable body; later chunked events
    then deduplicated against that one and were lost."""
    for message_id in ("first-message", "second-message"):
        body = PAYLOAD.read_text().replace("{{message_id}}", message_id)
        body = body.replace("{{delivery_id}}", "1").replace("{{recipient}}", "pat@example.com")
        connection = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=10)
        auth = b64encode(b"test:webhook-secret").decode()
        connection.putrequest("POST", "/anymail/postmark/tracking/")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Authorization", f"Basic {auth}")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        data = body.encode()
        for start in range(0, len(data), 100):
            piece = data[start : start + 100]
            connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        connection.send(b"0\r\n\r\n")
        assert connection.getresponse().status == 200

    stored = DeliveryEvent.objects.order_by("pk")
    assert [e.event_type for e in stored] == ["delivered", "delivered"]
    assert [e.message_id for e in stored] == ["first-message", "second-message"]
    assert stored[0].raw["MessageID"] == "first-message"
