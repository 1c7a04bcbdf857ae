"""Notice versions compared side by side: what changed is inside <ins>/<del> with a text
label, locales only one version has are added or removed, member-facing text is
escaped, and a request for versions that do not belong together is refused."""

from datetime import date

import pytest
from django.test import Client

from campaigns.models import Notice, NoticeText, NoticeVersion
from console.diff import Piece, lines_diff, words_diff
from tests.factories import CAMPAIGN_EDITOR, notice_version, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader():
    return staff_user("vic", "campaigns.view_noticeversion")


@pytest.fixture
def versions():
    """v1 in en and de; v2 with a new English subject, a changed line in the body,
    later dates, German dropped and French added."""
    v1 = notice_version(locales=("en", "de"))
    NoticeText.objects.filter(version=v1, locale="en").update(
        subject="How we use your data",
        body_markdown="We will train models.\nYou can object.\nThanks.",
    )
    v2 = NoticeVersion.objects.create(
        notice=v1.notice,
        effective_date=date(2027, 4, 1),
        objection_deadline=v1.objection_deadline,
    )
    NoticeText.objects.create(
        version=v2,
        locale="en",
        subject="How we will use your data",
        body_markdown="We will train AI models.\nYou can object.\nThanks.\nA new line.",
    )
    NoticeText.objects.create(version=v2, locale="fr", subject="Sujet", body_markdown="Corps")
    return v1, v2


def _diff(client, notice, **query):
    return client.get(f"/console/notices/{notice}/diff/", query)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_words_changed_within_a_line_are_marked_not_the_whole_line():
    row = words_diff("Object before 15 March.", "Object before 1 April.")
    assert row.kind == "changed"
    assert Piece("15 March", "del") in row.left and Piece("1 April", "del") not in row.left
    assert Piece("1 April", "ins") in row.right
    assert "".join(p.text for p in row.left) == "Object before 15 March."


def test_lines_added_and_removed_are_rows_of_their_own():
    rows = lines_diff("a\nb\nc", "a\nc\nd")
    assert [r.kind for r in rows] == ["same", "removed", "same", "added"]


def test_the_notice_list_offers_two_versions_to_compare(reader, versions):
    v1, v2 = versions
    body = _client(reader).get("/console/notices/").content.decode()
    assert "AI training notice" in body and "en, fr" in body and "de, en" in body
    assert f'action="/console/notices/{v1.notice_id}/diff/"' in body
    assert f'<option value="{v1.pk}" selected>v1</option>' in body  # a: the one before
    assert f'<option value="{v2.pk}" selected>v2</option>' in body  # b: the latest


def test_subject_body_and_dates_changes_are_shown_with_ins_and_del(reader, versions):
    v1, v2 = versions
    page = _diff(_client(reader), v1.notice_id, a=v1.pk, b=v2.pk, locale="en")
    body = page.content.decode()
    assert page.status_code == 200
    assert (
        '<ins><span class="sr-only">[added: </span>will <span class="sr-only">]</span></ins>'
        in body
    )
    assert '<ins><span class="sr-only">[added: </span>AI ' in body
    assert '<ins><span class="sr-only">[added: </span>A new line.' in body
    assert '<del><span class="sr-only">[removed: </span>2027-03-01' in body
    assert '<ins><span class="sr-only">[added: </span>2027-04-01' in body
    assert '<td class="mark">changed</td>' in body and '<td class="mark">added</td>' in body


def test_a_locale_only_one_version_has_is_added_or_removed(reader, versions):
    v1, v2 = versions
    client = _client(reader)
    page = _diff(client, v1.notice_id, a=v1.pk, b=v2.pk, locale="de").content.decode()
    assert "v2 has no text in de: it was removed." in page
    assert "de (removed in v2)" in page and "fr (added in v2)" in page
    assert '<del><span class="sr-only">[removed: </span>Subject [de]' in page
    page = _diff(client, v1.notice_id, a=v1.pk, b=v2.pk, locale="fr").content.decode()
    assert "The text in fr is new in v2" in page
    assert '<ins><span class="sr-only">[added: </span>Corps' in page


def test_html_in_a_body_is_shown_escaped_never_run(reader, versions):
    v1, v2 = versions
    NoticeText.objects.filter(version=v2, locale="en").update(
        body_markdown='<script>alert("x")</script>\nYou can object.'
    )
    body = _diff(_client(reader), v1.notice_id, a=v1.pk, b=v2.pk, locale="en").content.decode()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert "<script>alert" not in body


def test_versions_of_another_notice_bad_and_unknown_ids_are_refused(reader, versions):
    v1, v2 = versions
    other = notice_version()  # a version of a different notice
    client = _client(reader)
    foreign = _diff(client, v1.notice_id, a=v1.pk, b=other.pk)
    assert foreign.status_code == 400
    assert (
        f"Version #{other.pk} is not a version of “AI training notice”." in foreign.content.decode()
    )
    assert _diff(client, v1.notice_id, a="one", b=v2.pk).status_code == 400
    assert _diff(client, v1.notice_id, a=v1.pk).status_code == 400
    missing = _diff(client, v1.notice_id, a=v1.pk, b=987654)
    assert missing.status_code == 404 and "no notice version #987654" in missing.content.decode()
    assert _diff(client, 987654, a=v1.pk, b=v2.pk).status_code == 404
    unknown = _diff(client, v1.notice_id, a=v1.pk, b=v2.pk, locale="xx")
    assert (
        unknown.status_code == 400
        and "Neither version has a text in “xx”" in unknown.content.decode()
    )


def test_an_editor_reads_the_diff_too(versions):
    v1, v2 = versions
    editor = staff_user("erin", *CAMPAIGN_EDITOR)
    assert _diff(_client(editor), v1.notice_id, a=v1.pk, b=v2.pk).status_code == 200
    assert Notice.objects.count() == 1


def test_the_notice_list_reads_the_same_few_queries_however_many_versions(
    reader, versions, django_assert_num_queries
):
    client = _client(reader)
    # session, user, user's and group permissions, notices, their versions, their locales
    with django_assert_num_queries(7):
        client.get("/console/notices/")
    for _ in range(3):
        notice_version()
    with django_assert_num_queries(7):
        assert client.get("/console/notices/").content.decode().count("<section") == 4
