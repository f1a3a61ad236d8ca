"""Every table marked as generated, in the README and on the study pages (docs/studies/), matches
the committed results it is generated from; a hand-edited one is caught."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_docs import anchors as _anchors

REPO = Path(__file__).resolve().parents[1]


def _script(folder: str, name: str):
    """A script of the repository's ``folder`` (docs/, benchmarks/), imported as a module."""
    sys.path.insert(0, str(REPO / folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_readme_and_study_tables_match_docs_results():
    out = subprocess.run(
        [sys.executable, str(REPO / "docs" / "results_tables.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


def test_the_readme_and_every_study_page_are_generated():
    """The README holds the one headline table; every study page holds generated tables."""
    results_tables = _script("docs", "results_tables")
    pages = {p.relative_to(REPO).as_posix() for p in results_tables.pages()}
    studies = {p.relative_to(REPO).as_posix() for p in (REPO / "docs" / "studies").glob("*.md")}
    assert "README.md" in pages and studies <= pages
    readme = (REPO / "README.md").read_text()
    assert readme.count("<!-- results docs/results headline -->") == 1
    for page in studies - {"docs/studies/README.md"}:
        assert results_tables.MARKER.search((REPO / page).read_text()), f"{page}: no table"


def _hand_edited(text: str) -> str:
    """``text`` with the first cell of the first generated table's last row changed by hand."""
    start = text.index("<!-- results ")
    end = text.index("\n<!-- /results -->", start)
    row_start = text.rindex("\n", start, end) + 1
    return text[:row_start] + "| typed by hand " + text[row_start:]


def test_a_hand_edited_table_is_caught_on_every_page():
    results_tables = _script("docs", "results_tables")
    for page in results_tables.pages():
        text = page.read_text()
        if not results_tables.MARKER.search(text):
            continue
        edited = _hand_edited(text)
        assert edited != text
        assert results_tables.render(edited, page) == text, page


def test_check_fails_on_a_stale_page_and_names_it(tmp_path, monkeypatch, capsys):
    results_tables = _script("docs", "results_tables")
    page = tmp_path / "study.md"
    fresh = results_tables.render(
        "# A study\n\n<!-- results docs/results/default_run.json tasks -->\n<!-- /results -->\n",
        page,
    )
    assert "| reach-v3 | 3/10 | 3/10 | 10/10 | 0/10 |" in fresh
    page.write_text(_hand_edited(fresh))
    monkeypatch.setattr(results_tables, "pages", lambda: [page])
    monkeypatch.setattr(sys, "argv", ["results_tables.py", "--check"])
    assert results_tables.main() == 1
    assert str(page) in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["results_tables.py"])
    assert results_tables.main() == 0 and page.read_text() == fresh
    monkeypatch.setattr(sys, "argv", ["results_tables.py", "--check"])
    assert results_tables.main() == 0


def test_the_headline_table_pools_seeds_and_links_relative_to_its_page(tmp_path):
    results_tables = _script("docs", "results_tables")
    results = tmp_path / "study.json"
    results.write_text(
        json.dumps(
            [
                _entry("videoworld", 0.1, 0, 10),
                _entry("videoworld", 0.1, 1, 12),
                _entry("bc", 0.1, 0, 9),
                _entry("videoworld_t4k", 0.1, 0, 20),  # another policy: not pooled
                _entry("expert", None, None, 20),
            ]
        )
    )
    study = {
        "study": "A study",
        "page": "docs/studies/a_study.md#its-section",
        "file": str(results),
        "rows": [("videoworld", 0.1), ("bc", 0.1), ("expert", None)],
    }
    table = results_tables.headline_table(REPO / "README.md", [study]).splitlines()
    assert table[2] == (
        "| [A study](docs/studies/a_study.md#its-section) | VideoWorld | 10% (2) | 2 | "
        "22/40 = 0.550 [0.40, 0.69] | — |"
    )
    assert table[3] == "|  | BC | 10% (2) | 1 | 9/20 = 0.450 [0.26, 0.66] | — |"
    assert table[4] == "|  | scripted expert | — | — | 20/20 = 1.000 [0.84, 1.00] | — |"
    beside = results_tables.headline_table(REPO / "docs" / "studies" / "README.md", [study])
    assert "[A study](a_study.md#its-section)" in beside
    missing = {**study, "rows": [("noldm", 0.1)]}
    with pytest.raises(SystemExit, match="no entry of policy 'noldm'"):
        results_tables.headline_table(REPO / "README.md", [missing])


def test_the_headline_rows_exist_in_their_files():
    """Every row the README's headline table names is in its results file, and its study page
    and section exist."""
    results_tables = _script("docs", "results_tables")
    table = results_tables.headline_table(REPO / "README.md")
    assert table.count("| VideoWorld |") >= 4 and table.count("| BC |") >= 4
    for study in results_tables.HEADLINE:
        target, _, anchor = study["page"].partition("#")
        assert (REPO / target).is_file(), target
        if anchor:
            assert anchor in _anchors(REPO / target), study["page"]


def test_a_playground_study_becomes_data_and_a_table(tmp_path):
    """eval-chains output -> a results entry (vw_robot.eval.entries) -> the table kind."""
    from vw_robot.cli import main
    from vw_robot.eval.entries import chains_entry

    folder = tmp_path / "study" / "eval" / "random"
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
                f"out={folder}",
            ]
        )
        == 0
    )
    entry = chains_entry(folder, policy="random", command="vw-robot eval-chains ...")
    assert entry["policy"] == "random" and entry["chains"] == 2 and entry["eval_seed_base"] == 1000
    assert entry["variant"] == "random" and entry["label_fraction"] is None
    assert len(entry["tasks"]) == 12 and set(entry["groups"]) == {
        "push",
        "open/close",
        "turn on/off",
    }
    assert len(entry["success_after"]) == 5 and entry["max_steps"] == 3
    # Per subtask of the chains: 2 chains started, so 2 attempts in all, none completed.
    assert sum(row["attempts"] for row in entry["chain_subtasks"].values()) == 2
    assert all(row["successes"] == 0 for row in entry["chain_subtasks"].values())
    results_tables = _script("docs", "results_tables")
    table = results_tables.playground_table([entry])
    assert "| random | — | — | 0/6 | 0/2 | 0/4 |" in table and "| 2 |" in table


def _entry(policy, share, seed, successes):
    return {
        "policy": policy,
        "label_fraction": share,
        "labelled_episodes": None if share is None else 2,
        "train_seed": seed,
        "mean_success": successes / 20,
        "tasks": {"metaworld/reach-v3": {"successes": successes, "episodes": 20}},
    }


def test_the_seeds_table_pools_training_seeds_and_compares_intervals():
    results_tables = _script("docs", "results_tables")
    entries = [
        *(_entry("videoworld", 0.1, k, n) for k, n in enumerate([10, 12, 11])),
        *(_entry("bc", 0.1, k, n) for k, n in enumerate([2, 3, 1])),
        *(_entry("videoworld", 0.25, k, n) for k, n in enumerate([10, 9, 11])),
        *(_entry("bc", 0.25, k, n) for k, n in enumerate([9, 10, 8])),
        _entry("expert", None, None, 20),
    ]
    table = results_tables.seeds_table(entries).splitlines()
    assert table[0] == (
        "| policy | labels (episodes) | seed 0 | seed 1 | seed 2 | seeds pooled [95% CI] |"
    )
    vw10 = next(line for line in table if line.startswith("| videoworld | 10%"))
    # 33 of 60 pooled; Wilson 95%: [0.42, 0.67]
    assert "10/20 = 0.500" in vw10 and "33/60 = 0.550 [0.42, 0.67] (3 seeds)" in vw10
    expert = next(line for line in table if line.startswith("| expert"))
    assert "20/20 = 1.000" in expert and "(3 seeds)" not in expert
    # 33/60 [0.42, 0.67] vs 6/60 [0.05, 0.20]; 30/60 [0.38, 0.62] vs 27/60 [0.33, 0.58]
    assert "- 10% labels: VideoWorld 0.550 [0.42, 0.67] vs BC 0.100 [0.05, 0.20]" in table[-2]
    assert table[-2].endswith("the intervals do not overlap (difference +0.450).")
    assert table[-1].startswith("- 25% labels: VideoWorld 0.500")
    assert "the intervals overlap" in table[-1]


def test_the_seeds_table_states_videos_and_labels_per_task():
    """A comparison says how many videos per task the generator saw and how many episodes per
    task were labelled; BC has no generator."""
    results_tables = _script("docs", "results_tables")
    videos = {"metaworld/reach-v3": 100, "metaworld/push-v3": 98}
    labels = {"metaworld/reach-v3": 10, "metaworld/push-v3": 10}
    entries = [
        {**_entry("videoworld", 0.1, 0, 12), "videos_per_task": videos},
        {**_entry("bc", 0.1, 0, 9), "videos_per_task": None},
    ]
    entries = [{**e, "labelled_per_task": labels} for e in entries]
    table = results_tables.seeds_table(entries).splitlines()
    assert "| videos / labelled per task |" in table[0]
    assert table[2].startswith("| videoworld | 10% (2) | 98-100 / 10 | 12/20")
    assert table[3].startswith("| bc | 10% (2) | — / 10 | 9/20")
    older = results_tables.seeds_table([_entry("videoworld", 0.1, 0, 12)]).splitlines()
    assert "videos / labelled" not in older[0]


def test_the_seeds_table_names_the_transformer_steps_where_they_differ():
    """A VideoWorld head on a longer-trained transformer is its own row, labelled with the
    transformer's steps; a table whose generators all match says nothing."""
    results_tables = _script("docs", "results_tables")
    entries = [
        {**_entry("videoworld", 0.1, 0, 12), "transformer_steps": 1000},
        {**_entry("videoworld_t6k", 0.1, 0, 15), "transformer_steps": 6000},
        _entry("bc", 0.1, 0, 9),
    ]
    table = results_tables.seeds_table(entries).splitlines()
    assert table[2].startswith("| videoworld (transformer 1000 steps) | 10% (2) | 12/20")
    assert table[3].startswith("| videoworld_t6k (transformer 6000 steps) | 10% (2) | 15/20")
    assert table[4].startswith("| bc | 10% (2) | 9/20")
    same = results_tables.seeds_table(entries[:1] + entries[2:]).splitlines()
    assert same[2].startswith("| videoworld | 10% (2) | 12/20")


def test_the_variants_table_names_an_image_size_other_than_64():
    results_tables = _script("docs", "results_tables")
    assert results_tables._camera({"camera": "front+top", "image_size": 96}) == "front+top, 96 px"
    assert results_tables._camera({"camera": "front+top", "image_size": 64}) == "front+top"
    assert results_tables._camera({}) == "corner2"


def test_the_tasks_table_scores_multi_subtask_episodes_by_subtasks_completed():
    results_tables = _script("docs", "results_tables")
    tasks = {"kitchen/kettle": {"successes": 3, "episodes": 4}}
    d4rl = {
        "successes": 1,
        "episodes": 4,
        "mean_completed": 2.5,
        "completed_counts": [0, 1, 1, 1, 1],
    }
    entries = [
        {
            "variant": "bc",
            "policy": "bc",
            "tasks": tasks,
            "mean_success": 0.75,
            "sequences": {"kitchen/d4rl-4": d4rl},
        },
        {
            "variant": "old",
            "policy": "bc",
            "tasks": tasks,
            "mean_success": 0.75,
        },  # measured before them
    ]
    lines = results_tables.tasks_table(entries).splitlines()
    assert lines[-1] == "| d4rl-4: subtasks completed of 4 (episodes) | 2.50 (4) | — |"


def test_the_playground_table_adds_every_subtask_when_an_entry_has_them():
    results_tables = _script("docs", "results_tables")
    twelve = results_tables.videoworld_task_ids()
    others = [f"playground/other-{k}" for k in range(9)]
    groups = {"push": {"successes": 8, "episodes": 8}}

    def entry(tasks, wins):
        return {
            "policy": "expert",
            "label_fraction": None,
            "tasks": {t: {"successes": wins, "episodes": 2} for t in tasks},
            "mean_success": wins / 2,
            "groups": groups,
            "chains": 4,
            "chain_length": 2,
            "success_after": [4, 2],
            "average_length": 1.5,
        }

    lines = results_tables.playground_table(
        [entry(twelve + others, 1), entry(twelve, 2)]
    ).splitlines()
    assert "| 12 subtasks [95% CI] | all 21 [95% CI] | chains |" in lines[0]
    # The 12 pooled apart from the other nine; an entry of the 12 only has no cell for all.
    assert "| 0.50 [0.31, 0.69] | 0.50 [0.36, 0.64] | 4 |" in lines[2]
    assert "| 1.00 [0.86, 1.00] | — | 4 |" in lines[3]


def test_the_starts_table_pools_seeds_per_training_data_and_start():
    results_tables = _script("docs", "results_tables")

    def entry(data, start, seed, wins):
        tasks = {"playground/open-drawer": {"successes": wins, "episodes": 10}}
        return {"trained_on": data, "evaluated_from": start, "train_seed": seed, "tasks": tasks}

    entries = [
        entry("home", "home", 0, 9),
        entry("home", "random", 0, 1),
        entry("home", "home", 1, 8),
        entry("home", "random", 1, 2),
        entry("mixed", "home", 0, 7),
        entry("mixed", "random", 0, 8),
    ]
    lines = results_tables.starts_table(entries).splitlines()
    assert lines[0] == "| trained on | training seed | from home | from random |"
    assert lines[4] == (
        "| home | pooled (2 seeds) | 17/20 = 0.850 [0.64, 0.95] | 3/20 = 0.150 [0.05, 0.36] |"
    )
    assert (
        lines[6]
        == "| mixed | pooled (1 seed) | 7/10 = 0.700 [0.40, 0.89] | 8/10 = 0.800 [0.49, 0.94] |"
    )
    assert lines[-2] == "- from home: the pooled intervals of home and mixed overlap."
    assert lines[-1] == "- from random: the pooled intervals of home and mixed do not overlap."


def test_the_unlabelled_table_splits_tasks_by_the_recorded_labels():
    results_tables = _script("docs", "results_tables")
    tasks = {
        "kitchen/kettle": {"successes": 3, "episodes": 4},
        "kitchen/microwave": {"successes": 1, "episodes": 4},
        "kitchen/top-burner": {"successes": 2, "episodes": 4},
    }
    split = ["kitchen/kettle", "kitchen/top-burner"]
    entries = [
        {"policy": "expert", "label_fraction": None, "tasks": tasks},
        {
            "policy": "lapa",
            "label_fraction": 1.0,
            "labelled_tasks": split,
            "switches": {"task_conditioning": True},
            "recipe": {"pretrained": True},
            "tasks": tasks,
        },
        {
            "policy": "bc",
            "variant": "bc_notask",
            "label_fraction": 1.0,
            "labelled_tasks": split,
            "switches": {"task_conditioning": False},
            "tasks": tasks,
        },
    ]
    lines = results_tables.unlabelled_table(entries).splitlines()
    assert lines[2] == "| expert | — | — | 5/8 = 0.625 [0.31, 0.86] | 1/4 = 0.250 [0.05, 0.70] |"
    assert lines[3].startswith("| lapa | yes | latent-action pretraining | 5/8")
    assert lines[4].startswith("| bc_notask | no | no | 5/8")
    assert lines[-1] == "Unlabelled tasks: microwave."
    entries[2]["labelled_tasks"] = ["kitchen/kettle"]
    with pytest.raises(ValueError, match="one labelled_tasks split"):
        results_tables.unlabelled_table(entries)


def test_suite_results_merge_keeps_lost_rows_and_unchanged_commands():
    """A study's results merge: rows of eval folders since lost stay, an unchanged row keeps
    the command that made it, a re-evaluated row is replaced."""
    from vw_robot.eval.entries import merge_entries

    tasks = {"metaworld/reach-v3": {"successes": 3, "episodes": 20}}

    def row(variant, commit, command, successes=3):
        reach = {**tasks["metaworld/reach-v3"], "successes": successes}
        return {
            "variant": variant,
            "commit": commit,
            "command": command,
            "tasks": {"metaworld/reach-v3": reach},
        }

    before = [
        row("videoworld-10pct_seed0", "aaa", "SEEDS=0 study"),  # its folder is lost
        row("videoworld-10pct_seed1", "bbb", 'SEEDS="1 2" study'),
        row("bc-10pct_seed1", "bbb", 'SEEDS="1 2" study'),
    ]
    measured = [
        row("videoworld-10pct_seed1", "bbb", "today's command"),  # unchanged
        row("bc-10pct_seed1", "ccc", "today's command", successes=5),  # evaluated again
        row("noldm-10pct_seed0", "ccc", "today's command"),  # new
    ]
    merged = {e["variant"]: e for e in merge_entries(before, measured)}
    assert merged["videoworld-10pct_seed0"]["command"] == "SEEDS=0 study"
    assert merged["videoworld-10pct_seed1"]["command"] == 'SEEDS="1 2" study'
    assert merged["bc-10pct_seed1"]["tasks"]["metaworld/reach-v3"]["successes"] == 5
    assert merged["noldm-10pct_seed0"]["command"] == "today's command"
    order = [e["variant"] for e in merge_entries(before, measured)]
    assert order == [  # the file's order, then what is new
        "videoworld-10pct_seed0",
        "videoworld-10pct_seed1",
        "bc-10pct_seed1",
        "noldm-10pct_seed0",
    ]
