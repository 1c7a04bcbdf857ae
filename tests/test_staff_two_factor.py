"""Staff two-factor sign-in (console.twofactor, console.views.signin, console.middleware):
required with DEBUG off, as the tests run (every other test sets "optional" in
tests/conftest.py, for its force_login sessions); codes computed here from the device's
key with django-otp's own TOTP, as an authenticator app would."""

import os
import re
import subprocess
import sys
from base64 import b32decode
from datetime import timedelta
from html import unescape
from urllib.parse import quote

import pytest
import time_machine
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import StaffAction
from console import urls as console_urls
from console.twofactor import recovery_codes_renew
from tests.factories import campaign
from tests.test_settings import ROOT, run_check

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-staff-passphrase"
LOGIN, VERIFY, SETUP = "/console/login/", "/console/login/verify/", "/console/account/two-factor/"


@pytest.fixture(autouse=True)
def required(settings):
    settings.DEBUG = False
    settings.RENOTIFY_STAFF_2FA = "required"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def priya(db):
    """A superuser: every page would open for her password alone, were it not for 2FA."""
    return User.objects.create_superuser("priya", "priya@example.com", PASSWORD)


@pytest.fixture
def app(priya):
    """Priya's confirmed authenticator app."""
    return TOTPDevice.objects.create(user=priya, name="phone", confirmed=True)


def code(device: TOTPDevice | None = None, *, key: bytes | None = None) -> str:
    """The code an authenticator app shows now, for ``device`` or a raw ``key``."""
    if device is not None:
        device.refresh_from_db()
        key = device.bin_key
    totp = TOTP(key, step=30, t0=0, digits=6, drift=device.drift if device else 0)
    return f"{totp.token():06d}"


def sign_in(client: Client, next_path: str = "/admin/", password: str = PASSWORD):
    return client.post(
        f"{LOGIN}?next={quote(next_path)}", {"username": "priya", "password": password}
    )


def enter(client: Client, token: str, next_path: str = "/admin/"):
    return client.post(f"{VERIFY}?next={quote(next_path)}", {"code": token})


def trail_of(user: User) -> list[StaffAction]:
    """The staff audit trail's entries by ``user``, oldest first."""
    return list(StaffAction.objects.filter(by=user).order_by("id"))


def later(seconds: int = 31):
    """A later moment (each TOTP code is accepted once; wrong codes make the next wait)."""
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=True)


# A value of the right shape for each URL argument (the page need not exist: the code
# step comes first).
EXAMPLE_ARGS = {"pk": 1, "notice": 1, "action": "approve", "locale": "en"}


def guarded_pages() -> list[tuple[str, str]]:
    """(method, path) for every console page but the sign-in's own, and every admin page:
    the index, each model's list, the project's own admin pages."""
    open_pages = {"login", "login_verify", "logout", "two_factor"}
    pages = []
    for pattern in console_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        if pattern.name in open_pages:
            continue
        kwargs = {k: EXAMPLE_ARGS.get(k, 1) for k in pattern.pattern.regex.groupindex}
        pages.append(("post", reverse(f"console:{pattern.name}", kwargs=kwargs)))
    pages.append(("get", reverse("admin:index")))
    pages.append(("get", reverse("outbox_list")))
    for model in admin.site._registry:
        meta = model._meta
        pages.append(("get", reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")))
    return pages


# --- Required: nothing opens on a password alone ---------------------------------------


def test_a_password_only_session_is_sent_to_the_code_step_from_every_page(app):
    client = Client()
    response = sign_in(client, "/admin/campaigns/campaign/")
    assert response.status_code == 302
    assert response["Location"] == f"{VERIFY}?next=/admin/campaigns/campaign/"
    c = campaign(state="awaiting_approval")
    for method, path in guarded_pages():
        response = getattr(client, method)(path)
        assert response.status_code == 302, path
        assert response["Location"] == f"{VERIFY}?next={path}", path
    assert type(c).objects.get(pk=c.pk).state == "awaiting_approval"  # the POST did nothing

    response = enter(client, code(app), "/admin/campaigns/campaign/")

    assert response.status_code == 302 and response["Location"] == "/admin/campaigns/campaign/"
    for method, path in guarded_pages():
        if method == "get":
            assert client.get(path).status_code == 200, path


def test_staff_without_an_app_are_sent_to_set_one_up(priya):
    client = Client()
    response = sign_in(client, "/console/")
    assert response["Location"] == f"{SETUP}?next=/console/"
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"] == f"{SETUP}?next=/admin/"
    assert client.get(SETUP).status_code == 200


def test_sso_never_asks(settings, app):
    settings.RENOTIFY_STAFF_2FA = "sso"
    client = Client()
    response = sign_in(client, "/admin/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert "single sign-on" in client.get(SETUP).content.decode()


def test_optional_offers_the_code_step_but_never_forces_it(settings, app, django_user_model):
    settings.RENOTIFY_STAFF_2FA = "optional"
    client = Client()
    assert sign_in(client, "/admin/")["Location"] == f"{VERIFY}?next=/admin/"
    assert client.get("/admin/").status_code == 200
    django_user_model.objects.create_superuser("sam", "sam@example.com", PASSWORD)
    other = Client()
    response = other.post(f"{LOGIN}?next=/admin/", {"username": "sam", "password": PASSWORD})
    assert response["Location"] == "/admin/"  # no app: straight in


def test_the_admins_login_page_is_the_console_sign_in_keeping_next(app):
    client = Client()
    page = client.get("/admin/login/?next=/admin/campaigns/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'action="/console/login/"' in body
    assert '<input type="hidden" name="next" value="/admin/campaigns/">' in body
    # Its form posts to the console's sign-in, which asks for the code next.
    signed = client.post(LOGIN, {"username": "priya", "password": PASSWORD, "next": "/admin/"})
    assert signed["Location"].startswith(VERIFY)
    anonymous = Client().get("/admin/campaigns/")
    assert anonymous["Location"].startswith("/admin/login/")


def test_the_code_step_tells_nothing_to_someone_without_the_password(app):
    client = Client()
    assert client.get(VERIFY)["Location"].startswith(LOGIN)
    response = sign_in(client, "/admin/", password="a-guess")
    assert response.status_code == 200
    assert "Please enter the correct username and password" in response.content.decode()
    assert client.get(VERIFY)["Location"].startswith(LOGIN)
    assert enter(client, code(app))["Location"].startswith(LOGIN)


def test_a_code_is_accepted_once(app):
    client = Client()
    sign_in(client)
    token = code(app)
    assert enter(client, token)["Location"] == "/admin/"
    client.post("/console/logout/")
    sign_in(client)
    response = enter(client, token)
    assert response.status_code == 200 and "That code is not right" in response.content.decode()


# --- Recovery codes ----------------------------------------------------------------------


def test_recovery_codes_work_exactly_once_each(app, priya):
    codes = recovery_codes_renew(user=priya)
    assert len(codes) == len(set(codes)) == 10
    client = Client()
    sign_in(client)
    assert enter(client, codes[0].upper())["Location"] == "/admin/"  # case forgiven
    client.post("/console/logout/")

    with later():
        sign_in(client)
        response = enter(client, codes[0])
        assert "That code is not right (or was used already)" in response.content.decode()
    with later(120):
        assert enter(client, codes[1])["Location"] == "/admin/"
    assert StaticToken.objects.count() == 8


def test_a_new_set_of_recovery_codes_invalidates_the_old(app, priya):
    old = recovery_codes_renew(user=priya)
    client = Client()
    sign_in(client)
    enter(client, code(app))

    page = client.post(SETUP, {"action": "recovery_codes"})

    new = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", page.content.decode())
    assert len(new) == 10 and not set(new) & set(old)
    assert "They are shown only now" in page.content.decode()
    assert "Recovery codes left: <strong>10</strong>" in client.get(SETUP).content.decode()
    assert new[0] not in client.get(SETUP).content.decode()  # shown once
    client.post("/console/logout/")
    sign_in(client)
    assert "That code is not right" in enter(client, old[0]).content.decode()
    with later():
        assert enter(client, new[0])["Location"] == "/admin/"


# --- Throttling ---------------------------------------------------------------------------


def test_wrong_codes_are_throttled(app):
    client = Client()
    sign_in(client)
    assert enter(client, "000000").status_code == 200
    refused = enter(client, code(app))  # right, but too soon after a wrong one
    assert refused.status_code == 429
    assert "Too many wrong codes: try again after" in refused.content.decode()
    assert client.get("/admin/").status_code != 200
    with later(3):
        assert enter(client, code(app))["Location"] == "/admin/"
    # The wrong code is a failed sign-in in the staff audit trail (with the right
    # password); the refused one never reached a device.
    failed = [e.detail for e in trail_of(app.user) if e.action == "login_failed"]
    assert failed == [{"step": "second factor"}]


def test_too_many_wrong_codes_end_the_sign_in(settings, app):
    settings.RENOTIFY_2FA_FAILURE_LIMIT = 3
    client = Client()
    sign_in(client)
    for seconds in (0, 5, 60):
        with later(seconds):
            response = enter(client, "123456")
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)
    page = client.get(response["Location"])
    assert "Too many wrong codes: sign in again with your password." in page.content.decode()
    assert client.get("/admin/")["Location"].startswith("/admin/login/")  # signed out
    app.refresh_from_db()
    assert app.throttling_failure_count >= 2  # and the device still makes them wait


def test_the_sign_in_locks_out_after_the_failure_limit_and_says_so(settings, priya):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(3):
        sign_in(client, password="a-guess")
    response = sign_in(client)  # the right password, too late
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert client.get(VERIFY)["Location"].startswith(LOGIN)


# --- Setting up ------------------------------------------------------------------------------


def test_the_code_from_the_secret_on_the_setup_page_confirms_the_app(priya):
    client = Client()
    sign_in(client, "/console/")
    page = client.get(f"{SETUP}?next=/console/").content.decode()
    assert '<svg role="img" aria-label="QR code for your authenticator app"' in page
    secret = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', page).group(1)
    key = b32decode(secret.replace(" ", ""))
    assert TOTPDevice.objects.get(user=priya, confirmed=False).bin_key == key

    wrong = client.post(SETUP, {"action": "confirm", "code": "000000"})
    assert "That code is not right" in wrong.content.decode()
    assert not TOTPDevice.objects.filter(confirmed=True).exists()
    assert client.get("/admin/")["Location"].startswith(SETUP)

    with later(3):
        done = client.post(f"{SETUP}?next=/console/", {"action": "confirm", "code": code(key=key)})

    body = unescape(done.content.decode())
    assert "Your authenticator app is set up." in body
    assert len(re.findall(r"<li><code>[a-z2-7]{8}</code></li>", body)) == 10
    assert TOTPDevice.objects.get(user=priya).confirmed
    assert client.get("/admin/").status_code == 200  # this session is verified now
    # In the staff audit trail: the setup and its recovery codes (the wrong code was no
    # sign-in: it confirmed nothing).
    trail = trail_of(priya)
    assert [(e.action, e.detail) for e in trail if e.action != "login"] == [
        ("two_factor_setup", {"replaced": False}),
        ("two_factor_recovery_codes", {"codes": 10}),
    ]
    assert {e.path for e in trail if e.action.startswith("two_factor")} == {SETUP}


def test_replacing_the_app_needs_the_code_step_first(app, priya):
    codes = recovery_codes_renew(user=priya)
    client = Client()
    sign_in(client)
    response = client.post(SETUP, {"action": "recovery_codes"})
    assert response.status_code == 302 and response["Location"].startswith(VERIFY)
    response = client.post(SETUP, {"action": "replace"})
    assert response["Location"].startswith(VERIFY)
    assert sorted(StaticToken.objects.values_list("token", flat=True)) == sorted(codes)
    assert list(TOTPDevice.objects.values_list("pk", flat=True)) == [app.pk]

    enter(client, code(app))
    page = client.post(SETUP, {"action": "replace"}).content.decode()
    secret = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', page).group(1)
    with later():
        client.post(
            SETUP, {"action": "confirm", "code": code(key=b32decode(secret.replace(" ", "")))}
        )
    assert list(TOTPDevice.objects.values_list("confirmed", flat=True)) == [True]
    assert not TOTPDevice.objects.filter(pk=app.pk).exists()  # the old app stops working
    assert [e.detail for e in trail_of(priya) if e.action == "two_factor_setup"] == [
        {"replaced": True}
    ]


def test_signing_out_is_a_post(app):
    client = Client()
    sign_in(client)
    enter(client, code(app))
    assert client.get("/console/logout/").status_code == 405
    assert client.get("/admin/").status_code == 200
    response = client.post("/console/logout/")
    assert response["Location"] == LOGIN
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


def test_the_console_header_links_to_two_factor_and_signs_out_by_post(settings, priya):
    settings.RENOTIFY_STAFF_2FA = "optional"
    client = Client()
    sign_in(client)
    page = client.get(SETUP).content.decode()
    assert f'<a href="{SETUP}">Two-factor</a>' in page
    assert '<form method="post" action="/console/logout/">' in page


# --- The setting -----------------------------------------------------------------------------


def staff_2fa_default(tmp_path, debug: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RENOTIFY_STAFF_2FA"}
    env.update(
        RENOTIFY_VAR_DIR=str(tmp_path), DEBUG=debug, DJANGO_SETTINGS_MODULE="config.settings"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; from django.conf import settings; "
            "django.setup(); print(settings.RENOTIFY_STAFF_2FA)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def test_required_unless_debug_is_on(tmp_path):
    assert staff_2fa_default(tmp_path, "0") == "required"
    assert staff_2fa_default(tmp_path, "1") == "optional"


def test_an_unknown_mode_is_refused_at_start(tmp_path):
    result = run_check(tmp_path, DEBUG="1", RENOTIFY_STAFF_2FA="sometimes")
    assert result.returncode != 0
    assert "renotify.E022" in result.stderr and "'sometimes'" in result.stderr
    assert run_check(tmp_path, DEBUG="1", RENOTIFY_STAFF_2FA="sso").returncode == 0


def test_a_lost_second_factor_is_reset_by_the_command(app, priya):
    from io import StringIO

    from django.core.management import CommandError, call_command

    recovery_codes_renew(user=priya)
    out = StringIO()
    call_command("staff_two_factor_reset", "priya", stdout=out)
    assert out.getvalue().startswith("priya: 2 second factors removed")
    assert not TOTPDevice.objects.exists() and not StaticToken.objects.exists()
    [reset] = StaffAction.objects.filter(action="two_factor_reset")
    assert (reset.by, reset.target_id, reset.detail) == (
        None,
        str(priya.pk),
        {"devices": 2, "via": "system"},
    )
    client = Client()
    assert sign_in(client)["Location"] == f"{SETUP}?next=/admin/"
    with pytest.raises(CommandError, match="no user named"):
        call_command("staff_two_factor_reset", "ghost")


@pytest.mark.parametrize("path", ["/n/some-token/", "/api/v1/members/", "/healthz"])
def test_members_pages_and_the_api_never_load_the_user_for_it(rf, path):
    """The path is looked at first: a member's page or an API call reads no session."""
    from django.http import HttpResponse

    from console.middleware import StaffTwoFactorMiddleware

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"request.user.{name} was read")

    request = rf.get(path)
    request.user = Untouchable()
    response = StaffTwoFactorMiddleware(lambda r: HttpResponse("the page"))(request)
    assert response.content == b"the page"
