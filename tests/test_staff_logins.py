"""Staff logins (the console's sign-in, which the admin's login page sends to) are
throttled (django-axes): wrong passwords for one username from one
address lock that pair out for a while; nobody else is locked out by it."""

import json
import os
import subprocess
import sys

import pytest
from django.test import Client
from django.urls import reverse

from tests.test_settings import ROOT

pytestmark = pytest.mark.django_db

PASSWORD = "pw-priya-1-long"


@pytest.fixture
def priya(django_user_model, settings):
    settings.AXES_FAILURE_LIMIT = 5
    # Hashing is not what is tested: keep each of the many attempts quick.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return django_user_model.objects.create_superuser("priya", "priya@example.com", PASSWORD)


def log_in(address: str, username: str, password: str):
    """A browser at ``address`` submitting the admin's login form."""
    client = Client(REMOTE_ADDR=address)
    response = client.post(
        reverse("console:login"),
        {"username": username, "password": password, "next": "/admin/"},
    )
    return response, client


def test_wrong_passwords_lock_out_that_username_from_that_address(priya):
    for _ in range(4):
        response, _client = log_in("198.51.100.7", "priya", "guess")
        assert response.status_code == 200  # the form again, with its error
        assert "Please enter the correct username and password" in response.content.decode()
    response, _client = log_in("198.51.100.7", "priya", "guess")
    assert response.status_code == 429  # the fifth locks

    response, client = log_in("198.51.100.7", "priya", PASSWORD)  # right, but too late

    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302  # still not logged in


def test_a_lockout_locks_out_no_one_else(priya, django_user_model):
    django_user_model.objects.create_superuser("sam", "sam@example.com", PASSWORD)
    for _ in range(6):
        log_in("198.51.100.7", "priya", "guess")

    elsewhere, _client = log_in("203.0.113.9", "priya", PASSWORD)
    colleague, _client = log_in("198.51.100.7", "sam", PASSWORD)

    assert elsewhere.status_code == 302 and elsewhere["Location"] == "/admin/"
    assert colleague.status_code == 302 and colleague["Location"] == "/admin/"


def test_a_successful_login_starts_the_count_again(priya):
    for _ in range(4):
        log_in("198.51.100.7", "priya", "guess")
    response, _client = log_in("198.51.100.7", "priya", PASSWORD)
    assert response.status_code == 302
    for _ in range(4):
        log_in("198.51.100.7", "priya", "guess")
    response, _client = log_in("198.51.100.7", "priya", PASSWORD)
    assert response.status_code == 302


def test_a_forwarded_for_header_does_not_dodge_the_lockout(priya):
    """The address counted is the TCP peer's: a client varying X-Forwarded-For is one
    client."""
    client = Client(REMOTE_ADDR="198.51.100.7")
    for n in range(6):
        client.post(
            reverse("console:login"),
            {"username": "priya", "password": "guess", "next": "/admin/"},
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}",
        )
    response = client.post(
        reverse("console:login"),
        {"username": "priya", "password": PASSWORD, "next": "/admin/"},
        HTTP_X_FORWARDED_FOR="192.0.2.200",
    )
    assert response.status_code == 429


def test_behind_a_trusted_proxy_each_client_is_counted_on_its_own(priya, settings):
    """Behind the proxy every login comes from its address: counted by the TCP peer, one
    person's wrong passwords would lock the username out for every colleague."""
    settings.RENOTIFY_TRUSTED_PROXIES = "10.0.0.2"

    def via_proxy(client_address: str, password: str):
        return Client(REMOTE_ADDR="10.0.0.2").post(
            reverse("console:login"),
            {"username": "priya", "password": password, "next": "/admin/"},
            HTTP_X_FORWARDED_FOR=client_address,
        )

    for _ in range(6):
        via_proxy("198.51.100.7", "guess")
    assert via_proxy("198.51.100.7", PASSWORD).status_code == 429
    assert via_proxy("203.0.113.9", PASSWORD).status_code == 302


def axes_settings(tmp_path, **env_overrides) -> list:
    """The login throttle's settings as built from the environment (none of the caller's
    RENOTIFY_LOGIN_* variables, plus ``env_overrides``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENOTIFY_LOGIN_")}
    env.update(RENOTIFY_VAR_DIR=str(tmp_path), DEBUG="1", **env_overrides)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, django; from django.conf import settings; django.setup();"
            " print(json.dumps([settings.AXES_FAILURE_LIMIT,"
            " settings.AXES_COOLOFF_TIME.total_seconds(), settings.AXES_LOCKOUT_PARAMETERS]))",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_limits_come_from_the_environment_with_safe_defaults(tmp_path):
    assert axes_settings(tmp_path) == [5, 900.0, [["username", "ip_address"]]]
    assert axes_settings(
        tmp_path, RENOTIFY_LOGIN_FAILURE_LIMIT="10", RENOTIFY_LOGIN_COOLOFF_MINUTES="60"
    ) == [10, 3600.0, [["username", "ip_address"]]]
