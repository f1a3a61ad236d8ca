"""The README is for users and the repository is self-contained: the README stays short and
carries no issue numbers, no tracked file cites notes kept outside the repository, and every
relative link in the README and under docs/ leads to a file (and section) in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
# Notes outside the repository that nothing in it may cite (spelt in pieces so that this file
# does not match itself).
OUTSIDE = [
    re.compile(rb"DESI" + rb"GN\.md"),
    re.compile(rb"DESI" + rb"GN \xc2\xa7"),  # the design notes' section sign
    re.compile(rb"SIM_" + rb"NOTES"),
    re.compile(rb"\.\./" + rb"sha" + rb"red\b"),
]
ISSUE = re.compile(r"\bissues? #\d", re.IGNORECASE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def docs_pages() -> list[Path]:
    """The README and every Markdown page under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def tracked_files() -> list[Path]:
    """The repository's tracked files (every file outside .git and virtual environments when
    git cannot list them)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
        ).stdout
        return [REPO / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "venv", "runs", "__pycache__"}
        return [
            p
            for p in REPO.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(REPO).parts)
        ]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to
    hyphens (links and code marks keep their text)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_the_readme_is_short():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move study narrative to "
        "docs/studies/ and reference material to docs/"
    )


def test_no_issue_numbers_in_the_readme_or_docs():
    for page in docs_pages():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not ISSUE.search(line), f"{page.relative_to(REPO)}:{number}: {line.strip()}"


def test_no_tracked_file_cites_notes_outside_the_repository():
    here = Path(__file__).resolve()
    cited = []
    for path in tracked_files():
        if path.resolve() == here or not path.is_file():
            continue
        data = path.read_bytes()
        for pattern in OUTSIDE:
            for match in pattern.finditer(data):
                line = data.count(b"\n", 0, match.start()) + 1
                cited.append(f"{path.relative_to(REPO)}:{line}: {match.group().decode()}")
    assert not cited, "cites files outside the repository:\n" + "\n".join(cited)


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in docs_pages():
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(REPO)}: {target}"
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{where} (no such file in the repository)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{where} (no such section)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_checks_catch_what_they_are_for(tmp_path):
    assert slug("Many videos, few labels, two views: VideoWorld level with BC") == (
        "many-videos-few-labels-two-views-videoworld-level-with-bc"
    )
    assert slug("A gripper camera: BC on 25% of the labels, 0.23 -> 0.36") == (
        "a-gripper-camera-bc-on-25-of-the-labels-023---036"
    )
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Results\n\n```\n# not a heading\n```\n\n## Results\n")
    assert anchors(page) == {"title", "results", "results-1"}
    assert ISSUE.search("as issue #11 item 3 did") and ISSUE.search("(issues #11, #12)")
    assert not ISSUE.search("an issue with the renderer")
    cite = "see ../" + "sha" + "red/DESI" + "GN.md §1"
    assert sum(bool(p.search(cite.encode())) for p in OUTSIDE) == 2
