"""`vw-robot COMMAND -m ...`: Hydra sweeps, one job per combination, each in its own folder."""

from __future__ import annotations

import json

import pytest

from vw_robot.cli import load_config, main

# One 3-step random episode at 16 px: a job takes a second or two.
EVAL = [
    "policy=random",
    "tasks=[metaworld/reach-v3]",
    "episodes_per_task=1",
    "max_episode_steps=3",
    "image_size=16",
    "videos_per_task=0",
]


def test_tasks_sweep_runs_each_job_and_lists_them(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    args = ["tasks", "-m", "suite=metaworld/mt10,metaworld/mt50", f"hydra.sweep.dir={sweep}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "metaworld/mt10 (10 tasks)" in printed and "metaworld/mt50 (50 tasks)" in printed
    summary = printed.split("sweep: 2 job(s), 2 succeeded, 0 failed")[1]
    assert "suite=metaworld/mt10" in summary and "suite=metaworld/mt50" in summary
    jobs = json.loads((sweep / "sweep.json").read_text())["jobs"]
    assert [(j["overrides"], j["status"], j["out"]) for j in jobs] == [
        (["suite=metaworld/mt10"], 0, None),
        (["suite=metaworld/mt50"], 0, None),
    ]
    # Hydra's globals are left as found: a single run composes as before.
    assert load_config("tasks", ["suite=metaworld/mt10"]).suite == "metaworld/mt10"


def test_eval_sweep_gives_each_job_its_own_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "-m", *EVAL, "seed=0,1"]) == 0
    (sweep,) = [p.relative_to(tmp_path) for p in tmp_path.glob("multirun/*/*")]  # <date>/<time>
    payloads = [json.loads((sweep / str(n) / "results.json").read_text()) for n in (0, 1)]
    assert [p["config"]["out"] for p in payloads] == [f"{sweep}/0", f"{sweep}/1"]
    assert [p["config"]["seed"] for p in payloads] == [0, 1]
    assert payloads[0]["episodes"][0]["seed"] != payloads[1]["episodes"][0]["seed"]
    assert payloads[0]["episodes"][0]["return"] != payloads[1]["episodes"][0]["return"]
    assert not (sweep / "0" / ".hydra").exists()  # the folder holds what a single run's out does
    summary = capsys.readouterr().out.split("sweep: 2 job(s), 2 succeeded, 0 failed")[1]
    for n in (0, 1):
        assert f"{sweep}/{n}  seed={n}" in summary
    jobs = json.loads((sweep / "sweep.json").read_text())["jobs"]
    assert [(j["status"], j["out"]) for j in jobs] == [(0, f"{sweep}/0"), (0, f"{sweep}/1")]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("seed=0,abc", "seed"),
        ("seed=0,-1", "seed"),
        ("image_size=16,7", "image_size"),
        ("+no_such_key=1,2", "no_such_key"),
        ("no_such_key=1,2", "no_such_key"),
    ],
)
def test_bad_sweep_override_fails_before_any_job_naming_the_key(override, key, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert main(["eval", "-m", *EVAL, override, f"hydra.sweep.dir={sweep}"]) == 2
    assert key in capsys.readouterr().err
    assert not sweep.exists()


def test_a_constant_out_is_refused_in_a_sweep_but_a_per_job_one_is_not(tmp_path, capsys):
    sweep, out = tmp_path / "sweep", tmp_path / "same"
    assert main(["eval", "-m", *EVAL, "seed=0,1", f"out={out}", f"hydra.sweep.dir={sweep}"]) == 2
    err = capsys.readouterr().err
    assert f"out: jobs 0 and 1 of the sweep would both write {out}" in err
    assert not out.exists() and not sweep.exists()
    for per_job in (f"out={tmp_path}/seed${{seed}}", f"out={tmp_path}/seed${{hydra:job.num}}"):
        assert main(["eval", "-m", *EVAL, "seed=0,1", per_job, "--cfg"]) == 0
        printed = capsys.readouterr().out
        assert f"out: {tmp_path}/seed0\n" in printed and f"out: {tmp_path}/seed1\n" in printed


def test_train_sweep_may_share_out_when_run_name_differs(capsys):
    args = ["train", "-m", "stage=action_head,bc", "out=runs/x", "run_name=${stage}_seed1", "--cfg"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "run_name: action_head_seed1" in printed and "run_name: bc_seed1" in printed
    assert main(["train", "-m", "stage=action_head,bc", "out=runs/x", "run_name=head"]) == 2
    assert "would both write runs/x/head" in capsys.readouterr().err


def test_a_failing_job_does_not_stop_the_others(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    args = ["tasks", "-m", "suite=metaworld/nope,metaworld/mt10", f"hydra.sweep.dir={sweep}"]
    assert main(args) == 2  # the highest exit status of the jobs
    captured = capsys.readouterr()
    assert "Unknown suite 'metaworld/nope'" in captured.err
    assert "metaworld/reach-v3" in captured.out  # the second job ran
    jobs = json.loads((sweep / "sweep.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == [2, 0]


def test_hydra_settings_need_a_sweep_and_serve_cannot_be_swept(capsys):
    assert main(["tasks", "hydra/launcher=basic"]) == 2
    assert "hydra/launcher: Hydra's own settings apply to sweeps only; add -m" in (
        capsys.readouterr().err
    )
    assert main(["serve", "-m", "port=8765,8766"]) == 2
    assert "cannot be swept" in capsys.readouterr().err


@pytest.mark.slow  # two fresh worker processes import torch and the simulators
def test_joblib_launcher_runs_the_jobs_in_worker_processes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")  # pip install -e ".[sweeps]"
    sweep = tmp_path / "sweep"
    args = [*EVAL, "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    assert main(["eval", "-m", *args, f"hydra.sweep.dir={sweep}"]) == 0
    seeds = [json.loads((sweep / n / "results.json").read_text())["config"]["seed"] for n in "01"]
    assert seeds == [0, 1]
