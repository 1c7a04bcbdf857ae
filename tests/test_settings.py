"""Production (DEBUG off) refuses to start with local-only secrets."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_check(tmp_path, **env_overrides) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"SECRET_KEY", "LEDGER_HMAC_KEY", "ANYMAIL_WEBHOOK_SECRET", "DEBUG", "DATABASE_URL"}
    }
    env.update(RENOTIFY_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION_SECRETS = {
    "SECRET_KEY": "Wq3vJm8sXe2LpRk7TyN4bHc9FgZu6DaQ1oVi5MwEr0xtKj2nYs8hPl3fUd7gCz4B",
    "LEDGER_HMAC_KEY": "pT5xQw2rLm9vZk3jHs7Nc4Ye8BfDu1Ga6XoRi0Kt3Wq",
    "ANYMAIL_WEBHOOK_SECRET": "esp:" + "z" * 30,
}


def test_production_with_its_secrets_passes_the_check(tmp_path):
    result = run_check(tmp_path, DEBUG="0", **PRODUCTION_SECRETS)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("missing", "check_id"),
    [("SECRET_KEY", "E001"), ("LEDGER_HMAC_KEY", "E002"), ("ANYMAIL_WEBHOOK_SECRET", "E003")],
)
def test_production_without_a_secret_fails_the_check(tmp_path, missing, check_id):
    secrets = {k: v for k, v in PRODUCTION_SECRETS.items() if k != missing}
    result = run_check(tmp_path, DEBUG="0", **secrets)
    assert result.returncode != 0
    assert f"renotify.{check_id}" in result.stderr
    assert f"{missing} is not set" in result.stderr


def test_local_debug_runs_on_a_generated_key(tmp_path):
    result = run_check(tmp_path, DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "secret_key").read_text()) >= 50


def test_wsgi_entry_point_refuses_to_start_without_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "LEDGER_HMAC_KEY"}}
    env.update(RENOTIFY_VAR_DIR=str(tmp_path), DEBUG="0")
    result = subprocess.run(
        [sys.executable, "-c", "import config.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "renotify.E001" in result.stderr


def database_options(tmp_path, **env_overrides) -> dict:
    """OPTIONS of the default database as settings build them for these variables."""
    env = {**os.environ, "RENOTIFY_VAR_DIR": str(tmp_path), "DEBUG": "1", **env_overrides}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, django; from django.conf import settings; django.setup();"
            " print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_postgresql_statements_are_prepared_unless_turned_off(tmp_path):
    url = "postgres://app@db.example:5432/renotify"  # settings only: nothing connects
    assert database_options(tmp_path, DATABASE_URL=url) == {
        "server_side_binding": True,
        "prepare_threshold": 5,
    }
    assert database_options(tmp_path, DATABASE_URL=url, DB_PREPARED_STATEMENTS="0") == {}


def production_env(tmp_path, **overrides) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "LEDGER_HMAC_KEY", "ANYMAIL_WEBHOOK_SECRET", "DATABASE_URL"}
        and k != "REDIS_URL"
    }
    env.update(RENOTIFY_VAR_DIR=str(tmp_path), DEBUG="0", **overrides)
    return env


@pytest.mark.parametrize(
    "command",
    [
        ["worker", "--pool=solo", "--without-mingle", "--without-gossip"],
        ["worker", "--concurrency=2", "--without-mingle", "--without-gossip"],
        ["beat", "--schedule", "{tmp}/beat-schedule"],
    ],
    ids=["worker-solo", "worker-prefork", "beat"],
)
def test_celery_refuses_to_start_without_secrets(tmp_path, command):
    """Celery swallows exceptions raised by signal handlers: a worker that only raised
    said "ready" and ran tasks with a per-host key. It must exit before consuming."""
    args = [part.replace("{tmp}", str(tmp_path)) for part in command]
    log = tmp_path / "celery.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args, "--loglevel=INFO"],
            cwd=ROOT,
            env=production_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            returncode = None
    output = log.read_text()
    assert returncode not in (None, 0), output
    assert "renotify.E001" in output and "renotify.E002" in output
    assert "ready." not in output and "Scheduler: Sending" not in output


@pytest.mark.parametrize(
    ("variable", "value", "check_id", "message"),
    [
        ("SECRET_KEY", "", "E001", "SECRET_KEY is empty"),
        ("SECRET_KEY", "short-key", "E001", "SECRET_KEY is too weak"),
        ("SECRET_KEY", "ab" * 40, "E001", "SECRET_KEY is too weak"),
        ("LEDGER_HMAC_KEY", "", "E002", "LEDGER_HMAC_KEY is not set"),
        ("LEDGER_HMAC_KEY", "k", "E002", "LEDGER_HMAC_KEY is too weak"),
        ("LEDGER_HMAC_KEY", "a" * 64, "E002", "LEDGER_HMAC_KEY is too weak"),
    ],
)
def test_production_refuses_empty_and_weak_secrets(tmp_path, variable, value, check_id, message):
    result = run_check(tmp_path, DEBUG="0", **{**PRODUCTION_SECRETS, variable: value})
    assert result.returncode != 0
    assert f"renotify.{check_id}" in result.stderr
    assert message in result.stderr
    assert "secrets.token_urlsafe" in result.stderr  # the hint says how to make one
