"""Task lists mean the same in every command (unset is the suite, [] and repeats are refused);
the main job's settings and the run folders it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from vw_robot.cli import load_config
from vw_robot.errors import ConfigError
from vw_robot.jobs import output_folder
from vw_robot.pipeline import policy_specs, training_jobs


@pytest.mark.parametrize("command", ["eval", "collect", "run"])
def test_a_repeated_task_is_refused_naming_it(command):
    cfg = load_config(command, ["tasks=[metaworld/reach-v3,metaworld/push-v3,metaworld/reach-v3]"])
    with pytest.raises(ConfigError, match=r"^tasks: metaworld/reach-v3 listed more than once"):
        cfg.validate()


@pytest.mark.parametrize(
    ("command", "suite"),
    [("eval", []), ("eval", ["suite=metaworld/mt10"]), ("collect", []), ("run", [])],
)
def test_an_empty_task_list_is_refused(command, suite):
    cfg = load_config(command, ["tasks=[]", *suite])  # (run: a suite replaces its tasks)
    with pytest.raises(ConfigError, match=r"^tasks: \[\] names no task"):
        cfg.validate()


def test_unset_tasks_mean_the_suite():
    assert len(load_config("eval", []).validate()) == 10  # the default suite, metaworld/mt10
    assert len(load_config("collect", ["suite=metaworld/mt10"]).validate()) == 10
    with pytest.raises(ConfigError, match="^suite: give a suite"):
        load_config("collect", []).validate()
    assert load_config("eval", ["tasks=[metaworld/reach-v3]"]).validate() == ["metaworld/reach-v3"]


def test_the_main_job_s_camera_must_exist_for_its_video_tasks_too():
    ok = ["tasks=[metaworld/reach-v3]", "video_tasks=[playground/play]", "camera=front+top"]
    assert load_config("run", ok).validate() == ["metaworld/reach-v3"]
    bad = load_config("run", [*ok[:2], "camera=corner2"])  # Meta-World's, not the playground's
    with pytest.raises(ConfigError, match=r"^camera: 'corner2' for playground/play"):
        bad.validate()


@pytest.mark.parametrize(
    ("overrides", "camera"),
    [
        ([], "front+top"),  # the built-in default: three Meta-World tasks
        (["camera=corner2"], "corner2"),  # a camera given is kept
        (["camera=null"], None),  # each suite's default
        (["suite=playground/all", "experiment=playground_cpu"], None),
        (["suite=robosuite/all", "experiment=robosuite_cpu"], None),
        # Meta-World with the playground's video: no shared view, so each suite's default
        (["tasks=[metaworld/reach-v3]", "video_tasks=[playground/play]"], None),
    ],
)
def test_the_main_job_s_auto_camera_is_each_task_family_s_view(overrides, camera):
    cfg = load_config("run", overrides)
    assert cfg.run_camera(cfg.validate()) == camera


def test_the_main_job_s_camera_is_auto_unless_given_and_a_policy_s_view_must_exist():
    assert load_config("run", []).camera == "auto"
    bad = load_config("run", ["suite=robosuite/all", "camera=front+top"])
    with pytest.raises(ConfigError, match=r"^camera: 'front\+top' for robosuite/"):
        bad.validate()


def test_the_main_job_gives_every_head_the_recipe_and_a_preset_keeps_its_steps():
    for overrides in ([], ["experiment=mt10_cpu"], ["experiment=robosuite_cpu"]):
        exp = load_config("run", overrides).experiment
        for head in (exp.action_head, exp.bc, exp.noldm_head):
            assert head.task_conditioning and head.use_state and head.augment_shift == 4
    assert load_config("run", ["experiment=robosuite_cpu"]).experiment.bc.optim.steps == 2000
    assert load_config("run", []).experiment.bc.optim.steps == 500  # tiny_cpu's
    assert not load_config("train", []).experiment.bc.use_state  # the stages alone: unchanged


def test_the_main_job_names_its_heads_folders_as_a_study_does():
    """`vw-robot run` and `vw-robot train` name a head's run (and evaluation) folder by head,
    labels and training seed (vw_robot.heads.run_name); generator folders keep their names."""
    overrides = [
        "experiment.action_head.label_fraction=0.25",
        "experiment.noldm_head.optim.seed=3",  # each head's own training seed
        "baselines=[bc,bc_all,noldm,expert,random]",
        "label_sweep=[0.1]",
    ]
    cfg = load_config("run", overrides)
    jobs = training_jobs(cfg, cfg.validate())
    assert list(jobs) == [
        "tokenizer",
        "ldm",
        "transformer",
        "videoworld-25pct_seed0",
        "bc-25pct_seed0",
        "bc-100pct_seed0",
        "transformer_nocodes",
        "noldm-25pct_seed3",
        "videoworld-10pct_seed0",
    ]
    policies = policy_specs(cfg, jobs)
    assert list(policies)[-2:] == ["expert", "random"] and policies["expert"] == "expert"
    assert policies["bc-100pct_seed0"] == str(Path(cfg.out) / "bc-100pct_seed0")
    counted = load_config("run", ["experiment.action_head.labelled_episodes=6"])
    assert list(training_jobs(counted, counted.validate()))[3:] == [
        "videoworld-6ep_seed0",
        "bc-6ep_seed0",
    ]
    train = load_config("train", ["stage=action_head", "out=runs/x"])
    assert output_folder(train) == "runs/x/videoworld-100pct_seed0"
    named = load_config("train", ["stage=bc", "out=runs/x", "run_name=mine"])
    assert output_folder(named) == "runs/x/mine"


def test_what_each_head_stage_reads_is_declared_once():
    from vw_robot.heads import HEADS, stage_reads
    from vw_robot.training.config import HEAD_STAGES

    assert {stage_reads(s) for s in HEAD_STAGES} == {"codes", "next_frame", ""}
    assert stage_reads("action_head") == HEADS["videoworld"].reads == "codes"
    assert stage_reads("noldm_head") == "next_frame" and stage_reads("bc") == ""
    with pytest.raises(ValueError, match="'ldm' is not a head stage"):
        stage_reads("ldm")
