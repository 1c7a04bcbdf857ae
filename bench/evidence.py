"""Benchmark: an evidence pack of a 1M-member campaign (issue #18).

Set-up (set-based SQL, ``renotify_bench_evidence``, dropped at the end unless ``--keep``;
a kept database of the right size is reused, ``--fresh`` re-seeds it):

- ``--members`` members (default 1,000,000), written by ``campaign_setup.members_seed``;
- two completed campaigns of the realistic notice (five languages): the *large* one sent
  to every member, the *small* one to the first tenth (to show memory flat in size);
  one delivery per member in realistic statuses with ESP message ids, and a reminder
  (wave 1) to one member in five;
- a real hash chain in the ledger (as ``consent_record`` writes it, so the build's full
  ``verify_ledger`` walk reads every event): one member in ten acknowledged from the
  link, one in thirty objected, one in fifty was shown the notice in the app.

Each pack is built in a child process of its own (``--child-build``: Django, then
``evidence_pack_build``), measured with GNU time for its peak RSS. Rounds alternate small
and large. The floor, in the same rounds: PostgreSQL's own ``COPY`` of the same member
rows (deliveries joined with members) as CSV, compressed with zlib in this process: what
reading and compressing the rows costs without building anything.

Figures: wall time of the large build (target under 2 minutes), its rows/s (members and
ledger events written), the ratio to the floor, peak RSS at both sizes (target: the large
build's within 1.5x the small one's: flat in campaign size), and the pack's size.

The effectiveness report is measured by ``bench/evidence_report.py`` on a 1M-member
campaign of its own (with the suppression feed and its consumers, which a pack does not
read); ``make bench BENCH=evidence`` runs both.

Usage: .venv/bin/python bench/evidence.py [--members N] [--repeat R] [--keep] [--fresh]
"""

import argparse
import json
import sys
import time
import zlib

import campaign_setup
import harness
import psycopg
from harness import fmt_mb, fmt_rate, fmt_s, table, verdict
from psycopg import sql

DATABASE = "renotify_bench_evidence"
TARGET_SECONDS = 120.0
TARGET_RSS_RATIO = 1.5
SMALL_SHARE = 10  # the small campaign: the first 1/SMALL_SHARE of the members
ACKNOWLEDGED_EVERY, OBJECTED_EVERY, IN_APP_EVERY, REMINDED_EVERY = 10, 30, 50, 5
PURPOSE = "ai-training"

DELIVERIES_SQL = """
INSERT INTO campaigns_delivery (campaign_id, member_id, wave, status, created_at, attempts,
    locale, sent_at, esp_message_id, error, delivered_at, opened_at, bounced_at, soft_bounces)
SELECT %(campaign)s, m.id, w.wave,
    CASE WHEN w.wave > 0 THEN 'sent' WHEN m.id %% 100 < 2 THEN 'bounced'
         WHEN m.id %% 100 < 40 THEN 'delivered' WHEN m.id %% 100 < 75 THEN 'opened'
         ELSE 'sent' END,
    now() - interval '20 days', 1, m.locale,
    now() - interval '20 days' + w.wave * interval '7 days',
    'esp-' || %(campaign)s || '-' || m.id || '-' || w.wave, '',
    CASE WHEN w.wave = 0 AND m.id %% 100 BETWEEN 2 AND 74 THEN now() - interval '20 days' END,
    CASE WHEN w.wave = 0 AND m.id %% 100 BETWEEN 40 AND 74 THEN now() - interval '19 days' END,
    CASE WHEN w.wave = 0 AND m.id %% 100 < 2 THEN now() - interval '20 days' END,
    0
FROM accounts_member m
CROSS JOIN (VALUES (0), (1)) AS w (wave)
WHERE m.id <= %(last_member)s AND (w.wave = 0 OR m.id %% {reminded} = 1)
ORDER BY m.id, w.wave
"""

# The floor: the same member rows, read and written as CSV by PostgreSQL itself.
FLOOR_SQL = """
COPY (SELECT m.external_id, m.jurisdiction, m.locale, d.locale, d.wave, d.status, d.sent_at,
             d.delivered_at, d.opened_at, d.esp_message_id
      FROM campaigns_delivery d JOIN accounts_member m ON m.id = d.member_id
      WHERE d.campaign_id = {campaign} ORDER BY d.member_id, d.wave) TO STDOUT WITH (FORMAT csv)
"""


def seeded(url: str, members: int) -> dict | None:
    """The two campaigns of a kept database of ``members`` members, or None."""
    try:
        with harness.connect(url) as conn:
            (count,) = conn.execute("SELECT count(*) FROM accounts_member").fetchone()
            rows = conn.execute(
                "SELECT name, id FROM campaigns_campaign WHERE name LIKE 'bench evidence %%'"
            ).fetchall()
    except psycopg.Error:  # no such database (or tables) yet
        return None
    found = dict(rows)
    if count != members or set(found) != {"bench evidence large", "bench evidence small"}:
        return None
    return {"large": found["bench evidence large"], "small": found["bench evidence small"]}


def seed(url: str, members: int) -> dict:
    campaign_setup.database_prepare(url)
    with harness.connect(url) as conn:
        campaign_setup.members_seed(conn, reachable=members)
    campaign_setup.django_start(url)
    from django.utils import timezone

    from campaigns.models import Campaign, CampaignState, NoticeVersion

    ids = {}
    with harness.connect(url) as conn:
        (first,) = conn.execute("SELECT min(id) FROM accounts_member").fetchone()
        for size, share in (("large", 1), ("small", SMALL_SHARE)):
            c = campaign_setup.campaign_create(
                state=CampaignState.COMPLETED, throttle_per_minute=6000
            )
            Campaign.objects.filter(pk=c.pk).update(
                name=f"bench evidence {size}", fanned_out_at=timezone.now()
            )
            last = first + members // share - 1
            conn.execute(
                DELIVERIES_SQL.format(reminded=REMINDED_EVERY),
                {"campaign": c.pk, "last_member": last},
            )
            conn.commit()
            ids[size] = c.pk
            harness.progress(f"{size} campaign: members up to id {last:,}")
        NoticeVersion.objects.update(frozen_at=timezone.now())
        ledger_seed(conn, ids["large"])
        for name in ("campaigns_delivery", "accounts_consentevent"):
            harness.vacuum_analyze(conn, name)
    return ids


def ledger_seed(conn, campaign_id: int) -> None:
    """A valid hash chain of acknowledgements, objections and in-app servings."""
    from datetime import UTC, datetime, timedelta

    from accounts import ledger
    from accounts.models import Purpose

    purpose_id = Purpose.objects.get(slug=PURPOSE).pk
    (version_id,) = conn.execute(
        "SELECT notice_version_id FROM campaigns_campaign WHERE id = %s", [campaign_id]
    ).fetchone()
    rows = conn.execute(
        "SELECT id, member_id FROM campaigns_delivery WHERE campaign_id = %s AND wave = 0"
        " AND (member_id %% %s = 0 OR member_id %% %s = 3 OR member_id %% %s = 7) ORDER BY id",
        [campaign_id, ACKNOWLEDGED_EVERY, OBJECTED_EVERY, IN_APP_EVERY],
    ).fetchall()
    begin = datetime.now(UTC) - timedelta(days=15)
    columns = ", ".join([*ledger.HASHED_FIELDS, "prev_hash", "hash"])
    prev_hash, seq = ledger.GENESIS_HASH, 0
    with conn.cursor().copy(f"COPY accounts_consentevent ({columns}) FROM STDIN") as copy:
        for delivery_id, member_id in rows:
            for action, source, purpose, delivery in _events(member_id, purpose_id, delivery_id):
                seq += 1
                fields = {
                    "seq": seq,
                    "member_id": member_id,
                    "purpose_id": purpose,
                    "action": action.value,
                    "source": source.value,
                    "notice_version_id": version_id,
                    "delivery_id": delivery,
                    "created_at": begin + timedelta(milliseconds=seq),
                    "ip_hash": "",
                    "user_agent": "",
                    "comment": "",
                    "metadata": {},
                }
                digest = ledger.event_hash(fields, prev_hash=prev_hash)
                values = [fields[name] for name in ledger.HASHED_FIELDS]
                values[-1] = json.dumps(values[-1])
                copy.write_row([*values, prev_hash, digest])
                prev_hash = digest
    conn.commit()
    harness.progress(f"ledger: {seq:,} chained events")


def _events(member_id: int, purpose_id: int, delivery_id: int):
    from accounts.models import Action, Source

    if member_id % ACKNOWLEDGED_EVERY == 0:
        yield Action.ACKNOWLEDGE, Source.PREFERENCE_PAGE, None, delivery_id
    if member_id % OBJECTED_EVERY == 3:
        yield Action.OBJECT, Source.PREFERENCE_PAGE, purpose_id, delivery_id
    if member_id % IN_APP_EVERY == 7:
        yield Action.SERVE, Source.IN_APP, None, None


def child_build(url: str, campaign_id: int) -> None:
    """In a process of its own: build one pack of the campaign and print its figures."""
    campaign_setup.django_start(url)
    from evidence.models import EvidencePack
    from evidence.services.build import evidence_pack_build

    pack = EvidencePack.objects.create(campaign_id=campaign_id)
    started = time.perf_counter()
    assert evidence_pack_build(pack_id=pack.pk)
    seconds = time.perf_counter() - started
    pack.refresh_from_db()
    figures = {"seconds": seconds, "rows": pack.rows_done, "bytes": pack.size_bytes}
    print(json.dumps(figures))


def floor_read(url: str, campaign_id: int) -> float:
    started = time.perf_counter()
    compressor = zlib.compressobj(6)
    with harness.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(FLOOR_SQL.format(campaign=int(campaign_id))) as copy:
            for block in copy:
                compressor.compress(block)
        compressor.flush()
    return time.perf_counter() - started


def build_measured(url: str, campaign_id: int) -> dict:
    command = [harness.PYTHON, "bench/evidence.py", "--child-build", str(campaign_id)]
    run = harness.measure(command, env=campaign_setup.django_env(url))
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    return {**figures, "peak_rss_mb": run.peak_rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--fresh", action="store_true", help="seed even a kept database")
    parser.add_argument("--child-build", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = campaign_setup.database_url(DATABASE)
    if args.child_build:
        child_build(url, args.child_build)
        return
    ids = None if args.fresh else seeded(url, args.members)
    if ids is None:
        harness.progress(f"seeding {args.members:,} members")
        ids = seed(url, args.members)
    rounds: dict[str, list[dict]] = {"small": [], "large": []}
    floors: list[float] = []
    for round_ in range(args.repeat):
        for size in ("small", "large"):
            rounds[size].append(build_measured(url, ids[size]))
            harness.progress(f"round {round_ + 1} {size}: {rounds[size][-1]}")
        floors.append(floor_read(url, ids["large"]))
    results = report(rounds, floors, args.members)
    harness.save_results("evidence", results)
    if not args.keep:
        database_drop(url)


def database_drop(url: str) -> None:
    name = harness.database_name(url)
    with harness.connect(harness.with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def report(rounds: dict[str, list[dict]], floors: list[float], members: int) -> dict:
    def med(size: str, name: str) -> float:
        return harness.median([r[name] for r in rounds[size]])

    large_s, floor_s = med("large", "seconds"), harness.median(floors)
    rss_ratio = med("large", "peak_rss_mb") / med("small", "peak_rss_mb")
    rows = [
        [size, f"{int(med(size, 'rows')):,}", fmt_s(med(size, "seconds")),
         fmt_rate(harness.rate(int(med(size, "rows")), med(size, "seconds"))),
         fmt_mb(med(size, "peak_rss_mb")), f"{med(size, 'bytes') / 1e6:,.1f}"]
        for size in ("small", "large")
    ]  # fmt: skip
    print(table(["campaign", "rows", "build s", "rows/s", "peak RSS MB", "pack MB"], rows))
    print(f"floor (COPY + zlib of the large campaign's member rows): {fmt_s(floor_s)} s;"
          f" build / floor = {large_s / floor_s:.1f}x")  # fmt: skip
    print(f"{verdict(large_s < TARGET_SECONDS)} large build {fmt_s(large_s)} s"
          f" (target < {TARGET_SECONDS:.0f} s)")  # fmt: skip
    print(f"{verdict(rss_ratio < TARGET_RSS_RATIO)} peak RSS large / small = {rss_ratio:.2f}"
          f" (target < {TARGET_RSS_RATIO})")  # fmt: skip
    return {
        "members": members,
        "rounds": rounds,
        "floor_seconds": floors,
        "targets": {
            "large build seconds": {
                "measured": large_s,
                "target": f"< {TARGET_SECONDS:.0f}",
                "pass": large_s < TARGET_SECONDS,
            },
            "peak RSS large/small": {
                "measured": rss_ratio,
                "target": f"< {TARGET_RSS_RATIO}",
                "pass": rss_ratio < TARGET_RSS_RATIO,
            },
        },
    }


if __name__ == "__main__":
    sys.exit(main())
