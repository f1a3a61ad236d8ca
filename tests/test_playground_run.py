"""The main job on the playground at a tiny scale: every subtask's demonstrations
plus action-free play video for the generator only, subtask-conditioned heads, the subtasks
evaluated one at a time (grouped as VideoWorld reports CALVIN) and chains of five; the chain
loop of a learned policy (a reset with each subtask's id, the scene carried on) and its
results with 1 and 2 workers."""

from __future__ import annotations

import json

import pytest

from vw_robot import checkpoint as ckpt
from vw_robot.cli import load_config, main
from vw_robot.envs import list_tasks
from vw_robot.envs.playground_suite import task_id
from vw_robot.errors import ConfigError
from vw_robot.eval.chains import evaluate_chains
from vw_robot.eval.metrics import videoworld_groups
from vw_robot.policies import make_policy

SIZE = 32
EVAL_TASKS = ["playground/push-red-block-left", "playground/open-drawer", "playground/turn-on-led"]
STAGES = ["tokenizer", "ldm", "transformer", "action_head", "bc"]
# The heads' run folders (vw_robot.heads.run_name): the preset trains on every label.
VIDEOWORLD, BC = "videoworld-100pct_seed0", "bc-100pct_seed0"
TINY = [
    "experiment=playground_cpu",
    f"image_size={SIZE}",
    f"experiment.tokenizer.model.image_size={SIZE}",
    f"experiment.ldm.model.image_size={SIZE}",
    "experiment.ldm.model.horizon=2",
    "experiment.transformer.model.max_timesteps=2",
    *[
        f"experiment.{s}.optim.{k}={v}"
        for s in STAGES
        for k, v in (("steps", 3), ("batch_size", 4), ("warmup_steps", 1))
    ],
]


@pytest.fixture(scope="module")
def playground_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("playground")
    code = main(
        [
            "run",
            "suite=playground/all",
            "episodes_per_task=1",
            "video_tasks=[playground/play]",
            "video_episodes_per_task=1",
            f"eval_tasks=[{','.join(EVAL_TASKS)}]",
            "eval_episodes=1",
            "eval_max_steps=4",
            "chains=2",
            "chain_steps_per_subtask=3",
            "videos_per_task=0",
            "workers=1",
            "baselines=[bc,random]",
            f"out={out}",
            *TINY,
        ]
    )
    assert code == 0
    return out


def test_the_playground_preset_validates():
    cfg = load_config(
        "run",
        [
            "experiment=playground_cpu",
            "suite=playground/all",
            "video_tasks=[playground/play]",
            "eval_suite=playground/videoworld12",
            "chains=200",
        ],
    )
    assert cfg.validate() == list_tasks("playground/all")
    assert cfg.eval_task_ids(cfg.validate()) == list_tasks("playground/videoworld12")
    for head in ("action_head", "bc", "noldm_head"):
        section = getattr(cfg.experiment, head)
        assert section.task_conditioning and section.use_state and section.augment_shift == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["video_tasks=[playground/open-drawer]"], "video_tasks: playground/open-drawer also in"),
        (["video_tasks=[playground/nope]"], "video_tasks: .*nope"),
        (["video_tasks=[playground/play]", "video_episodes_per_task=0"], "video_episodes_per"),
        (["eval_tasks=[playground/stack-block]"], "eval_tasks: playground/stack-block not among"),
        (["eval_suite=metaworld/mt10"], "eval_suite: metaworld/reach-v3, .* not among"),
        (["chains=5"], "chains: .*playground/stack-block"),
        (["chains=-1"], "chains: -1 < 0"),
    ],
)
def test_bad_playground_settings_are_refused_naming_the_key(overrides, message):
    cfg = load_config("run", ["tasks=[playground/open-drawer,playground/close-drawer]", *overrides])
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_chains_need_a_positive_step_budget():
    cfg = load_config("run", ["suite=playground/all", "chains=2", "chain_steps_per_subtask=0"])
    with pytest.raises(ConfigError, match="chain_steps_per_subtask"):
        cfg.validate()


def test_the_generator_sees_the_play_video_and_the_heads_do_not(playground_run):
    subtasks = sorted(list_tasks("playground/all"))
    transformer = ckpt.read_info(playground_run / "transformer").model_config
    assert transformer["task_ids"] == sorted([*subtasks, "playground/play"])
    for head in (VIDEOWORLD, BC):
        model = ckpt.read_info(playground_run / head).model_config
        assert model["num_tasks"] > 0 and model["state_dim"] == 4  # the preset's recipe
        labelled = model["env"]["labelled_episodes"]
        assert len(labelled) == 21 and not [e for e in labelled if "__play__" in e]
    assert ckpt.read_info(playground_run / BC).model_config["task_ids"] == subtasks


def test_the_report_has_subtasks_groups_and_chains(playground_run):
    report = (playground_run / "report.md").read_text()
    assert f"| group | {VIDEOWORLD} | {BC} | random |" in report
    assert "| push | 0/1" in report or "| push | 1/1" in report
    assert "## Chains of 5" in report and "average length" in report
    assert "Action-free video for the generator stages only: 1 episodes per task" in report
    for name in (VIDEOWORLD, BC, "random"):
        results = json.loads((playground_run / "eval" / name / "results.json").read_text())
        assert list(results["summary"]["tasks"]) == EVAL_TASKS
        chains = json.loads((playground_run / "eval" / name / "chains.json").read_text())
        assert chains["summary"]["chains"] == 2 and len(chains["chains"]) == 2
        assert chains["config"]["steps_per_subtask"] == 3
        groups = videoworld_groups(results["summary"]["tasks"])
        assert {g: r["episodes"] for g, r in groups.items()} == {
            "push": 1,
            "open/close": 1,
            "turn on/off": 1,
        }


class _ResetLog:
    """A policy that notes each reset's task id (the chain loop's subtask switches)."""

    def __init__(self, policy, log):
        self._policy, self._log = policy, log

    def reset(self, **kwargs):
        self._log.append(kwargs["task_id"])
        self._policy.reset(**kwargs)

    def __getattr__(self, name):
        return getattr(self._policy, name)


def test_a_learned_policy_runs_the_chain_loop_with_a_reset_per_subtask(playground_run):
    """CALVIN resets the model at each subtask while the scene carries on: the policy gets one
    reset per subtask it reaches, with that subtask's id, in the chain's order."""
    log = []
    policy = str(playground_run / VIDEOWORLD)
    chains = evaluate_chains(
        policy=policy,
        num_chains=3,
        steps_per_subtask=60,
        image_size=SIZE,
        base_seed=7,
        policy_factory=lambda spec: _ResetLog(make_policy(spec), log),
    )
    resets = []
    for chain in chains:
        assert chain.error is None
        resets += [task_id(name) for name in chain.chain[: chain.completed + 1]]
    assert len(resets) >= 3
    assert log[-len(resets) :] == resets  # before them: the pre-flight check's reset


def test_a_learned_policy_s_chains_do_not_depend_on_the_workers(playground_run):
    kwargs = {
        "policy": str(playground_run / BC),
        "num_chains": 3,
        "chain_length": 2,
        "steps_per_subtask": 5,
        "image_size": SIZE,
        "base_seed": 11,
    }
    one = evaluate_chains(workers=1, **kwargs)
    two = evaluate_chains(workers=2, **kwargs)
    assert [c.to_json() for c in one] == [c.to_json() for c in two]
