"""Member links act for the member and never expire: no log line may hold one."""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings as django_settings
from django.test import Client
from gunicorn.config import Config

from campaigns import tokens
from config.gunicorn import RedactingLogger
from config.logredact import REDACTED, member_links_redact

pytestmark = pytest.mark.django_db

DELIVERY_ID, MEMBER_ID = 4242, 77


def member_links() -> list[str]:
    """Every kind of member link the site mints, as paths."""
    return [
        tokens.NOTICE_PATH + tokens.notice_token(DELIVERY_ID) + "/",
        tokens.UNSUBSCRIBE_PATH + tokens.unsubscribe_token(DELIVERY_ID) + "/",
        tokens.PREFERENCES_PATH + tokens.member_token(MEMBER_ID) + "/",
    ]


def secret_parts() -> list[str]:
    """The tokens themselves: what must not be in any line."""
    return [link.strip("/").split("/", 1)[1] for link in member_links()]


@pytest.fixture
def console():
    """What the project's console handler (LOGGING) writes."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    buffer = StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def test_every_kind_of_member_link_is_redacted_wherever_it_stands_in_a_line():
    for link, token in zip(member_links(), secret_parts(), strict=True):
        line = f'GET {link}?lang=de HTTP/1.1 "https://privacy.example.com{link}" {link}x/'
        redacted = member_links_redact(line)
        assert token not in redacted
        assert redacted.count(f"/{REDACTED}/") == 3


def test_a_404_and_a_400_on_member_links_log_no_token(console):
    client = Client()
    notice, unsubscribe, preferences = member_links()
    assert client.get(notice + "extra/").status_code == 404
    assert client.get(preferences + "extra/").status_code == 404
    assert client.post(unsubscribe, "List-Unsubscribe=One-Click", content_type="text/plain")
    tampered = notice[:-3] + "xx/"
    assert client.post(tampered, {"action": "object"}).status_code in (400, 403)
    assert client.get(tampered).status_code == 400  # the friendly bad-link page

    logged = console.getvalue()
    assert "Not Found: /n/[redacted]/extra/" in logged
    assert "Bad Request: /n/[redacted]/" in logged
    for token in [*secret_parts(), tampered.split("/")[2]]:
        assert token not in logged


def test_an_exception_logged_with_a_member_link_in_it_is_redacted(console):
    notice = member_links()[0]
    try:
        raise ValueError(f"while handling {notice}")
    except ValueError:
        logging.getLogger("django.request").exception("Internal Server Error: %s", notice)
    logged = console.getvalue()
    assert "Internal Server Error: /n/[redacted]/" in logged
    assert "while handling /n/[redacted]/" in logged
    assert secret_parts()[0] not in logged


def test_gunicorns_logger_redacts_the_access_line_and_error_lines(tmp_path):
    config = Config()
    config.set("accesslog", str(tmp_path / "access.log"))
    config.set("errorlog", str(tmp_path / "error.log"))
    config.set("access_log_format", '"%(r)s" %(s)s %(U)s?%(q)s "%(f)s"')
    logger = RedactingLogger(config)
    notice = member_links()[0]
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": notice + "?lang=de",
        "PATH_INFO": notice,
        "QUERY_STRING": "lang=de",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": "https://privacy.example.com" + notice,
        "REMOTE_ADDR": "81.2.69.142",
    }
    response = SimpleNamespace(status="200 OK", headers=[], sent=120)
    logger.access(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=3))
    logger.error("Error handling request %s", notice)
    for handler in [*logger.access_log.handlers, *logger.error_log.handlers]:
        handler.flush()

    access = (tmp_path / "access.log").read_text()
    errors = (tmp_path / "error.log").read_text()
    assert access.strip() == (
        '"GET /n/[redacted]/?lang=de HTTP/1.1" 200 /n/[redacted]/?lang=de'
        ' "https://privacy.example.com/n/[redacted]/"'
    )
    assert "Error handling request /n/[redacted]/" in errors
    assert secret_parts()[0] not in access + errors


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def control_socket_off() -> list[str]:
    """Newer gunicorns open a control socket in the user's home: not for a test's server."""
    return ["--no-control-socket"] if "control_socket_disable" in Config().settings else []


def test_gunicorn_started_with_the_project_config_logs_member_links_redacted(tmp_path):
    """The production command, on a free port: its access log holds no token."""
    port = free_port()
    access_log = tmp_path / "access.log"
    base = Path(django_settings.BASE_DIR)
    env = {
        **os.environ,
        "DEBUG": "1",
        "RENOTIFY_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "config/gunicorn.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--access-logfile",
            str(access_log),
            *control_socket_off(),
            "config.wsgi",
        ],
        cwd=base,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        notice = member_links()[0]
        status = None
        deadline = time.monotonic() + 30
        while status is None and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{notice}extra/?lang=de", timeout=5)
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                time.sleep(0.2)  # not listening yet
        assert status == 404
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=30)
    logged = access_log.read_text()
    assert '"GET /n/[redacted]/extra/?lang=de HTTP/1.1" 404' in logged, errors.decode()
    assert secret_parts()[0] not in logged + errors.decode()
