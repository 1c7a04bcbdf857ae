"""Check a Renotify evidence pack (shipped in every pack as verify.py).

    python3 verify.py [PACK_FOLDER] [--sums-sha256 HEX]

Needs Python 3.8 or newer and nothing else (the standard library only). Run it in the
folder the pack was unzipped into. It checks, and prints one line per check:

1. every file is listed in SHA256SUMS with the SHA-256 it has now (what
   ``sha256sum -c SHA256SUMS`` checks), and no file is missing or unlisted;
2. with ``--sums-sha256``: SHA256SUMS itself has the digest the sender recorded (shown
   on the console page and in the staff audit trail), so a pack whose files and
   SHA256SUMS were both changed is caught too;
3. each notice text: the SHA-256 of its text.json is the hash stored for the text,
   and, for the version the campaign was approved on, the hash approved;
4. the counts in manifest.json are the counts of the rows in members.csv;
5. the ledger slice: events in chain order, each event's prev_hash equal to the hash
   of the event before it wherever both are in the slice, every event's member in
   members.csv, the slice within the verified head, and the manifest's figures.

Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

SUMS = "SHA256SUMS"
# members.csv's count columns: a member counts when the column is not empty.
COUNTED = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "opened": "first_opened_at",
    "acknowledged": "acknowledged_at",
    "objected": "objected_at",
    "served_in_app": "served_in_app_at",
}
REACHED_BY = ("delivered_at", "served_in_app_at", "acknowledged_at")


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def check(self, ok: bool, what: str) -> bool:
        print(("OK      " if ok else "FAILED  ") + what)
        self.failures += not ok
        return ok


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sums(root: Path, report: Report, expected_sums: str | None) -> None:
    listed = {}
    for line in (root / SUMS).read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    present.discard(SUMS)
    report.check(present <= set(listed), f"every file is listed in {SUMS}")
    for name in sorted(present - set(listed)):
        report.check(False, f"{name} is not listed in {SUMS}")
    for name, digest in sorted(listed.items()):
        path = root / name
        if not path.is_file():
            report.check(False, f"{name} is missing")
        elif sha256_of(path) != digest:
            report.check(False, f"{name} does not have the SHA-256 listed in {SUMS}")
    bad = [n for n, d in listed.items() if not (root / n).is_file() or sha256_of(root / n) != d]
    report.check(not bad, f"{len(listed) - len(bad)} of {len(listed)} files match {SUMS}")
    if expected_sums:
        actual = sha256_of(root / SUMS)
        report.check(
            actual == expected_sums.lower(), f"{SUMS} has the recorded SHA-256 {expected_sums}"
        )


def check_notices(root: Path, manifest: dict, report: Report) -> None:
    for version in manifest["notice_versions"]:
        approved = version.get("approved_text_sha256")
        for locale, text in sorted(version["texts"].items()):
            where = f"notice version {version['id']} [{locale}]"
            actual = sha256_of(root / text["folder"] / "text.json")
            report.check(actual == text["stored_sha256"], f"{where}: text.json has its stored hash")
            if approved is not None:
                report.check(
                    approved.get(locale) == actual, f"{where}: text.json is the text approved"
                )


def check_members(root: Path, manifest: dict, report: Report) -> set:
    counts = dict.fromkeys(["members", "deliveries", *COUNTED, "reached"], 0)
    members = set()
    with (root / "members.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            members.add(row["external_id"])
            counts["members"] += 1
            counts["deliveries"] += len([w for w in row["waves"].split(";") if w])
            for name, column in COUNTED.items():
                counts[name] += bool(row[column])
            counts["reached"] += any(row[column] for column in REACHED_BY)
    stated = manifest["counts"]
    for name, counted in counts.items():
        report.check(
            stated.get(name) == counted,
            f"manifest count {name} = {stated.get(name)}; members.csv has {counted}",
        )
    report.check(len(members) == counts["members"], "members.csv lists each member once")
    return members


def check_ledger(root: Path, manifest: dict, members: set, report: Report) -> None:
    about = manifest["ledger"]
    head = about["verification"]["head"]
    previous_seq, previous_hash, events, linked, strangers = None, None, 0, 0, 0
    ordered, broken = True, []
    with (root / "ledger.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            seq = int(row["seq"])
            events += 1
            strangers += row["member_external_id"] not in members
            if previous_seq is not None and seq <= previous_seq:
                ordered = False
            if previous_seq is not None and seq == previous_seq + 1:
                linked += 1
                if row["prev_hash"] != previous_hash:
                    broken.append(seq)
            if seq == head["seq"] and row["hash"] != head["hash"]:
                broken.append(seq)
            if seq > head["seq"]:
                broken.append(seq)
            previous_seq, previous_hash = seq, row["hash"]
    stated = about["slice"]
    report.check(ordered, "ledger.csv is in chain order (seq rising)")
    report.check(
        stated["events"] == events, f"manifest: {stated['events']} events; ledger.csv has {events}"
    )
    report.check(strangers == 0, "every ledger event is of a member in members.csv")
    report.check(
        not broken,
        f"{linked} adjacent pairs chain (prev_hash = hash before); none after head {head['seq']}"
        + (f"; broken at seq {', '.join(map(str, broken[:10]))}" if broken else ""),
    )
    verification = about["verification"]
    report.check(
        verification["intact"],
        f"the sender's verify_ledger at {verification['checked_at']}: "
        f"{verification['events_checked']} events, intact={verification['intact']}",
    )


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a Renotify evidence pack.")
    parser.add_argument("folder", nargs="?", default=".", help="the unzipped pack")
    parser.add_argument("--sums-sha256", help="the SHA-256 of SHA256SUMS the sender recorded")
    args = parser.parse_args(argv)
    root, report = Path(args.folder), Report()
    check_sums(root, report, args.sums_sha256)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    check_notices(root, manifest, report)
    members = check_members(root, manifest, report)
    check_ledger(root, manifest, members, report)
    print("\n" + ("PACK VERIFIED" if not report.failures else f"{report.failures} CHECK(S) FAILED"))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
