"""Write the rows the importer would stage for a CSV file, in COPY text format.

Usage (with the app's settings in the environment, as the benchmarks run it):

    python bench/validated_rows.py SOURCE.csv DEST.tsv

The SQL floor of the import benchmark loads this file: it holds exactly what the
importer's own validation produces (``read_csv`` + ``validate_row``), so the floor
writes the same values and differs only in having no Python between file and table.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# COPY text format: backslash, tab and line breaks must be escaped inside values.
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def main(source: str, dest: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from accounts.services.member_import import RowError, open_text, read_csv, validate_row

    written = 0
    with open_text(source) as stream, open(dest, "w", encoding="utf-8", newline="") as out:
        for item in read_csv(stream):
            row = item if isinstance(item, RowError) else validate_row(*item)
            if isinstance(row, RowError):
                raise SystemExit(f"{source}: {row}")
            # (line, external_id, email, locale, country, jurisdiction, person_key): the
            # floor's columns, from external_id to jurisdiction
            values = (value.translate(COPY_ESCAPES) for value in row[1:6])
            out.write("\t".join(values) + "\n")
            written += 1
    print(written)


if __name__ == "__main__":
    main(*sys.argv[1:])
