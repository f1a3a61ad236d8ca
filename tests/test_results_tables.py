"""Every README table marked as generated matches the committed results it is generated from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_tables_match_docs_results():
    out = subprocess.run(
        [sys.executable, str(REPO / "docs" / "results_tables.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


def test_a_stale_table_is_caught(tmp_path):
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import results_tables
    finally:
        sys.path.pop(0)
    marked = [p for p in (REPO / "docs" / "results").glob("*.json")]
    if not marked:
        return
    path = marked[0].relative_to(REPO).as_posix()
    stale = f"<!-- results {path} tasks -->\n| made up |\n<!-- /results -->"
    assert results_tables.render(stale) != stale
