"""Every relative link in README.md and docs/*.md leads somewhere: the file exists and, for
a #fragment, so does the heading (named as GitHub names heading anchors)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
CHECKED = [ROOT / "README.md", *DOCS]

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
INLINE_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def without_code_blocks(markdown: str) -> str:
    """Fenced blocks blanked (line count kept), so a `# comment` in one is no heading."""
    return FENCE.sub(lambda block: "\n" * block.group(0).count("\n"), markdown)


def prose(markdown: str) -> str:
    """The text links are read from: code blocks and code spans blanked, so a `[x](y)` in
    code is no link."""
    return CODE_SPAN.sub("", without_code_blocks(markdown))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: link syntax reduced to its text, lower case, punctuation
    other than - and _ dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown_file: Path) -> set[str]:
    """Every heading anchor of the file; a repeated heading gets -1, -2 ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(without_code_blocks(markdown_file.read_text())):
        base = anchor(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(markdown_file: Path) -> list[str]:
    text = prose(markdown_file.read_text())
    targets = INLINE_LINK.findall(text) + REFERENCE_DEFINITION.findall(text)
    return [target for target in targets if not SCHEME.match(target)]


def broken_links(markdown_file: Path) -> list[str]:
    """One line per link in the file that points at a missing file or heading."""
    broken = []
    for target in relative_links(markdown_file):
        path, _, fragment = target.partition("#")
        destination = (markdown_file.parent / path).resolve() if path else markdown_file
        if not destination.exists():
            broken.append(f"{target}: no file {path}")
        elif fragment and destination.suffix != ".md":
            broken.append(f"{target}: #{fragment} on a file without headings")
        elif fragment and fragment not in anchors(destination):
            broken.append(f"{target}: no heading #{fragment} in {destination.name}")
    return broken


@pytest.mark.parametrize(
    "markdown_file", CHECKED, ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_every_relative_link_resolves(markdown_file):
    assert broken_links(markdown_file) == []


def test_the_readme_links_every_docs_page():
    linked = {
        (ROOT / target.partition("#")[0]).resolve() for target in relative_links(ROOT / "README.md")
    }
    assert DOCS
    assert [page.name for page in DOCS if page.resolve() not in linked] == []


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section (with notes)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#a-section-with-notes), [here](#page), [site](https://example.com)\n"
        "[gone](missing.md), [no such heading](other.md#nowhere), [nor here](#absent)\n"
        "`[in code](missing-too.md)`\n\n"
        "```\n[in a block](missing-three.md)\n# not a heading\n```\n"
        "[wrapped\nlink text](#not-a-heading)\n"
    )
    assert broken_links(page) == [
        "missing.md: no file missing.md",
        "other.md#nowhere: no heading #nowhere in other.md",
        "#absent: no heading #absent in page.md",
        "#not-a-heading: no heading #not-a-heading in page.md",
    ]


def test_repeated_headings_are_numbered_as_on_github(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n## Notes\n\n### `Code` & more!\n")
    assert anchors(page) == {"notes", "notes-1", "code--more"}
