"""`vw-robot study NAME`: a study config run end to end with tiny settings, resumably, writing
its results as data; the rows a study expands to; bad study configs named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.policies.test_videoworld import TINY
from vw_robot import checkpoint as ckpt
from vw_robot.cli import load_config, main
from vw_robot.config import ConfigError
from vw_robot.heads import HEADS
from vw_robot.study import (
    _generator_job,
    _head_job,
    _Where,
    generator_runs,
    head_experiment,
    study_runs,
    trained_as,
    transformer_of,
)

REPO = Path(__file__).resolve().parents[1]
TINY_STUDY = [
    "episodes_per_task=2",
    "eval_episodes=1",
    "eval_max_steps=8",
    "workers=1",
    *TINY,
]


def test_a_study_expands_to_heads_x_shares_x_seeds_with_one_naming_scheme():
    cfg = load_config(
        "study",
        ["study=tiny", "heads.0.seeds=[0,1]", "heads.0.label_fractions=[0.1,0.25]"],
    )
    names = [run.name for run in study_runs(cfg)]
    assert names[:4] == [
        "videoworld-10pct_seed0",
        "videoworld-10pct_seed1",
        "videoworld-25pct_seed0",
        "videoworld-25pct_seed1",
    ]
    assert names[4:] == ["noldm-50pct_seed0", "bc-50pct_seed0", "bc-100pct_seed0"] + [
        "expert",
        "random",
    ]
    assert generator_runs(cfg, study_runs(cfg)) == [
        "tokenizer",
        "ldm",
        "transformer",
        "transformer_nocodes",
    ]
    only_bc = load_config("study", ["study=tiny", "only=[bc,expert]"])
    assert [r.name for r in study_runs(only_bc)] == ["bc-50pct_seed0", "bc-100pct_seed0", "expert"]
    assert generator_runs(only_bc, study_runs(only_bc)) == []  # BC reads no generator
    ldm_trunk = load_config("study", ["study=mt10_one_view", "only=[bc_ldm]"])
    assert generator_runs(ldm_trunk, study_runs(ldm_trunk)) == ["ldm"]


def test_a_heads_experiment_carries_its_share_seed_and_switches():
    cfg = load_config(
        "study", ["study=tiny", "heads.2.seeds=[3]", "heads.2.switches=['augment_shift=2']"]
    )
    run = next(r for r in study_runs(cfg) if r.name == "bc-50pct_seed3")
    section = head_experiment(cfg, run).bc
    assert (section.label_fraction, section.optim.seed, section.augment_shift) == (0.5, 3, 2)
    assert section.task_conditioning  # the study's recipe stays
    every = next(r for r in study_runs(cfg) if r.name == "bc-100pct_seed3")
    assert head_experiment(cfg, every).bc.label_fraction is None  # every label
    assert cfg.experiment.bc.augment_shift == 4  # the study's own config is left as it was


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["heads=[{policy: gpt}]"], r"heads: 'gpt': use one of"),
        (["heads.0.label_fractions=[0]"], r"heads: videoworld: label share 0.0 not in \(0, 1\]"),
        (["heads.0.switches=[trunk]"], r"heads: videoworld: switch 'trunk' is not KEY=VALUE"),
        (["only=[nope]"], r"only: nope not among the heads"),
        (["heads.1.policy=videoworld"], r"heads: 'videoworld' named twice"),
    ],
)
def test_bad_study_configs_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("study", ["study=tiny", *overrides]).validate()


def test_an_unknown_switch_is_named_with_its_run():
    cfg = load_config("study", ["study=tiny", "heads.2.switches=['nonsense=1']"])
    run = next(r for r in study_runs(cfg) if r.head.policy == "bc")
    with pytest.raises(ConfigError, match=r"heads: bc-50pct_seed0: switches \['nonsense=1'\]"):
        head_experiment(cfg, run)


def test_the_tiny_study_runs_end_to_end_resumes_and_writes_its_results(tmp_path, capsys):
    out, results = tmp_path / "study", tmp_path / "docs" / "tiny.json"
    args = ["study", "tiny", f"out={out}", f"results={results}", *TINY_STUDY]
    assert main(args) == 0
    entries = json.loads(results.read_text())
    assert json.loads((out / "results.json").read_text()) == entries
    names = [e["variant"] for e in entries]
    assert names == ["videoworld-50pct_seed0", "noldm-50pct_seed0", "bc-50pct_seed0"] + [
        "bc-100pct_seed0",
        "expert",
        "random",
    ]
    by_name = {e["variant"]: e for e in entries}
    for name in names[:4]:
        entry = by_name[name]
        head = HEADS[entry["policy"]]
        assert ckpt.read_info(out / name).stage == head.stage  # folder, stage and name agree
        assert entry["train_seed"] == 0 and entry["eval_seed_base"] == 1000
        assert sum(entry["labelled_per_task"].values()) == entry["labelled_episodes"]
        assert entry["command"].startswith(f"vw-robot study tiny out={out}")
        assert (out / "eval" / name / "episodes.jsonl").exists()  # the evaluation's record
    assert by_name["bc-50pct_seed0"]["label_fraction"] == 0.5
    assert by_name["bc-100pct_seed0"]["labelled_episodes"] == 4  # 2 tasks x 2 episodes
    assert by_name["videoworld-50pct_seed0"]["videos_per_task"] == {
        "metaworld/drawer-close-v3": 2,
        "metaworld/reach-v3": 2,
    }
    assert by_name["expert"]["label_fraction"] is None
    for entry in entries:
        assert sum(t["episodes"] for t in entry["tasks"].values()) == 2
    # A rerun trains and evaluates nothing again and gives the same results (the commit of
    # the report may differ when the working tree moved on in between).
    capsys.readouterr()
    assert main(args) == 0
    assert "2 episodes (2 recorded by an earlier run)" in capsys.readouterr().out

    def measured(rows):
        return [{k: v for k, v in e.items() if k != "commit"} for e in rows]

    assert measured(json.loads(results.read_text())) == measured(entries)


VARIANTS = (
    "heads=[{policy: bc},"
    " {policy: bc, name: bc_execute1, variant: 'bc (execute=1)', acting: ['execute=1']},"
    " {policy: bc, name: bc_corner2, camera: corner2},"
    " {policy: expert}]"
)


def test_rows_that_differ_in_acting_share_weights_and_a_view_of_its_own_gets_its_data():
    cfg = load_config("study", ["study=tiny", VARIANTS])
    runs = {r.name: r for r in study_runs(cfg)}
    assert trained_as(cfg, runs["bc_execute1-100pct_seed0"]) == "bc-100pct_seed0"
    assert trained_as(cfg, runs["bc_corner2-100pct_seed0"]) == "bc_corner2-100pct_seed0"
    with pytest.raises(ConfigError, match="camera/image_size of its own needs a head that"):
        load_config("study", ["study=tiny", "heads.0.camera=corner2"]).validate()


def test_acting_and_view_variants_run_end_to_end(tmp_path):
    out = tmp_path / "study"
    assert main(["study", "tiny", VARIANTS, f"out={out}", *TINY_STUDY]) == 0
    entries = {e["variant"]: e for e in json.loads((out / "results.json").read_text())}
    assert list(entries) == [
        "bc-100pct_seed0",
        "bc (execute=1)",  # the row named as the head says; its folders keep the scheme
        "bc_corner2-100pct_seed0",
        "expert",
    ]
    assert entries["bc (execute=1)"]["command"].endswith("# eval/bc_execute1-100pct_seed0")
    assert not (out / "bc_execute1-100pct_seed0").exists()  # evaluated bc's weights
    record = (out / "eval" / "bc_execute1-100pct_seed0" / "results.json").read_text()
    assert json.loads(record)["config"]["execute"] == 1
    assert entries["bc_corner2-100pct_seed0"]["camera"] == "corner2"
    assert entries["bc-100pct_seed0"]["camera"] == "front+top"
    assert (out / "data-corner2-32px" / "manifest.json").exists()


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in (REPO / "configs" / "study").glob("*.yaml"))
)
def test_every_shipped_study_loads_and_validates(name):
    cfg = load_config("study", [f"study={name}"])
    assert cfg.study == name and cfg.description
    assert cfg.validate() and study_runs(cfg)
    assert cfg.results is None or cfg.results.startswith("docs/results/")
    for run in study_runs(cfg):  # every head's switches and own transformer settings apply
        if run.label_fraction is not None:
            head_experiment(cfg, run)
    for folder in generator_runs(cfg, study_runs(cfg)):
        _generator_job(cfg, folder, _where(cfg))


def _where(cfg):
    return _Where(Path(cfg.folder), [], [], None)


def test_studies_that_share_a_folder_train_their_common_runs_alike():
    """Studies that name one folder (out=) share its data, generator and the heads two of them
    name alike (trained and evaluated once): those must be the same data and training."""
    trained: dict[tuple[str, str], tuple] = {}
    for path in sorted((REPO / "configs" / "study").glob("*.yaml")):
        cfg = load_config("study", [f"study={path.stem}"])
        if cfg.out is None:  # runs/<study>: its own
            continue
        data = (cfg.episodes_per_task, cfg.camera, cfg.image_size, cfg.seed)
        video = (tuple(cfg.video_tasks), cfg.video_episodes_per_task)
        for run in study_runs(cfg):
            if run.label_fraction is None:
                continue
            how = (
                data,
                video,
                head_experiment(cfg, run),
                transformer_of(cfg, run.head),
                (run.head.camera, run.head.image_size),
            )
            key = (cfg.folder, trained_as(cfg, run))
            assert trained.setdefault(key, how) == how, f"{path.stem}: {run.name}"
    assert len({folder for folder, _ in trained}) < len(trained)  # some are shared


MORE_TRANSFORMERS = (
    "heads=[{policy: videoworld},"
    " {policy: videoworld, name: hidden, transformer: ['hide_past_codes=true']},"
    " {policy: videoworld, name: hidden_ldm, transformer: ['hide_past_codes=true'],"
    " switches: ['trunk=ldm']},"
    " {policy: noldm, transformer: ['model.num_layers=1']},"
    " {policy: bc}]"
)


def test_a_head_with_transformer_settings_of_its_own_reads_its_own_transformer():
    cfg = load_config(
        "study", ["study=tiny", MORE_TRANSFORMERS, "experiment.transformer.hide_past_codes=false"]
    )
    cfg.validate()
    runs = {r.name: r for r in study_runs(cfg)}
    assert generator_runs(cfg, list(runs.values())) == [
        "tokenizer",
        "ldm",
        "transformer",
        "transformer-hidden",  # one for both heads with these settings
        "transformer_nocodes-noldm",
    ]
    hidden = runs["hidden-100pct_seed0"]
    assert generator_runs(cfg, [hidden]) == ["tokenizer", "ldm", "transformer-hidden"]
    assert transformer_of(cfg, runs["hidden_ldm-100pct_seed0"].head) == "transformer-hidden"
    where = _where(cfg)
    job = _generator_job(cfg, "transformer-hidden", where)
    assert (job.stage, job.run_name) == ("transformer", "transformer-hidden")
    assert job.experiment.transformer.hide_past_codes
    assert not _generator_job(cfg, "transformer", where).experiment.transformer.hide_past_codes
    assert not cfg.experiment.transformer.hide_past_codes  # the study's own config is kept
    nocodes = _generator_job(cfg, "transformer_nocodes-noldm", where)
    assert (nocodes.run_name, nocodes.experiment.transformer.use_codes) == (
        "transformer_nocodes-noldm",
        False,
    )
    assert nocodes.experiment.transformer.model.num_layers == 1
    head = _head_job(cfg, hidden, where, where.out / "data")
    assert head.transformer_checkpoint == str(where.out / "transformer-hidden")
    assert (
        _head_job(cfg, runs["videoworld-100pct_seed0"], where, where.out).transformer_checkpoint
        is None
    )
    noldm = _head_job(cfg, runs["noldm-100pct_seed0"], where, where.out)
    assert noldm.transformer_nocodes_checkpoint == str(where.out / "transformer_nocodes-noldm")
    # The same head on another transformer is another head.
    assert trained_as(cfg, hidden) == "hidden-100pct_seed0"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["heads.2.transformer=['hide_past_codes=true']"], r"heads: bc: transformer settings of"),
        (["heads.0.transformer=[hide_past_codes]"], r"switch 'hide_past_codes' is not KEY="),
        (["heads.2.variant=x"], r"heads: bc: a variant name is one row's"),
        (["heads.0.variant=bc-100pct_seed0"], r"results rows \['bc-100pct_seed0'\] named twice"),
        (["heads.3.variant=random"], r"results rows \['random'\] named twice"),
    ],
)
def test_bad_variants_and_transformer_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("study", ["study=tiny", *overrides]).validate()


def test_an_unknown_transformer_setting_is_named_with_its_head():
    cfg = load_config("study", ["study=tiny", "heads.0.transformer=['nonsense=1']"])
    with pytest.raises(ConfigError, match=r"heads: videoworld: transformer \['nonsense=1'\]"):
        _generator_job(cfg, "transformer-videoworld", _where(cfg))


def test_a_heads_own_view_is_checked_against_the_tasks():
    with pytest.raises(ConfigError, match=r"heads: bc: camera: 'nope' for metaworld/reach-v3"):
        load_config("study", ["study=tiny", "heads.2.camera=nope"]).validate()


KITCHEN_FOUR = "tasks=[kitchen/microwave,kitchen/kettle,kitchen/light-switch,kitchen/slide-cabinet]"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sequence_tasks=[kitchen/kettle]"], "kitchen/kettle is not a multi-subtask episode"),
        (["sequence_tasks=[kitchen/d4rl-5]"], "sequence_tasks: Unknown task id .kitchen/d4rl-5."),
        (
            ["tasks=[kitchen/microwave,kitchen/kettle]", "sequence_tasks=[kitchen/d4rl-4]"],
            r"\['kitchen/light-switch', 'kitchen/slide-cabinet'\] are not training tasks",
        ),
    ],
)
def test_bad_sequence_tasks_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("study", ["study=kitchen", "suite=null", KITCHEN_FOUR, *overrides]).validate()


def test_a_study_scores_its_policies_on_multi_subtask_episodes(tmp_path, monkeypatch):
    # Random actions only (nothing to train): the collection is skipped to keep this quick.
    monkeypatch.setattr("vw_robot.study.collect", lambda job: None)
    out = tmp_path / "study"
    args = [
        "study",
        "kitchen",
        "suite=null",
        KITCHEN_FOUR,
        "heads=[{policy: random}]",
        f"out={out}",
    ]
    steps = ["eval_episodes=1", "eval_max_steps=3", "sequence_max_steps=3"]
    assert main([*args, *steps, "results=null", "workers=1"]) == 0
    (entry,) = json.loads((out / "results.json").read_text())
    assert list(entry["tasks"]) == KITCHEN_FOUR[7:-1].split(",")  # the subtasks, one at a time
    assert entry["sequences"] == {
        "kitchen/d4rl-4": {
            "successes": 0,
            "episodes": 1,
            "mean_completed": 0.0,
            "completed_counts": [1, 0, 0, 0, 0],
        }
    }
    assert (out / "eval" / "random" / "sequences" / "episodes.jsonl").exists()


def test_a_study_collects_with_its_start_noise_and_play_segments(monkeypatch, tmp_path):
    """The demonstrations get the study's start and DART noise; the play video is cut into
    labelled subtask episodes (and collected as the expert acts, from its own start)."""
    import vw_robot.study as study_module
    from vw_robot.config import StudyConfig, StudyHeadConfig

    jobs = []

    class Collected(Exception):
        pass

    def collect(job):
        jobs.append(job)
        if len(jobs) == 2:
            raise Collected

    monkeypatch.setattr(study_module, "collect", collect)
    cfg = StudyConfig(
        study="chain_data",
        suite="playground/all",
        video_tasks=["playground/play"],
        start="random",
        action_noise=0.1,
        play_segments=True,
        heads=[StudyHeadConfig(policy="expert")],
        out=str(tmp_path / "study"),
    )
    with pytest.raises(Collected):
        study_module.run_study(cfg)
    demos, play = jobs
    assert (demos.start, demos.action_noise, demos.segments) == ("random", 0.1, False)
    assert (play.tasks, play.start, play.action_noise) == (["playground/play"], "home", 0.0)
    assert play.segments
    cfg.video_tasks = []
    with pytest.raises(ConfigError, match="play_segments: needs video_tasks"):
        cfg.validate()
