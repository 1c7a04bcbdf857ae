"""A campaign of a few thousand members sent for real: beat's start task, the fan-out and
the sender chain run on a Celery worker (Redis, PostgreSQL) and hand every message to
Django's SMTP backend, which talks to a local SMTP server. Each message is then read
back the way a mail client would read it.
"""

import re
import time
from collections import Counter
from email.message import EmailMessage

import pytest

from accounts.models import Member
from campaigns import tokens
from campaigns.models import UNFINISHED_STATUSES, Delivery
from campaigns.tasks import campaigns_start_due
from tests.integration.conftest import wait_for
from tests.integration.support import (
    EXPECTED_LOCALE,
    SUBJECTS,
    members_create,
    multilingual_campaign,
    sending_worker,
    smtp_sink,
)

pytestmark = pytest.mark.integration

MEMBERS = 2_000
CHUNK = 1000  # RENOTIFY_CHUNK_SIZE (the default): one Celery message per chunk
SENDERS = 2  # RENOTIFY_SENDERS_PER_CAMPAIGN (the default): sender chains per campaign
SITE_URL = "https://notices.example.org"
NOTICE_LINK = re.compile(rf"{re.escape(SITE_URL)}{tokens.NOTICE_PATH}([^/\s\"'<>]+)/")
ONE_CLICK = re.compile(rf"^<{re.escape(SITE_URL)}{tokens.UNSUBSCRIBE_PATH}([^/\s<>]+)/>$")


def test_every_member_gets_exactly_one_well_formed_notice_over_smtp(
    services, transactional_db, tmp_path
):
    members = {member.email: member for member in members_create(MEMBERS)}
    campaign = multilingual_campaign(throttle_per_minute=60_000)
    deliveries = Delivery.objects.filter(campaign=campaign)
    started = time.monotonic()

    with smtp_sink() as sink, sending_worker(log_dir=tmp_path, env=worker_env(sink.url)) as w:
        campaigns_start_due.apply_async(queue=w.queue)  # what beat does every minute
        wait_for(
            lambda: (
                deliveries.count() == MEMBERS
                and not deliveries.filter(status__in=UNFINISHED_STATUSES).exists()
            ),
            timeout=120,
            what="every delivery to leave pending/claimed/sending",
        )
        # The chains must also stop by themselves once nothing is left (no busy loop).
        wait_for(w.idle, timeout=30, what="the sender chains to end")
        time.sleep(1)
        wait_for(w.idle, timeout=30, what="the sender chains to stay ended")
        received = sink.messages()
        send_messages = w.task_lines("campaigns.tasks.campaign_send", "received")
        all_messages = w.logs().count("] received")
    elapsed = time.monotonic() - started

    print(
        f"\n{MEMBERS} members: {len(received)} messages received over {sink.connections} "
        f"SMTP connections in {elapsed:.1f}s; {send_messages} campaign_send Celery "
        f"messages, {all_messages} Celery messages in all"
    )
    statuses = Counter(deliveries.values_list("status", flat=True))
    assert statuses == {"sent": MEMBERS}
    assert not deliveries.filter(esp_message_id="").exists()
    assert send_messages <= -(-MEMBERS // CHUNK) + SENDERS + 1
    # One SMTP session per chunk, not per message (the sink counts sessions).
    assert sink.connections <= send_messages

    recipients = Counter(message.parsed()["To"] for message in received)
    assert [to for to, n in recipients.items() if n > 1] == [], "duplicates"
    assert set(members) - set(recipients) == set(), "missing"
    assert len(received) == MEMBERS

    by_member = {d.member_id: d for d in deliveries}
    problems = []
    for message in received:
        parsed = message.parsed()
        member = members[parsed["To"]]
        problems += notice_problems(parsed, member, by_member[member.pk])
        if message.envelope_to != (member.email,):
            problems.append(f"{member}: envelope recipients {message.envelope_to}")
    assert problems[:10] == []
    message_ids = Counter(message.parsed()["Message-ID"] for message in received)
    assert len(message_ids) == MEMBERS and None not in message_ids


def worker_env(email_url: str) -> dict[str, str]:
    return {
        "EMAIL_URL": email_url,
        "SITE_URL": SITE_URL,
        "RENOTIFY_CHUNK_SIZE": str(CHUNK),
        "RENOTIFY_SENDERS_PER_CAMPAIGN": str(SENDERS),
    }


def notice_problems(message: EmailMessage, member: Member, delivery: Delivery) -> list[str]:
    """What is wrong with ``message`` as ``member``'s notice of ``delivery`` (nothing: [])."""
    problems = []
    locale = EXPECTED_LOCALE[member.locale]
    expected_headers = {
        "Subject": SUBJECTS[locale],
        "Message-ID": delivery.esp_message_id,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Content-Type": "multipart/alternative",
    }
    for header, expected in expected_headers.items():
        # A folded header unfolds to its value with the folding space in front.
        value = message.get_content_type() if header == "Content-Type" else _value(message, header)
        if value != expected:
            problems.append(f"{member}: {header} {value!r}, expected {expected!r}")
    if delivery.locale != locale:
        problems.append(f"{member}: delivery locale {delivery.locale!r}, expected {locale!r}")
    one_click = ONE_CLICK.match(_value(message, "List-Unsubscribe"))
    if not one_click or _decoded(tokens.delivery_from_unsubscribe_token, one_click[1]) != [
        delivery.pk
    ]:
        problems.append(f"{member}: List-Unsubscribe {message['List-Unsubscribe']!r}")
    for subtype in ("plain", "html"):
        part = message.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_type() != f"text/{subtype}":
            problems.append(f"{member}: no text/{subtype} part")
            continue
        body = part.get_content()
        links = NOTICE_LINK.findall(body)
        if not links or _decoded(tokens.delivery_from_notice_token, *links) != [delivery.pk]:
            problems.append(f"{member}: text/{subtype} notice links {links}")
        if f"Notice text [{locale}]" not in body:
            problems.append(f"{member}: text/{subtype} is not the [{locale}] text")
    return problems


def _value(message: EmailMessage, header: str) -> str:
    return str(message[header] or "").strip()


def _decoded(decode, *found: str) -> list[int | None]:
    """The distinct delivery ids the tokens decode to (None for a bad token)."""
    ids = set()
    for token in found:
        try:
            ids.add(decode(token))
        except tokens.BadToken:
            ids.add(None)
    return sorted(ids, key=str)
