"""VideoWorldPolicy, BC and the no-LDM ablation built from checkpoints: state reset, KV cache,
env checks; and the main job end to end on a tiny config, with every baseline and a label
sweep."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from vw_robot import checkpoint as ckpt
from vw_robot.cli import main
from vw_robot.envs import make_env
from vw_robot.eval import evaluate
from vw_robot.eval.chains import evaluate_chains
from vw_robot.models.registry import load_model
from vw_robot.policies import make_policy
from vw_robot.policies.videoworld import PolicyMismatchError, load_policy

SIZE = 32
TASKS = ["metaworld/reach-v3", "metaworld/drawer-close-v3"]
STAGES = ["tokenizer", "ldm", "transformer", "action_head", "bc", "noldm_head"]
TINY = [
    f"image_size={SIZE}",
    f"experiment.tokenizer.model.image_size={SIZE}",
    f"experiment.ldm.model.image_size={SIZE}",
    "experiment.ldm.model.horizon=2",
    "experiment.transformer.model.max_timesteps=2",
    *[
        f"experiment.{s}.optim.{k}={v}"
        for s in STAGES
        for k, v in (("steps", 4), ("batch_size", 4), ("warmup_steps", 1))
    ],
]
# The demo's run folders (vw_robot.heads.run_name): VideoWorld and the baselines compared with
# it at half the labels; BC and the label sweep's VideoWorld head on every label.
VIDEOWORLD, BC, NOLDM = "videoworld-50pct_seed0", "bc-50pct_seed0", "noldm-50pct_seed0"
BC_ALL, SWEEP = "bc-100pct_seed0", "videoworld-100pct_seed0"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The main job, every stage a few steps, one evaluation episode per task and policy."""
    out = tmp_path_factory.mktemp("demo")
    code = main(
        [
            "run",
            f"tasks=[{','.join(TASKS)}]",
            "episodes_per_task=2",
            "eval_episodes=1",
            "eval_max_steps=12",
            "workers=1",
            "baselines=[bc,bc_all,noldm,expert,random]",
            "label_sweep=[1.0]",
            "experiment.action_head.label_fraction=0.5",
            f"out={out}",
            *TINY,
        ]
    )
    assert code == 0
    return out


def test_main_job_writes_the_report(demo):
    report = (demo / "report.md").read_text()
    for name in (VIDEOWORLD, SWEEP, BC, BC_ALL, NOLDM, "expert", "random"):
        assert name in report
        payload = json.loads((demo / "eval" / name / "results.json").read_text())
        assert set(payload["summary"]["tasks"]) == set(TASKS)
    assert (demo / "success.png").stat().st_size > 0 and (demo / "plans.png").exists()
    info = ckpt.read_info(demo / VIDEOWORLD, stage="action_head")
    assert set(info.parents) == {"transformer", "tokenizer", "ldm"}
    assert info.model_config["task_ids"] == sorted(TASKS)


def test_baselines_compare_at_the_stated_labels(demo):
    """bc and noldm see exactly VideoWorld's labelled episodes; bc_all and the 100% sweep head
    see all four."""

    def labelled(run):
        return ckpt.read_info(demo / run).model_config["env"]["labelled_episodes"]

    same = labelled(VIDEOWORLD)
    assert len(same) == 2  # half of each task's two demonstrations
    assert len({episode.split("__")[1] for episode in same}) == 2
    assert "| 2 (1 per task over 2 tasks) |" in (demo / "report.md").read_text()
    assert labelled(BC) == same and labelled(NOLDM) == same
    assert len(labelled(BC_ALL)) == 4 and len(labelled(SWEEP)) == 4
    noldm = ckpt.read_info(demo / NOLDM)
    assert set(noldm.parents) == {"transformer", "tokenizer"}
    assert str(noldm.parents["transformer"]).startswith(str(demo / "transformer_nocodes"))


def test_results_as_data_state_videos_and_labels_per_task(demo):
    """The main job's results.json reads from the checkpoints how many videos per task the
    generator stages saw and how many labelled episodes per task each head trained on."""
    target = demo / "results.json"
    entries = {e["variant"]: e for e in json.loads(target.read_text())}
    every = {task: 2 for task in TASKS}
    one = {task: 1 for task in TASKS}
    assert entries[VIDEOWORLD]["videos_per_task"] == every
    assert entries[VIDEOWORLD]["labelled_per_task"] == one
    assert entries[NOLDM]["videos_per_task"] == every
    assert entries[BC]["videos_per_task"] is None and entries[BC]["labelled_per_task"] == one
    assert entries[BC_ALL]["labelled_per_task"] == every
    assert entries[SWEEP]["labelled_per_task"] == every
    # The variant is the run folder; the policy is the head's name, as a study records it.
    assert {e["policy"] for e in entries.values()} == {
        "videoworld",
        "bc",
        "noldm",
        "expert",
        "random",
    }
    assert entries[BC_ALL]["policy"] == "bc" and entries[BC_ALL]["label_fraction"] == 1.0
    assert "labelled_per_task" not in entries["expert"]
    assert {e["eval_seed_base"] for e in entries.values()} == {1000}


def test_noldm_policy_predicts_a_frame_and_resets(demo):
    policy = load_policy(demo / NOLDM, execute=1)
    assert policy.name == "noldm"
    _actions(policy, TASKS[0], seed=5)
    frame = policy.plan_frames()
    assert frame.shape == (1, SIZE, SIZE, 3) and frame.dtype == np.uint8
    second = _actions(policy, TASKS[1], seed=6)
    fresh = _actions(load_policy(demo / NOLDM, execute=1), TASKS[1], seed=6)
    np.testing.assert_array_equal(second, fresh)
    plain = _actions(load_policy(demo / NOLDM, execute=1, use_cache=False), TASKS[1], 6)
    np.testing.assert_allclose(second, plain, atol=1e-5)


def test_noldm_head_without_its_transformer_names_the_command(demo, tmp_path):
    from vw_robot.training.config import TrainConfig
    from vw_robot.training.stages import run_stage

    cfg = TrainConfig(stage="noldm_head", dataset=str(demo / "data"), out=str(tmp_path))
    with pytest.raises(ckpt.CheckpointError, match="use_codes=false"):
        run_stage(cfg)


def _actions(policy, task_id, seed, steps=6):
    env = make_env(task_id, image_size=SIZE)
    try:
        obs, info = env.reset(seed=seed)
        policy.reset(task_id=task_id, action_space=env.action_space)
        out = []
        for _ in range(steps):
            action = policy.select_action(obs, info)
            out.append(action)
            obs, _, _, _, info = env.step(action)
        return np.stack(out)
    finally:
        env.close()


def test_reset_clears_all_state(demo):
    policy = load_policy(demo / VIDEOWORLD, execute=1)
    _actions(policy, TASKS[0], seed=5)
    second = _actions(policy, TASKS[1], seed=6)
    fresh = _actions(load_policy(demo / VIDEOWORLD, execute=1), TASKS[1], seed=6)
    np.testing.assert_array_equal(second, fresh)


def test_kv_cache_does_not_change_the_actions(demo):
    cached = _actions(load_policy(demo / VIDEOWORLD, execute=1), TASKS[0], seed=3)
    plain = _actions(load_policy(demo / VIDEOWORLD, execute=1, use_cache=False), TASKS[0], seed=3)
    np.testing.assert_allclose(cached, plain, atol=1e-5)


def test_plan_frames_decodes_the_plan(demo):
    policy = load_policy(demo / VIDEOWORLD)
    env = make_env(TASKS[0], image_size=SIZE)
    obs, info = env.reset(seed=0)
    env.close()
    policy.reset(task_id=TASKS[0])
    policy.select_action(obs, info)
    plan = policy.plan_frames()
    assert plan.shape == (3, SIZE, SIZE, 3) and plan.dtype == np.uint8
    np.testing.assert_array_equal(plan[0], obs["pixels"])


def test_mismatches_are_refused_naming_both_sides(demo):
    policy = make_policy(str(demo / BC))
    with pytest.raises(PolicyMismatchError, match="metaworld/push-v3"):
        policy.reset(task_id="metaworld/push-v3")
    env = make_env(TASKS[0], image_size=64)
    obs, info = env.reset(seed=0)
    env.close()
    policy.reset(task_id=TASKS[0], action_space=env.action_space)
    with pytest.raises(PolicyMismatchError, match="64x64.*32x32"):
        policy.select_action(obs, info)
    robo = make_env("robosuite/lift", image_size=SIZE)
    try:
        with pytest.raises(PolicyMismatchError, match="4-D actions.*\\(7,\\)"):
            load_policy(demo / BC).reset(task_id=TASKS[0], action_space=robo.action_space)
    finally:
        robo.close()


def test_eval_refuses_a_mismatched_checkpoint_before_any_episode(demo, tmp_path, capsys):
    """Not one errored episode per mismatch: the run stops at start, naming both sides."""
    common = [f"policy={demo / BC}", "episodes_per_task=1", "max_episode_steps=3"]
    wrong_task = ["tasks=[metaworld/push-v3]", f"image_size={SIZE}", f"out={tmp_path / 'a'}"]
    assert main(["eval", *common, *wrong_task]) == 2
    assert "not for 'metaworld/push-v3'" in capsys.readouterr().err
    wrong_size = [f"tasks=[{TASKS[0]}]", "image_size=48", f"out={tmp_path / 'b'}"]
    assert main(["eval", *common, *wrong_size]) == 2
    assert "is 48x48 but the policy was trained on 32x32" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(PolicyMismatchError, match="playground/"):
        evaluate_chains(policy=str(demo / BC), num_chains=1, image_size=SIZE)


def test_non_policy_checkpoint_is_refused(demo):
    with pytest.raises(ckpt.CheckpointError, match="'tokenizer' checkpoint"):
        load_policy(demo / "tokenizer")


def test_eval_a_checkpoint_from_the_command_line(demo, tmp_path, capsys):
    out = tmp_path / "e"
    assert (
        main(
            [
                "eval",
                f"policy={demo / BC}",
                f"tasks=[{TASKS[0]}]",
                "episodes_per_task=1",
                f"image_size={SIZE}",
                "max_episode_steps=5",
                "execute=2",
                f"out={out}",
            ]
        )
        == 0
    )
    assert (out / "results.json").exists() and (out / "success.png").exists()


def _copy_stages(demo, dst, runs=("tokenizer", "ldm", "transformer", VIDEOWORLD)):
    for run in runs:
        shutil.copytree(demo / run, dst / run, ignore=shutil.ignore_patterns("pictures"))


def test_a_moved_run_folder_still_loads_from_another_directory(demo, tmp_path, monkeypatch):
    expected = _actions(load_policy(demo / VIDEOWORLD, execute=1), TASKS[0], seed=2)
    _copy_stages(demo, tmp_path / "moved")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    moved = load_policy(tmp_path / "moved" / VIDEOWORLD, execute=1)
    np.testing.assert_array_equal(_actions(moved, TASKS[0], seed=2), expected)
    # Only the policy folder moved, without the checkpoints it names: a clear refusal.
    shutil.copytree(demo / BC, tmp_path / "lonely" / BC)  # bc needs no parent: loads
    load_policy(tmp_path / "lonely" / BC)
    shutil.copytree(demo / VIDEOWORLD, tmp_path / "lonely" / VIDEOWORLD)
    with pytest.raises(ckpt.CheckpointError, match="moved whole.*export-policy"):
        load_policy(tmp_path / "lonely" / VIDEOWORLD)


def test_export_policy_writes_one_folder_that_moves(demo, tmp_path, monkeypatch, capsys):
    expected = _actions(load_policy(demo / VIDEOWORLD, execute=1), TASKS[0], seed=4)
    out = tmp_path / "exported"
    assert main(["export-policy", str(demo / VIDEOWORLD), f"out={out}"]) == 0
    card = (out / "README.md").read_text()
    assert all(task in card for task in TASKS) and "4-D" in card and "label_fraction" in card
    assert sorted(p.name for p in (out / "parents").iterdir()) == [
        "ldm",
        "tokenizer",
        "transformer",
    ]
    assert not list(out.rglob("trainer.*"))  # no optimizer state: a policy is for acting
    # A second export into the same folder is refused, not merged.
    assert main(["export-policy", str(demo / VIDEOWORLD), f"out={out}"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    shutil.move(out, tmp_path / "deployed")
    monkeypatch.chdir(tmp_path / "deployed" / "parents")
    policy = make_policy(str(tmp_path / "deployed"), execute=1)
    np.testing.assert_array_equal(_actions(policy, TASKS[0], seed=4), expected)


def test_a_checkpoint_from_before_relative_parents_is_refused_clearly(demo, tmp_path, monkeypatch):
    """Old info.json files (no "format") named parents relative to the training cwd."""
    head = tmp_path / "old" / VIDEOWORLD
    shutil.copytree(ckpt.resolve_checkpoint(demo / VIDEOWORLD), head)
    info = json.loads((head / ckpt.INFO_FILE).read_text())
    del info["format"]
    info["parents"] = {k: f"runs/demo/{k}/checkpoints/step_00000004" for k in info["parents"]}
    (head / ckpt.INFO_FILE).write_text(json.dumps(info))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="older vw_robot.*relative to the directory"):
        load_policy(head)


def _transformer(demo, hide: bool):
    """The demo's transformer retrained with past codes shown or hidden (the main job's own
    hides them): transformer_shown / transformer_hidden in the demo folder."""
    name = "transformer_hidden" if hide else "transformer_shown"
    if not (demo / name / "checkpoints").exists():
        tiny = [o for o in TINY if not o.startswith("image_size=")]
        switches = [
            f"run_name={name}",
            f"experiment.transformer.hide_past_codes={str(hide).lower()}",
        ]
        args = [f"dataset={demo / 'data'}", f"out={demo}", *tiny]
        assert main(["train", "stage=transformer", *switches, *args]) == 0
    path = demo / name
    assert load_model(path, "transformer")[0].config.layout.hide_past_codes == hide
    return path


def _with_transformer(policy, path):
    model = load_model(path, "transformer")[0]
    policy.transformer, policy.layout = model, model.config.layout
    return policy


@pytest.mark.parametrize("hide", [False, True])
def test_execute_sets_how_often_the_head_plans(demo, hide):
    """The head plans once per `execute` steps; the transformer takes in every frame and
    samples codes at every step — only to plan when past codes are hidden (no later context
    reads them)."""
    policy = _with_transformer(load_policy(demo / VIDEOWORLD, execute=2), _transformer(demo, hide))
    calls = {"plan": 0, "codes": 0}
    predict, generate = policy.head.predict, policy.transformer.generate_codes

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    policy.head.predict = counted("plan", predict)
    policy.transformer.generate_codes = counted("codes", generate)
    actions = _actions(policy, TASKS[0], seed=1, steps=7)
    assert len(actions) == 7
    # Plans at steps 0, 2, 4, 6.
    assert calls == {"plan": 4, "codes": 4 if hide else 7}


@pytest.mark.parametrize("hide", [False, True])
def test_policy_context_is_the_training_layout(demo, hide):
    """What the policy feeds the transformer before sampling z_t is what the model reads of
    the training window [x_{t-1}][SEP][z_{t-1}][x_t][SEP] for the same frames and codes
    (z_{t-1} as HIDDEN when past codes are hidden)."""
    policy = _with_transformer(load_policy(demo / VIDEOWORLD, execute=1), _transformer(demo, hide))
    contexts, sampled = [], []
    generate = policy.transformer.generate_codes

    def spy(context, task, **kwargs):
        contexts.append(context.clone())
        codes = generate(context, task, **kwargs)
        sampled.append(codes[0].clone())
        return codes

    policy.transformer.generate_codes = spy
    env = make_env(TASKS[0], image_size=SIZE)
    frames = []
    try:
        obs, info = env.reset(seed=0)
        policy.reset(task_id=TASKS[0], action_space=env.action_space)
        for _ in range(4):
            frames.append(obs["pixels"])
            obs, _, _, _, info = env.step(policy.select_action(obs, info))
    finally:
        env.close()
    layout, window = policy.layout, policy.window  # window 2 in this tiny config
    pixels = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    tokens = policy.tokenizer.encode(pixels).flatten(1)  # (4, N)
    codes = torch.stack(sampled)  # (4, H)
    for t in range(1, 4):
        lo = max(0, t - window + 1)
        window_ids = layout.build(tokens[None, lo : t + 1], codes[None, lo : t + 1])[0]
        upto_sep = (t - lo) * layout.step_len + layout.num_frame_tokens + 1
        expected = layout.model_inputs(window_ids[:upto_sep])
        torch.testing.assert_close(contexts[t][0], expected, rtol=0, atol=0)
        shows_hidden = layout.hidden_id is not None and bool((expected == layout.hidden_id).any())
        assert shows_hidden == hide


def test_learned_policy_results_do_not_depend_on_workers(demo):
    kwargs = {
        "policy": str(demo / VIDEOWORLD),
        "episodes_per_task": 2,
        "env_kwargs": {"image_size": SIZE, "max_episode_steps": 8},
        "stop_on_success": False,
    }
    one = evaluate(TASKS, workers=1, **kwargs)
    two = evaluate(TASKS, workers=2, **kwargs)
    for task in TASKS:
        assert [e.to_json() for e in one[task]] == [e.to_json() for e in two[task]]


@pytest.mark.parametrize("freeze", [True, False])
def test_a_head_can_read_through_the_latent_dynamics_models_encoder(demo, freeze):
    """trunk=ldm: the head's trunk starts as the LDM's frame encoder (trained on all the
    video); frozen it stays so, fine-tuned it moves."""
    name = f"bc_ldm_trunk_{freeze}"
    tiny = [o for o in TINY if not o.startswith("image_size=")]  # a key of `run`, not `train`
    args = [f"dataset={demo / 'data'}", f"out={demo}", f"run_name={name}", *tiny]
    switches = ["experiment.bc.trunk=ldm", f"experiment.bc.freeze_trunk={str(freeze).lower()}"]
    assert main(["train", "stage=bc", *args, *switches]) == 0
    info = ckpt.read_info(demo / name)
    assert info.model_config["unit_inputs"] and set(info.parents) == {"ldm"}
    ldm = load_model(demo / "ldm", "ldm")[0]
    head = load_policy(demo / name).head
    same = [
        torch.equal(value, head.trunk.state_dict()[key])
        for key, value in ldm.encoder.state_dict().items()
    ]
    assert all(same) if freeze else not all(same)
    _actions(load_policy(demo / name), TASKS[0], seed=0)


@pytest.mark.parametrize("hide", [False, True])
def test_the_head_trains_on_the_codes_the_policy_samples(demo, hide):
    """The codes a head trains on as "sampled" are, timestep for timestep, the ones the policy
    samples acting on the same recorded frames — along its own earlier codes, never the LDM's
    codes of the real clip (which carry the future the policy cannot see); with
    hide_past_codes as well, with and without the KV cache."""
    from vw_robot.data import format as fmt
    from vw_robot.data.dataset import FrameCache
    from vw_robot.data.sequences import sequence_key
    from vw_robot.training.codes import sample_codes

    model, info = load_model(_transformer(demo, hide), "transformer")
    # A few training steps leave near-flat logits that ignore the context; spread the weights
    # so that what the context holds decides the codes (and cache them under another name).
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    info = dataclasses.replace(info, model_sha256=("f" if hide else "e") * 64)
    tok_info = ckpt.read_info(demo / "tokenizer")
    key = sequence_key(tok_info.model_sha256, ckpt.read_info(demo / "ldm").model_sha256)
    episode = sorted(fmt.list_episode_folders(demo / "data")[0])[0]
    meta = fmt.read_meta(demo / "data", episode)
    task_ids = ckpt.read_info(demo / VIDEOWORLD).model_config["task_ids"]
    offline = sample_codes(str(demo / "data"), key, [episode], model, info, task_ids)[episode]
    frames = FrameCache(demo / "data").frames(meta)
    state = fmt.load_steps(demo / "data", meta)["state"]
    for use_cache in (True, False):
        policy = load_policy(demo / VIDEOWORLD, execute=1, use_cache=use_cache)
        policy.transformer, policy.layout = model, model.config.layout
        sampled = []
        generate = model.generate_codes

        def spy(context, task, _generate=generate, _sampled=sampled, **kwargs):
            codes = _generate(context, task, **kwargs)
            _sampled.append(codes[0].tolist())
            return codes

        model.generate_codes = spy
        try:
            policy.reset(task_id=meta.task_id)
            for t in range(len(frames)):
                policy.select_action({"pixels": np.array(frames[t]), "state": state[t]})
        finally:
            del model.generate_codes  # the instance attribute: back to the method
        assert sampled == offline.tolist(), use_cache
    assert len({tuple(c) for c in offline.tolist()}) > 3  # not one code everywhere


def _hidden_transformer(demo):
    """The demo's transformer retrained with past codes hidden, its weights spread so that the
    context decides the codes (a few training steps leave near-flat logits)."""
    model = load_model(_transformer(demo, hide=True), "transformer")[0]
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("use_cache", [False, True])
def test_hidden_past_codes_are_sampled_only_to_plan(demo, monkeypatch, use_cache):
    """With past codes hidden (and absolute positions) no later context reads a sampled code,
    so the policy samples codes only at the steps its head plans: the same actions as
    sampling at every step, with a quarter of the transformer calls at execute=4."""
    from vw_robot.policies.videoworld import VideoWorldBatch

    model = _hidden_transformer(demo)
    assert model.config.layout.hide_past_codes and model.config.positions == "absolute"
    runs = {}
    for every_step in (True, False):
        monkeypatch.setattr(VideoWorldBatch, "sample_only_to_plan", not every_step)
        policy = load_policy(demo / VIDEOWORLD, execute=4, use_cache=use_cache)
        policy.transformer, policy.layout = model, model.config.layout
        codes = []
        generate = model.generate_codes

        def spy(*args, _generate=generate, _codes=codes, **kwargs):
            out = _generate(*args, **kwargs)
            _codes.append(out[0].tolist())
            return out

        model.generate_codes = spy
        try:
            actions = _actions(policy, TASKS[0], seed=2, steps=9)
        finally:
            del model.generate_codes
        runs[every_step] = actions, codes
    (eager, eager_codes), (lazy, lazy_codes) = runs[True], runs[False]
    assert len(eager_codes) == 9 and len(lazy_codes) == 3  # plans at steps 0, 4, 8
    assert lazy_codes == [eager_codes[t] for t in (0, 4, 8)]
    assert len({tuple(c) for c in eager_codes}) > 1  # the codes follow the frames
    np.testing.assert_array_equal(lazy, eager)


def test_the_main_job_records_and_evaluates_on_its_camera(tmp_path):
    """`vw-robot run` on Meta-World (camera=auto): the demonstrations, every checkpoint and the
    evaluation use the two stacked views front+top, and the head has the recipe (task and state
    inputs); a camera another suite lacks is refused before anything runs."""
    from vw_robot.data import format as fmt

    out = tmp_path / "run"
    code = main(
        [
            "run",
            "tasks=[metaworld/reach-v3]",
            "episodes_per_task=1",
            "eval_episodes=1",
            "eval_max_steps=3",
            "workers=1",
            "videos_per_task=0",
            "baselines=[expert]",
            f"out={out}",
            *TINY,
        ]
    )
    assert code == 0
    episode = sorted(fmt.list_episode_folders(out / "data")[0])[0]
    assert fmt.read_meta(out / "data", episode).env_spec["camera"] == "front+top"
    policy = load_policy(out / SWEEP)
    assert policy.camera == "front+top"
    model = ckpt.read_info(out / SWEEP).model_config
    assert model["state_dim"] > 0 and model["num_tasks"] == 1, model
    assert "camera front+top" in (out / "report.md").read_text()
    expert = json.loads((out / "eval" / "expert" / "results.json").read_text())
    assert expert["summary"]["tasks"]["metaworld/reach-v3"]["episodes"] == 1
    refused = tmp_path / "refused"
    assert main(["run", "suite=robosuite/all", "camera=front+top", f"out={refused}"]) == 2
    assert not refused.exists()
