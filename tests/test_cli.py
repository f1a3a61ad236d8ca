"""The `vw-robot` command: main job end to end on a tiny config, and config errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from vw_robot import cli
from vw_robot.cli import load_config, main


def test_eval_expert_tiny(tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        ["eval", "tasks=[metaworld/reach-v3]", "episodes_per_task=2", "image_size=32", f"out={out}"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| metaworld/reach-v3 | 2 | 2 |" in printed
    payload = json.loads((out / "results.json").read_text())
    assert payload["summary"]["mean_success"] == 1.0
    assert payload["config"]["resolved_tasks"] == ["metaworld/reach-v3"]
    assert (out / "videos" / "metaworld__reach-v3__ep000.mp4").stat().st_size > 0


def test_default_configs_are_the_documented_defaults():
    cfg = load_config("eval", [])
    assert cfg.policy == "expert" and cfg.suite == "metaworld/mt10" and cfg.image_size == 64
    run = load_config("run", [])
    assert run.experiment.name == "tiny_cpu" and run.image_size == 64 and len(run.tasks) == 3


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("episodes_per_task=abc", "episodes_per_task"),
        ("episodes_per_task=0", "episodes_per_task"),
        ("workers=0", "workers"),
        ("image_size=7", "image_size"),
        ("suite=metaworld/mt11", "suite"),
        ("tasks=[metaworld/reach]", "tasks"),
        ("camera=nope", "camera"),
        ("camera=front+top+workspace", "camera"),  # 3 views do not divide 64 rows
        ("policy=videoworld", "policy"),
        ("execute=0", "execute"),
        ("no_such_key=1", "no_such_key"),
        ("+no_such_key=1", "no_such_key"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(override, key, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["eval", override, f"out={out}"]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+no_such_key=1", "no_such_key: not a config key"),
        ("no_such_key=1", "no_such_key: not a config key"),
        ("+experiment.no_such_key=1", "experiment.no_such_key: not a config key"),
        ("eval_episode=3", "eval_episode: not a config key (did you mean eval_episodes?)"),
    ],
)
def test_unknown_key_fails_even_with_cfg(override, message, capsys):
    assert main(["run", override, "--cfg"]) == 2
    assert message in capsys.readouterr().err


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_tasks_lists_suite(capsys):
    assert main(["tasks", "suite=metaworld/mt10"]) == 0
    assert "metaworld/reach-v3" in capsys.readouterr().out


def test_collect_then_check_then_flag_a_defect(tmp_path, capsys):
    out = tmp_path / "demo"
    args = [
        "collect",
        "tasks=[metaworld/reach-v3]",
        "episodes_per_task=1",
        "image_size=16",
        f"out={out}",
    ]
    assert main(args) == 0
    assert "| metaworld/reach-v3 | 1 | 0 | 0 |" in capsys.readouterr().out
    assert main(["data", "check", str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    video = next(out.glob("episodes/*/video.mp4"))
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    assert main(["data", "check", str(out)]) == 1
    assert str(video) in capsys.readouterr().out


def test_collect_bad_codec_names_the_key(tmp_path, capsys):
    assert main(["collect", "suite=metaworld/mt10", "codec=png", f"out={tmp_path / 'x'}"]) == 2
    assert "codec" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tasks=[metaworld/reach-v3]", "segments=true"], "segments=true cuts episodes"),
        (["tasks=[metaworld/reach-v3]", "start=random"], "start='random' applies to single"),
        (["tasks=[playground/open-drawer]", "start=anywhere"], "start='anywhere' is not a start"),
        (["tasks=[playground/open-drawer]", "action_noise=-0.1"], "action_noise=-0.1 must be"),
    ],
)
def test_collect_refuses_bad_switches_before_writing(tmp_path, capsys, args, message):
    out = tmp_path / "x"
    assert main(["collect", *args, f"out={out}"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_data_import_from_the_command_line(tmp_path, capsys):
    from vw_robot.data.format import read_manifest
    from vw_robot.data.video import write_video

    src = tmp_path / "videos" / "wave"
    src.mkdir(parents=True)
    frames = np.random.default_rng(0).integers(0, 255, (6, 24, 40, 3), dtype=np.uint8)
    write_video(src / "a.mp4", frames, fps=10, codec="standard")
    out = tmp_path / "ds"
    assert main(["data", "import", str(tmp_path / "videos"), f"out={out}", "image_size=16"]) == 0
    assert "imported 1 video(s)" in capsys.readouterr().out
    rows = read_manifest(out)["episodes"]
    assert [(r["task_id"], r["num_frames"], r["has_actions"]) for r in rows] == [("wave", 6, False)]
    assert main(["data", "import", str(tmp_path / "nothing"), f"out={out}"]) == 2


def test_run_suite_replaces_the_default_tasks():
    cfg = load_config("run", ["suite=metaworld/mt10"])
    assert len(cfg.validate()) == 10
    assert load_config("run", []).validate() == list(load_config("run", []).tasks)


def test_lerobot_export_check_import_from_the_command_line(tmp_path, capsys):
    import pyarrow.parquet as pq

    from vw_robot.data.format import load_steps, read_manifest, read_meta

    data = tmp_path / "demo"
    collect = ["collect", "tasks=[metaworld/reach-v3]", "episodes_per_task=2", "image_size=16"]
    assert main([*collect, "max_episode_steps=12", "keep_failed=true", f"out={data}"]) == 0
    exported = tmp_path / "lerobot"
    assert main(["data", "export-lerobot", str(data), f"out={exported}"]) == 0
    assert "validated" in capsys.readouterr().out
    assert main(["data", "check-lerobot", str(exported)]) == 0
    tasks = pq.read_table(exported / "meta/tasks.parquet").column("task").to_pylist()
    assert tasks == ["reach the goal position"]  # the instruction, the id in info.json
    back = tmp_path / "back"
    assert main(["data", "import-lerobot", str(exported), f"out={back}", "image_size=16"]) == 0
    assert main(["data", "check", str(back)]) == 0
    originals, imported = read_manifest(data)["episodes"], read_manifest(back)["episodes"]
    assert [r["num_frames"] for r in imported] == [r["num_frames"] for r in originals]
    first = read_meta(back, imported[0]["episode_id"])
    assert first.task_id == "metaworld/reach-v3"
    assert (first.action_low, first.action_high) == ([-1.0] * 4, [1.0] * 4)  # the env's
    before = load_steps(data, read_meta(data, originals[0]["episode_id"]))["actions"]
    np.testing.assert_array_equal(load_steps(back, first)["actions"], before)
    # A second export into the same folder is refused, naming the key that allows it.
    assert main(["data", "export-lerobot", str(data), f"out={exported}"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_a_user_mistake_exits_2_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    from vw_robot import jobs
    from vw_robot.errors import UserError

    def mistake(cfg):
        raise UserError("tasks: 'x' is not a task")

    def bug(cfg):
        raise ValueError("shapes (3,) and (4,) do not align")

    assert cli.COMMANDS["tasks"].job == "vw_robot.jobs:tasks"  # resolved when it runs
    monkeypatch.setattr(jobs, "tasks", mistake)
    assert main(["tasks"]) == 2
    assert "'x' is not a task" in capsys.readouterr().err
    monkeypatch.setattr(jobs, "tasks", bug)
    with pytest.raises(ValueError, match="do not align"):
        main(["tasks"])


def test_serve_and_export_policy_configs_validate():
    from vw_robot.errors import ConfigError

    assert load_config("serve", []).port == 8765
    with pytest.raises(ConfigError, match="port"):
        load_config("serve", ["port=70000"]).validate()
    with pytest.raises(ConfigError, match="policy"):
        load_config("serve", ["policy=no/such/folder"]).validate()


def test_batched_eval_from_the_command_line_matches_the_per_worker_run(tmp_path):
    common = ["eval", "policy=random", "tasks=[metaworld/reach-v3]", "episodes_per_task=3"]
    common += ["image_size=16", "max_episode_steps=4", "videos_per_task=0"]
    assert main([*common, f"out={tmp_path / 'plain'}"]) == 0
    assert main([*common, "batch=2", f"out={tmp_path / 'batched'}"]) == 0
    plain, batched = (
        json.loads((tmp_path / name / "results.json").read_text())["episodes"]
        for name in ("plain", "batched")
    )
    assert [{k: e[k] for k in ("seed", "success", "steps", "return")} for e in plain] == [
        {k: e[k] for k in ("seed", "success", "steps", "return")} for e in batched
    ]
    assert main([*common, "batch=0", f"out={tmp_path / 'zero'}"]) == 2


def test_a_command_s_help_lists_its_keys(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vw-robot run") and "video_tasks:" in out and "chains:" in out
    assert main(["data", "check", "-h"]) == 0
    assert "usage: vw-robot data check" in capsys.readouterr().out


def test_every_command_s_job_resolves_to_a_function():
    from vw_robot import launch

    for name, command in cli.COMMANDS.items():
        assert callable(launch.resolve(command.job)), name


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_prints_its_config_with_missing_values_as_marks(command, capsys):
    assert main([*command.split(), "--cfg"]) == 0
    printed = capsys.readouterr().out
    keys = {line.split(":")[0] for line in printed.splitlines() if not line.startswith(" ")}
    config = cli.COMMANDS[command].config
    source = (resources.files("vw_robot.configs") / f"{config}.yaml").read_text()
    mandatory = set(re.findall(r"^(\w+): \?\?\?", source, re.MULTILINE))
    assert mandatory <= keys and keys, printed
    assert all(f"{key}: ???" in printed for key in mandatory), printed
    if command in cli.NO_SWEEP or not mandatory:
        return  # a sweep validates its jobs before it shows them (collect wants a suite)
    assert main([*command.split(), "-m", "--cfg"]) == 0  # a sweep's out is its job's folder
    printed = capsys.readouterr().out
    assert printed.startswith("# job 0")
    assert all(f"{key}: ???" in printed for key in mandatory - {"out"}), printed


def test_cfg_shows_given_values_beside_the_missing_ones(capsys):
    assert (
        main(["data", "import-lerobot", "lerobot_ds", "camera_key=observation.image", "--cfg"]) == 0
    )
    printed = capsys.readouterr().out
    assert "src: lerobot_ds\nout: ???\ncamera_key: observation.image\n" in printed
    assert main(["data", "import-lerobot", "--cfg", "image_size=abc"]) == 2
    assert "image_size" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["data"], ["data", "--help"], ["data", "-h"], ["data", "help"]])
def test_data_lists_its_subcommands(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vw-robot data SUBCOMMAND")
    for name, command in cli.COMMANDS.items():
        if name.startswith("data "):
            line = next(x for x in out.splitlines() if x.split()[:1] == [name.split()[1]])
            assert line.endswith(command.help), line


def test_an_unknown_data_subcommand_names_it_and_lists_the_others(capsys):
    assert main(["data", "frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'data frobnicate'" in err and "import-lerobot" in err


def test_the_stage_list_is_the_declared_one():
    from vw_robot.training.stages import STAGES

    assert cli.stage_names() == tuple(STAGES)


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help_lists_every_stage(argv, capsys):
    from vw_robot.training.stages import STAGES

    assert main(argv) == 0
    assert f"stage={'|'.join(STAGES)}" in capsys.readouterr().out


def test_help_and_cfg_import_no_job():
    """``vw-robot --help`` answers without torch or a simulator; ``--cfg`` without the jobs
    (the schemas it composes import torch). In a fresh process: this one has them all."""
    probe = (
        "import sys\n"
        "from vw_robot.cli import main\n"
        "for argv in (['--help'], ['data'], ['train', '--help'], ['data', 'check', '-h']):\n"
        "    assert main(argv) == 0\n"
        "heavy = ('torch', 'mujoco', 'pyarrow', 'vw_robot.config', 'vw_robot.jobs')\n"
        "print('help', *[m for m in heavy if m in sys.modules])\n"
        "assert main(['data', 'import-lerobot', '--cfg']) == 0\n"
        "print('cfg', *[m for m in ('vw_robot.jobs', 'vw_robot.study') if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/"
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith(("help", "cfg"))]
    assert lines == ["help", "cfg"], done.stdout


def test_study_s_job_gets_the_command_as_typed(monkeypatch):
    from vw_robot import study

    calls = []
    monkeypatch.setattr(study, "run_study", lambda cfg, command: calls.append((cfg, command)))
    assert main(["study", "tiny", "only=[bc]"]) == 0
    [(cfg, command)] = calls
    assert command == "vw-robot study tiny 'only=[bc]'" and cfg.study == "tiny"


def test_the_command_line_makes_openmp_threads_wait_passively_unless_told():
    """Set before torch loads (spinning threads starve each other on shared cores)."""
    import os
    import subprocess
    import sys

    code = "import os, vw_robot.cli; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "PASSIVE", done.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "ACTIVE", done.stderr
