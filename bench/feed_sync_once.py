"""Sync the suppression feed once for every member; print its seconds and entries.

Usage (with the app's settings in the environment, as the benchmarks run it):

    python bench/feed_sync_once.py

A first import ends with this very sync (``members_import`` calls it after its commit):
the new members' first feed entries. The import benchmark's floor runs
it after its COPY and upsert, so that the floor does the same work as the command. The
sync is the app's own set-based statements, with no Python per row; Django's start-up
is not in the seconds printed.
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from accounts.services.suppression_feed import suppression_feed_sync

    started = time.perf_counter()
    appended = suppression_feed_sync()
    print(f"{time.perf_counter() - started:.6f} {appended}")


if __name__ == "__main__":
    main()
