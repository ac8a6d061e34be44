"""The README stays a short user guide, and its manuals in docs/ stay reachable and their links whole.

The README was a lab notebook of 1,084 lines; the manuals moved to docs/, one file per topic. These
checks keep it that way: the README under 300 lines, every docs/*.md linked from it, and every
relative link (and `#anchor`) in the README and the manuals pointing at something that exists, so a
renamed heading, file or screenshot fails here rather than on GitHub. Plain text only: no network,
well under a second.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from helpers import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 300

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where `[x](y)` is code, not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path.read_text()))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (not `-` or `_`), spaces to `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    broken = []
    for link in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", link, re.I):  # http(s), mailto: not checked
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / unquote(target)).resolve() if target else path
        if not file.exists() or REPO not in [file, *file.parents]:
            broken.append(f"{link}: no file {file.relative_to(REPO) if REPO in file.parents else file}")
        elif anchor and file.suffix == ".md" and unquote(anchor).lower() not in anchors(file):
            broken.append(f"{link}: no heading with anchor #{anchor} in {file.relative_to(REPO)}")
    return broken


def test_the_readme_is_under_300_lines():
    lines = len(README.read_text().splitlines())
    assert lines < MAX_README_LINES, f"README.md has {lines} lines: move a manual's worth into docs/"


def test_every_relative_link_and_anchor_resolves():
    broken = {str(p.relative_to(REPO)): b for p in markdown_files() if (b := broken_links(p))}
    assert not broken, broken


def test_every_manual_in_docs_is_linked_from_the_readme():
    linked = {(REPO / link.partition("#")[0]).resolve() for link in links(README)}
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs/ files the README does not link: {unlinked}"


def test_the_slug_rule_matches_githubs():
    assert slug("The report: one HTML file per run, and a comparison page") == (
        "the-report-one-html-file-per-run-and-a-comparison-page")
    assert slug("What `metrics.jsonl` holds") == "what-metricsjsonl-holds"
    assert slug("2026-12-02, 09:47-09:53 UTC") == "2026-12-02-0947-0953-utc"
    assert slug("The deep autoencoder of Hinton & Salakhutdinov (2006)") == (
        "the-deep-autoencoder-of-hinton--salakhutdinov-2006")
