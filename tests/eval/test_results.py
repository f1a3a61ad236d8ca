"""`vw-robot eval out=DIR` never destroys results: it resumes the same config (keeping what
was recorded), refuses another unless overwrite=true, and its videos are its own."""

from __future__ import annotations

import json
import logging
import os

import pytest

from vw_robot.cli import main
from vw_robot.envs import list_tasks
from vw_robot.eval.report import EPISODES_FILE, ResultsError, open_record, run_recorded
from vw_robot.eval.rollout import EpisodeResult
from vw_robot.provenance import provenance
from vw_robot.training.loop import config_differences

TASKS = "tasks=[metaworld/reach-v3,metaworld/drawer-close-v3]"
ARGS = [TASKS, "episodes_per_task=2", "image_size=16", "max_episode_steps=20", "policy=random"]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_interrupted_eval_resumes_keeping_what_it_recorded(tmp_path, capsys, caplog):
    out = tmp_path / "eval"
    assert main(["eval", *ARGS, f"out={out}"]) == 0
    record = out / EPISODES_FILE
    header, *rows = lines(record)
    assert header["config"]["episodes_per_task"] == 2 and len(rows) == 4
    assert rows[0]["video"] == "videos/metaworld__reach-v3__ep000.mp4"
    # As if killed while recording the second task: its rows never made it, the last torn.
    # The first task's rows are marked, to see that they are kept and not run again.
    kept = [{**row, "steps": 999} for row in rows[:2]]
    torn = json.dumps(rows[2])[:25]
    record.write_text("".join(json.dumps(r) + "\n" for r in [header, *kept]) + torn)
    (out / "results.json").unlink()
    with caplog.at_level(logging.INFO, logger="vw_robot"):
        assert main(["eval", *ARGS, f"out={out}"]) == 0
    assert "dropped an incomplete last line" in caplog.text
    assert "(2 recorded by an earlier run)" in capsys.readouterr().out
    episodes = json.loads((out / "results.json").read_text())["episodes"]
    assert [e["steps"] for e in episodes[:2]] == [999, 999]
    assert [(e["task_id"], e["index"]) for e in episodes] == [
        (r["task_id"], r["index"]) for r in rows
    ]
    assert episodes[2:] == [{k: r[k] for k in episodes[2]} for r in rows[2:]]  # same seeds
    assert len(lines(record)) == 5
    # A finished run reruns nothing.
    assert main(["eval", *ARGS, f"out={out}"]) == 0
    assert len(lines(record)) == 5 and "(4 recorded by an earlier run)" in capsys.readouterr().out


def test_a_resumed_eval_names_the_commits_that_measured_its_episodes(tmp_path):
    from vw_robot.eval.entries import suite_entry

    out = tmp_path / "eval"
    assert main(["eval", *ARGS, f"out={out}"]) == 0
    now = provenance()["git_revision"]
    record = out / EPISODES_FILE
    header, *rows = lines(record)
    assert {row["commit"] for row in rows} == {now}
    # The first task measured at an earlier commit, the second dropped (run again now).
    kept = [{**row, "commit": "0123abc"} for row in rows[:2]]
    record.write_text("".join(json.dumps(r) + "\n" for r in [header, *kept]))
    assert main(["eval", *ARGS, f"out={out}"]) == 0
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["git_revision"] == now and prov["measured_at"] == ["0123abc", now]
    assert suite_entry(out, policy="random", command="x")["commit"] == f"0123abc + {now}"
    # Rerunning a finished evaluation measures nothing: the earlier commits stay.
    kept = [{**row, "commit": "0123abc"} for row in lines(record)[1:]]
    record.write_text("".join(json.dumps(r) + "\n" for r in [header, *kept]))
    assert main(["eval", *ARGS, f"out={out}"]) == 0
    assert suite_entry(out, policy="random", command="x")["commit"] == "0123abc"


def test_another_config_is_refused_unless_overwrite_which_clears_the_old_videos(tmp_path, capsys):
    out = tmp_path / "eval"
    one_task = ["tasks=[metaworld/reach-v3]", *ARGS[1:]]
    assert main(["eval", *one_task, "videos_per_task=2", f"out={out}"]) == 0
    capsys.readouterr()
    assert main(["eval", *one_task, "episodes_per_task=3", f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert "another config (episodes_per_task: 2 -> 3; videos_per_task: 2 -> 1)" in err
    assert "overwrite=true" in err and len(err.strip().splitlines()) == 1
    assert len(list((out / "videos").glob("*.mp4"))) == 2  # untouched
    assert main(["eval", *one_task, "videos_per_task=0", "overwrite=true", f"out={out}"]) == 0
    assert not (out / "videos").exists()
    payload = json.loads((out / "results.json").read_text())
    assert payload["config"]["videos_per_task"] == 0
    assert all(e["video"] is None for e in payload["episodes"])
    assert lines(out / EPISODES_FILE)[0]["config"]["videos_per_task"] == 0


def test_results_without_a_record_are_refused_and_the_folder_is_held(tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.json").write_text("{}")  # an older vw_robot's results
    assert main(["eval", *ARGS, f"out={out}"]) == 2
    assert "results.json) without the episodes.jsonl" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "{}"
    hold = open_record(out, {"a": 1}, overwrite=True, differences=config_differences)
    again = open_record(out, {"a": 1}, overwrite=False, differences=config_differences)
    busy = rf"another evaluation is writing to this folder \(process {os.getpid()}\)"
    with hold, pytest.raises(ResultsError, match=busy), again:
        pass
    # What does not change results (workers, out) may differ on resume.
    same = {"a": 1, "workers": 2, "out": "elsewhere", "overwrite": False}
    with open_record(out, same, overwrite=False, differences=config_differences) as record:
        assert record.config == {"a": 1}
    (out / EPISODES_FILE).write_text('{"config": {"a": 1}}\n{"task_id": \n{}\n')
    damaged = open_record(out, {"a": 1}, overwrite=False, differences=config_differences)
    with pytest.raises(ResultsError, match=r"episodes.jsonl:2: not valid JSON"), damaged:
        pass


def test_eval_chains_reuses_recorded_chains_and_refuses_another_config(tmp_path, capsys):
    out = tmp_path / "chains"
    args = [
        "eval-chains",
        "policy=random",
        "chains=2",
        "chain_length=2",
        "steps_per_subtask=10",
        "single_episodes=1",
        "image_size=16",
        f"out={out}",
    ]
    assert main(args) == 0
    recorded = lines(out / "chains.jsonl")
    assert len(recorded) == 3 and len(lines(out / "single" / EPISODES_FILE)) == 13
    assert recorded[1]["commit"] == provenance()["git_revision"]
    marked = {**recorded[1], "steps": 999, "commit": "0123abc"}
    (out / "chains.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [*recorded[:1], marked, recorded[2]])
    )
    assert main(args) == 0
    payload = json.loads((out / "chains.json").read_text())
    # The default suite is left out of the record: folders recorded before it existed resume.
    assert "single_suite" not in payload["config"]
    assert payload["chains"][0]["steps"] == 999
    assert payload["provenance"]["measured_at"][0] == "0123abc"  # the chain kept, its commit
    capsys.readouterr()
    assert main([*args, "chains=3"]) == 2
    assert "another config (chains: 2 -> 3)" in capsys.readouterr().err


def test_eval_chains_evaluates_all_21_subtasks_one_at_a_time_when_asked(tmp_path, capsys):
    out = tmp_path / "chains"
    args = ["eval-chains", "policy=random", "chains=1", "chain_length=2", "steps_per_subtask=5"]
    args += ["single_episodes=1", "image_size=16", f"out={out}"]
    assert main([*args, "single_suite=playground/all"]) == 0
    single = json.loads((out / "single" / "results.json").read_text())
    assert sorted(single["summary"]["tasks"]) == sorted(list_tasks("playground/all"))
    assert len(single["summary"]["tasks"]) == 21
    assert "The playground's subtasks, one at a time" in capsys.readouterr().out
    assert json.loads((out / "chains.json").read_text())["config"]["single_suite"] == (
        "playground/all"
    )
    assert main([*args, "single_suite=playground/mt10", f"out={tmp_path / 'x'}"]) == 2
    assert "single_suite: 'playground/mt10'; use playground/videoworld12 or playground/all" in (
        capsys.readouterr().err
    )


def test_each_episode_is_recorded_as_it_ends_and_a_rerun_runs_only_the_rest(tmp_path):
    """One pass over every task with episodes missing; a kill mid-pass keeps what ended."""
    calls = []

    def run(tasks, *, skip, on_episode):
        calls.append((list(tasks), set(skip)))
        for task in tasks:
            for i in range(2):
                if (task, i) not in skip:
                    on_episode(EpisodeResult(task, i, i, True, 1, 0.0))
                    if len(calls) == 1 and (task, i) == ("x/b", 0):
                        raise KeyboardInterrupt  # killed after three episodes
        return {}

    config = {"episodes_per_task": 2}
    tasks = ["x/a", "x/b"]
    with (
        pytest.raises(KeyboardInterrupt),
        open_record(tmp_path, config, overwrite=False, differences=config_differences) as rec,
    ):
        run_recorded(tmp_path, rec, tasks, 2, run)
    assert len(lines(tmp_path / EPISODES_FILE)) == 1 + 3
    with open_record(tmp_path, config, overwrite=False, differences=config_differences) as rec:
        episodes = run_recorded(tmp_path, rec, tasks, 2, run)
    assert calls[1] == (["x/b"], {("x/a", 0), ("x/a", 1), ("x/b", 0)})
    assert {t: [e.index for e in eps] for t, eps in episodes.items()} == {
        "x/a": [0, 1],
        "x/b": [0, 1],
    }
    with open_record(tmp_path, config, overwrite=False, differences=config_differences) as rec:
        run_recorded(tmp_path, rec, tasks, 2, run)
    assert len(calls) == 2  # nothing left to run


def test_a_long_job_records_the_revision_it_started_with(monkeypatch):
    from vw_robot import provenance as prov

    revisions = iter(["abc123", "def456-dirty"])  # a commit made while the job ran
    monkeypatch.setattr(prov, "_git_revision", lambda: next(revisions))
    monkeypatch.setattr(prov, "_PINNED", [])
    assert prov.git_revision() == "abc123"
    assert prov.provenance()["git_revision"] == "abc123"  # asked again hours later


def test_eval_from_random_starts_reaches_the_env_and_is_recorded(tmp_path, capsys):
    from vw_robot.envs import make_env
    from vw_robot.errors import UserError

    env = make_env("playground/open-drawer", image_size=16, start="random")
    _, info = env.reset(seed=3)
    assert info["start"] != "home"  # a random arm pose, or where another subtask left it
    env.close()
    with pytest.raises(UserError, match="only single playground subtasks"):
        make_env("metaworld/reach-v3", start="random")
    out = tmp_path / "eval"
    args = ["eval", "policy=random", "tasks=[playground/open-drawer]", "episodes_per_task=1"]
    args += ["image_size=16", "max_episode_steps=3", "videos_per_task=0", f"out={out}"]
    assert main([*args, "start=random"]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["start"] == "random"
    assert main([*args, f"out={tmp_path / 'home'}"]) == 0
    assert "start" not in json.loads((tmp_path / "home" / "results.json").read_text())["config"]
    capsys.readouterr()
    assert main([*args, "start=anywhere", f"out={tmp_path / 'x'}"]) == 2
    assert "start: 'anywhere'" in capsys.readouterr().err
