"""Every README table marked as generated matches the committed results it is generated from."""

from __future__ import annotations

import json
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


def test_a_playground_study_becomes_data_and_a_table(tmp_path):
    """eval-chains output -> benchmarks/results_json.py playground -> the README's table kind."""
    from vw_robot.cli import main

    out = tmp_path / "study"
    assert (
        main(
            [
                "eval-chains",
                "policy=random",
                "chains=2",
                "steps_per_subtask=3",
                "single_episodes=1",
                "seed=1000",
                "videos=0",
                f"out={out / 'eval' / 'random'}",
            ]
        )
        == 0
    )
    target = tmp_path / "playground.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "results_json.py"),
            "playground",
            str(out),
            "--json",
            str(target),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(target.read_text())
    assert entry["policy"] == "random" and entry["chains"] == 2 and entry["eval_seed_base"] == 1000
    assert len(entry["tasks"]) == 12 and set(entry["groups"]) == {
        "push",
        "open/close",
        "turn on/off",
    }
    assert len(entry["success_after"]) == 5 and entry["max_steps"] == 3
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import results_tables
    finally:
        sys.path.pop(0)
    table = results_tables.playground_table([entry])
    assert "| random | — | 0/6 | 0/2 | 0/4 |" in table and "| 2 |" in table
