"""Side-by-side differences between two notice texts, as rows of pieces a template
writes out: ``same`` text as it is, ``del`` inside ``<del>``, ``ins`` inside ``<ins>``.

Pieces are plain text: the template escapes them like any other value, so a notice's
Markdown or HTML is shown as written and never interpreted. Lines are matched first
(``difflib``), then the words within a changed line, so a one-word edit in a long
paragraph shows as that word, not as the whole paragraph replaced."""

import difflib
import re
from dataclasses import dataclass, field
from itertools import zip_longest

# Words and single punctuation marks, each with the spaces after it: "deadline," and
# "deadline." differ by the mark alone, and two words replaced together are marked as
# one run rather than two runs around a space that did not change.
_TOKENS = re.compile(r"\w+\s*|[^\w\s]\s*|\s+")


@dataclass(frozen=True)
class Piece:
    text: str
    kind: str = "same"  # "same", "del" (only on the left) or "ins" (only on the right)


@dataclass(frozen=True)
class Row:
    kind: str  # "same", "changed", "removed" (left only) or "added" (right only)
    left: list[Piece] = field(default_factory=list)
    right: list[Piece] = field(default_factory=list)


def _opcodes(a: list[str], b: list[str]):
    return difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()


def words_diff(old: str, new: str) -> Row:
    """One row: ``old`` and ``new`` with the words that differ marked."""
    if old == new:
        return Row("same", [Piece(old)], [Piece(new)])
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    left: list[Piece] = []
    right: list[Piece] = []
    for op, i1, i2, j1, j2 in _opcodes(a, b):
        if op == "equal":
            left.append(Piece("".join(a[i1:i2])))
            right.append(Piece("".join(b[j1:j2])))
            continue
        if i2 > i1:
            left.append(Piece("".join(a[i1:i2]), "del"))
        if j2 > j1:
            right.append(Piece("".join(b[j1:j2]), "ins"))
    return Row("changed", left, right)


def value_diff(old: str, new: str) -> Row:
    """One row for a short value (a date): the whole value replaced when it differs."""
    if old == new:
        return Row("same", [Piece(old)], [Piece(new)])
    return Row("changed", [Piece(old, "del")], [Piece(new, "ins")])


def lines_diff(old: str, new: str) -> list[Row]:
    """Rows line by line; lines replaced pairwise are diffed word by word."""
    a, b = old.splitlines(), new.splitlines()
    rows: list[Row] = []
    for op, i1, i2, j1, j2 in _opcodes(a, b):
        if op == "equal":
            rows += [Row("same", [Piece(line)], [Piece(line)]) for line in a[i1:i2]]
            continue
        for before, after in zip_longest(a[i1:i2], b[j1:j2]):
            if after is None:
                rows.append(Row("removed", left=[Piece(before, "del")]))
            elif before is None:
                rows.append(Row("added", right=[Piece(after, "ins")]))
            else:
                rows.append(words_diff(before, after))
    return rows
