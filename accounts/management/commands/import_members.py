import os
import sys
from typing import IO, cast

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm
from tqdm.utils import CallbackIOWrapper

from accounts.services.member_import import (
    READERS,
    ImportFileError,
    RowError,
    format_for,
    members_import,
    open_text,
)


class Command(BaseCommand):
    help = (
        "Create or update members from a CSV or JSON Lines file (columns external_id, email, "
        "locale, country; CSV separated by , ; tab or |), matched on external_id. Bad rows "
        "are reported in line order with their line number and skipped; the exit status is 1 "
        "when any row was rejected."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="file to import ('-' for standard input; .gz is read)")
        parser.add_argument("--format", choices=sorted(READERS), help="default: from the suffix")
        parser.add_argument("--dry-run", action="store_true", help="validate only, write nothing")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, path: str, format: str | None, dry_run: bool, **options) -> None:
        fmt = format or format_for(path)
        show_progress = (
            not options["no_progress"]
            and sys.stderr.isatty()
            and path != "-"
            # A missing file must reach open_text's clear error, not crash getsize().
            and os.path.isfile(path)
        )
        bar = tqdm(
            total=os.path.getsize(path) if show_progress else None,
            unit="B",
            unit_scale=True,
            disable=not show_progress,
            file=sys.stderr,
        )
        try:
            stream = open_text(path, wrap=lambda raw: _counted(raw, bar))
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            with stream:
                report = members_import(
                    stream=stream, fmt=fmt, dry_run=dry_run, on_error=self._print_error
                )
        except (ImportFileError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: {exc}; nothing was imported") from exc
        finally:
            bar.close()
        style = self.style.WARNING if report.rejected else self.style.SUCCESS
        self.stdout.write(style(("dry run: " if dry_run else "") + report.summary()))
        if report.rejected:
            raise CommandError(f"{report.rejected} row(s) rejected", returncode=1)

    def _print_error(self, error: RowError) -> None:
        self.stderr.write(str(error))


def _counted(raw: IO[bytes], bar: tqdm) -> IO[bytes]:
    """``raw``, its reads counted on the progress bar. tqdm's wrapper passes every other
    attribute through to ``raw``, which its stubs do not say."""
    return cast(IO[bytes], CallbackIOWrapper(bar.update, raw, "read"))
