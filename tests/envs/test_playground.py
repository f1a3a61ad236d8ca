"""The CALVIN-like playground: contract, detectors, experts, chains, chain evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tests.envs.contract import assert_contract, assert_reset_determinism, run_expert
from vw_robot.envs import list_suites, list_tasks, make_env, make_expert
from vw_robot.envs import playground_tasks as pt
from vw_robot.envs.playground_experts import PUSHER
from vw_robot.envs.playground_scene import BLOCK_COLORS, BLOCK_HALF, FLOOR_Z, PlaygroundSim
from vw_robot.envs.playground_suite import PlaygroundChainEnv, make_chain_env, task_id
from vw_robot.envs.rendering import geom_pixels

SUBTASK_TASKS = list_tasks("playground/all")
ALL_TASKS = [*SUBTASK_TASKS, *list_tasks("playground/long")]  # ~0.1 s each: all by default


class _Idle:
    """A policy that never moves (chains must fail at their first subtask)."""

    name = "idle"

    def reset(self, *, task_id, action_space, seed=None):
        self.resets = getattr(self, "resets", 0) + 1

    def select_action(self, obs, info):
        return np.zeros(4, np.float32)


# --------------------------------------------------------------------------- registry
def test_suites_hold_the_subtasks():
    suites = list_suites()
    assert len(suites["playground/all"]) == len(pt.SUBTASKS) >= 20
    assert len(suites["playground/videoworld12"]) == 12
    assert set(suites["playground/videoworld12"]) <= set(suites["playground/all"])
    assert suites["playground/long"] == ["playground/chain", "playground/play"]
    assert task_id("push_red_block_left") == "playground/push-red-block-left"


def test_unknown_subtask_lists_known_names():
    with pytest.raises(ValueError, match="open_drawer.*close_drawer"):
        pt.get_subtask("open_drawr")
    with pytest.raises(ValueError, match="playground/open-drawer"):
        make_env("playground/open-drawr")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chain_length": 0}, "chain_length=0"),
        ({"chain_length": 2.5}, "chain_length=2.5"),
        ({"chain_length": 99}, "chain_length=99"),
        ({"steps_per_subtask": -1}, "steps_per_subtask=-1"),
        ({"steps_per_subtask": True}, "steps_per_subtask=True"),
        ({"subtasks": ["open_drawer", "fly_away"]}, "fly_away.*known: open_drawer"),
    ],
)
def test_bad_chain_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_chain_env(**kwargs)


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize("task", ALL_TASKS)
def test_contract_and_determinism(task):
    env = make_env(task, image_size=32)
    try:
        assert_contract(env, 32)
        assert_reset_determinism(env)
        assert env.unwrapped.sim.is_stable()
    finally:
        env.close()


@pytest.mark.parametrize("task", ["playground/stack-block", "playground/chain"])
def test_check_env(task):
    env = make_env(task, image_size=32, render_mode="rgb_array")
    try:
        check_env(env.unwrapped)
    finally:
        env.close()


def test_random_actions_keep_the_physics_stable():
    env = make_env("playground/chain", image_size=16, seed=3)
    try:
        env.reset()
        for _ in range(150):
            env.step(env.action_space.sample())
        assert env.unwrapped.sim.is_stable()
        state = env.unwrapped.sim.state()
        assert all(abs(p[0]) < 1.0 and abs(p[1]) < 1.0 for p in state.blocks.values())
    finally:
        env.close()


@pytest.mark.parametrize("field", ["light", "led"])
def test_light_and_led_show_in_the_image(field):
    state = pt.sample_scene(np.random.default_rng(0))
    env = make_env("playground/open-drawer", image_size=64)
    try:
        inner = env.unwrapped
        inner.reset(seed=0)
        frames = []
        for on in (False, True):
            # The LED follows the switch: move both.
            switch = {"switch": 0.07 if on else 0.01} if field == "led" else {}
            inner.sim.set_state(state.copy(**{field: on}, **switch))
            frames.append(inner._render_pixels())
        assert not np.array_equal(frames[0], frames[1])
    finally:
        env.close()


def test_each_button_press_toggles_the_light_once():
    from vw_robot.envs.playground_experts import press_button

    sim = PlaygroundSim()
    sim.set_state(pt.sample_scene(np.random.default_rng(7)).copy(light=False))
    lights = []
    for _ in range(2):
        plan = press_button(sim.state())
        try:
            action = next(plan)
            while True:
                sim.step(action)
                lights.append(sim.light)
                action = plan.send(sim.state())
        except StopIteration:
            pass
    changes = sum(a != b for a, b in zip(lights, lights[1:], strict=False))
    assert changes == 2 and lights[-1] is False  # on with the first press, off with the second


# --------------------------------------------------------------------------- detectors
@pytest.fixture(scope="module")
def sim():
    return PlaygroundSim()


def _real(sim: PlaygroundSim, state):
    """Put ``state`` into the simulator and read it back (contacts settled)."""
    sim.set_state(state)
    return sim.state()


@pytest.mark.parametrize("index", range(len(pt.SUBTASK_NAMES)))
def test_detector_fires_for_its_own_change_only(sim, index):
    name = pt.SUBTASK_NAMES[index]
    rng = np.random.default_rng(index)
    for _ in range(3):
        start = _real(sim, pt.sample_start(name, rng))
        assert pt.SUBTASKS[name].precondition(start, 0.0), "the reset state is not valid"
        assert not any(t.detector(start, start) for t in pt.SUBTASKS.values())
        # The subtask's change, made in the simulator from its predicted effect.
        after = _real(sim, pt.SUBTASKS[name].effect(start))
        fired = [other for other, t in pt.SUBTASKS.items() if t.detector(start, after)]
        assert fired == [name]


def test_a_block_off_the_table_comes_to_rest_on_the_floor(sim):
    # A learned policy pushed a block over the edge: it used to fall for ever (the floor did
    # not collide) until the speed check called the simulation diverged and ended the episode.
    state = sim.state()
    state.blocks["pink"] = np.array([0.8, 0.0, 0.1])  # beyond the table's edge (x 0.62)
    sim.set_state(state)
    for _ in range(60):  # 3 s at 20 Hz
        sim.step(np.zeros(4))
    assert sim.is_stable()
    assert sim.state().blocks["pink"][2] == pytest.approx(FLOOR_Z + BLOCK_HALF, abs=0.005)


def test_push_must_move_far_enough_and_stay_on_the_table(sim):
    start = _real(sim, pt.sample_start("push_red_block_left", np.random.default_rng(1)))
    detect = pt.SUBTASKS["push_red_block_left"].detector
    near = start.copy()
    near.blocks["red"][0] -= 0.5 * pt.PUSH_DISTANCE
    assert not detect(start, _real(sim, near))
    lifted = start.copy()
    lifted.blocks["red"][0] -= 2 * pt.PUSH_DISTANCE
    lifted.blocks["red"][2] += 0.1  # carried over, not pushed: not on the table
    assert not detect(start, lifted)
    assert not pt.SUBTASKS["push_red_block_right"].detector(start, _real(sim, near))


def test_place_counts_only_after_release(sim):
    start = _real(sim, pt.sample_start("place_in_slider", np.random.default_rng(2)))
    placed = pt.SUBTASKS["place_in_slider"].effect(start)
    color = next(c for c in BLOCK_COLORS if pt.block_location(placed, c) == "slider")
    holding = placed.copy(grip=placed.blocks[color].copy(), gap=2 * 0.0225 + 0.002)
    assert pt.block_location(holding, color) == "held"
    assert not pt.SUBTASKS["place_in_slider"].detector(start, holding)
    assert pt.SUBTASKS["place_in_slider"].detector(start, _real(sim, placed))


def test_lift_needs_the_block_in_the_gripper(sim):
    start = _real(sim, pt.sample_start("lift_blue_block", np.random.default_rng(3)))
    held = _real(sim, pt.SUBTASKS["lift_blue_block"].effect(start))
    assert pt.block_location(held, "blue") == "held"  # set_state closed the fingers on it
    assert pt.SUBTASKS["lift_blue_block"].detector(start, held)
    thrown = start.copy()
    thrown.blocks["blue"][2] += 0.1  # raised but far from the grip
    assert not pt.SUBTASKS["lift_blue_block"].detector(start, thrown)


# --------------------------------------------------------------------------- experts
@pytest.mark.parametrize("task", SUBTASK_TASKS)
def test_expert_solves_every_subtask(task):
    env = make_env(task, image_size=16)
    expert = make_expert(task)
    try:
        for seed in (11, 12):
            success, steps = run_expert(env, expert, seed)
            assert success, f"{task} seed {seed}: no success in {steps} steps"
    finally:
        env.close()


@pytest.mark.parametrize("seed", [0, 1])
def test_expert_completes_a_chain_from_valid_states(seed):
    env = make_env("playground/chain", image_size=16)
    expert = make_expert("playground/chain")
    try:
        obs, info = env.reset(seed=seed)
        expert.reset()
        starts = {}
        while True:
            starts.setdefault(info["subtask_index"], info["subtask_valid"])
            obs, _, terminated, truncated, info = env.step(expert(obs, info))
            if info["is_success"] or terminated or truncated:
                break
        assert info["is_success"] and info["completed"] == 5
        assert starts == dict.fromkeys(range(5), True)
    finally:
        env.close()


# --------------------------------------------------------------------------- chains
def test_sampled_chains_are_valid_step_by_step():
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(150):
        scene = pt.sample_scene(rng)
        chain = pt.sample_chain(scene, rng, 5)
        if chain is None:
            continue
        assert len(set(chain)) == 5
        states = pt.predicted_states(scene, chain)
        for name, before in zip(chain, states, strict=False):
            assert pt.SUBTASKS[name].precondition(before, pt.CHAIN_MARGIN), (chain, name)
        kinds.update(chain)
    assert kinds == set(pt.SUBTASK_NAMES)  # every subtask shows up in some chain


def test_after_a_lift_only_a_place_can_follow():
    rng = np.random.default_rng(5)
    state = pt.sample_start("lift_red_block", rng)
    held = pt.SUBTASKS["lift_red_block"].effect(state)
    assert set(pt.valid_subtasks(held)) <= {"place_in_drawer", "place_in_slider", "stack_block"}
    assert "place_in_slider" in pt.valid_subtasks(held)


def test_chain_is_reproducible_from_the_seed():
    env = make_chain_env(image_size=32)
    try:
        first, info = env.reset(seed=21)
        chain = info["chain"]
        env.reset(seed=22)
        again, info_again = env.reset(seed=21)
        np.testing.assert_array_equal(first["pixels"], again["pixels"])
        assert info_again["chain"] == chain and len(chain) == 5
        others = {env.reset(seed=s)[1]["chain"] for s in range(30, 36)}
        assert len(others) > 1
    finally:
        env.close()


def test_chain_stops_at_its_first_failure():
    env = make_chain_env(chain_length=3, steps_per_subtask=7, image_size=16)
    try:
        env.reset(seed=4)
        steps, terminated, truncated = 0, False, False
        while not (terminated or truncated) and steps < 100:
            _, _, terminated, truncated, info = env.step(np.zeros(4, np.float32))
            steps += 1
        assert terminated and not truncated and steps == 7
        assert info["chain_failed"] and info["completed"] == 0 and not info["is_success"]
        assert env._max_episode_steps == 21
    finally:
        env.close()


def test_play_episodes_are_long_chains():
    env = make_env("playground/play", image_size=16)
    try:
        _, info = env.reset(seed=0)
        assert len(info["chain"]) == 8 and env._max_episode_steps == 8 * 360
        assert isinstance(env.unwrapped, PlaygroundChainEnv)
    finally:
        env.close()


# --------------------------------------------------------------------------- evaluation
def test_evaluate_chains_with_expert_and_idle_policies():
    from vw_robot.eval.chains import evaluate_chains, summarize_chains

    kwargs = {"num_chains": 2, "chain_length": 2, "steps_per_subtask": 200, "image_size": 16}
    kwargs["base_seed"] = 3
    experts = evaluate_chains(policy="expert", **kwargs)
    assert [r.index for r in experts] == [0, 1]
    assert all(r.completed == 2 and r.error is None for r in experts)
    idle = _Idle()
    kwargs["steps_per_subtask"] = 5
    stuck = evaluate_chains(policy="idle", policy_factory=lambda name: idle, **kwargs)
    assert [r.completed for r in stuck] == [0, 0] and idle.resets == 2
    assert [r.chain for r in stuck] == [r.chain for r in experts]  # same seeds, same chains
    summary = summarize_chains(experts, 2)
    assert summary["average_length"] == 2.0
    assert [row["rate"] for row in summary["success_after"]] == [1.0, 1.0]


def test_summarize_chains_counts_success_after_k():
    from vw_robot.eval.chains import ChainResult, summarize_chains
    from vw_robot.eval.tables import chains_markdown

    chains = [("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b"), ("a", "c", "b")]
    results = [
        ChainResult(i, i, chain, done, 10)
        for i, (chain, done) in enumerate(zip(chains, [3, 1, 0, 2], strict=True))
    ]
    summary = summarize_chains(results, 3)
    assert [row["chains"] for row in summary["success_after"]] == [3, 2, 1]
    assert summary["average_length"] == pytest.approx(1.5)
    assert summary["per_subtask"]["a"] == {"attempts": 2, "successes": 2}
    assert summary["per_subtask"]["b"] == {"attempts": 3, "successes": 2}
    assert summary["per_subtask"]["c"] == {"attempts": 4, "successes": 2}
    table = chains_markdown(summary)
    assert "| 4 | 0.750 | 0.500 | 0.250 | 1.50 |" in table


def test_cli_eval_chains_writes_reports(tmp_path, capsys):
    from vw_robot.cli import main

    out = tmp_path / "chains"
    args = ["eval-chains", "chains=2", "chain_length=2", "single_episodes=1", "image_size=16"]
    assert main([*args, "videos=0", f"out={out}"]) == 0
    assert (out / "chains.json").exists() and (out / "chains.md").exists()
    assert (out / "single" / "results.md").exists()
    assert main(["eval-chains", "chain_length=0", f"out={out}"]) == 2
    assert "chain_length" in capsys.readouterr().err


# --------------------------------------------------------------------------- demonstrations
def test_collector_records_playground_demonstrations(tmp_path):
    from vw_robot.eval.collect import collect

    summary = collect(
        tmp_path / "demo",
        ["playground/turn-on-led"],
        episodes_per_task=1,
        image_size=16,
        codec="lossless",
    )
    assert summary["episodes_in_dataset"] == 1
    assert summary["tasks"]["playground/turn-on-led"]["kept"] == 1


def test_gripper_camera_rides_with_the_hand():
    """The wrist view (CALVIN's second camera) moves with the grip point and sees the table
    change under it, while the scene's fixed cameras stay where they are."""
    env = make_env("playground/open-drawer", image_size=64, camera="front+gripper")
    try:
        inner = env.unwrapped
        inner.reset(seed=0)
        model, data = inner.mj_model, inner.mj_data
        gripper, front = model.camera("gripper").id, model.camera("front").id
        state = inner.sim.state()
        poses, frames = [], []
        for dx in (0.0, 0.05):
            inner.sim.set_state(state.copy(grip=state.grip + np.array([dx, 0.0, 0.0])))
            frames.append(inner._render_pixels())
            poses.append((data.cam_xpos[gripper].copy(), data.cam_xpos[front].copy()))
        np.testing.assert_allclose(poses[1][0] - poses[0][0], [0.05, 0.0, 0.0], atol=1e-6)
        np.testing.assert_allclose(poses[1][1], poses[0][1])
        assert not np.array_equal(frames[0][32:], frames[1][32:])  # the wrist view's band
    finally:
        env.close()


# --------------------------------------------------------------------------- cameras
def _hand_over_blue(offset, gap, seed=0):
    """A start scene (no stack) with the grip point at the blue block + ``offset``."""
    scene = pt.sample_scene(np.random.default_rng(seed), stack_probability=0.0)
    grip = scene.blocks["blue"] + np.asarray(offset, dtype=np.float64)
    return scene.copy(grip=grip, setpoint=grip.copy(), gap=gap)


def _block_pixels(env, colors=BLOCK_COLORS):
    """colour -> (S, S) bool: where each block shows in the env's frame (segmentation by
    hiding the block)."""
    inner = env.unwrapped
    model = inner.mj_model
    groups = {c: [model.geom(f"{c}_block").id] for c in colors}
    return geom_pixels(inner._render_pixels, model, groups)


_OPEN_GAP = 0.072
_PUSHER_GAP = 2 * (0.001 + 0.035 * (1 - PUSHER) / 2)
_PUSH_BEHIND = BLOCK_HALF + 0.032  # where the push expert starts, beside the block along x


@pytest.mark.parametrize(
    ("camera", "rows"), [("wrist", slice(0, 64)), ("front+wrist", slice(32, 64))]
)
def test_wrist_camera_looks_down_between_the_fingers(camera, rows):
    """The hand 10 cm above a block: the block fills the centre of the wrist view, alone and in
    the band that front+wrist keeps; moving the hand 4 cm along +x moves the block left along
    the image's rows (x is the long axis of a band), not up or down."""
    env = make_env("playground/lift-blue-block", image_size=64, camera=camera)
    try:
        inner = env.unwrapped
        inner.reset(seed=0)
        centroids = []
        for dx in (0.0, 0.04):
            inner.sim.set_state(_hand_over_blue((dx, 0.0, 0.10), _OPEN_GAP))
            view = _block_pixels(env, ["blue"])["blue"][rows]  # (H, 64), H = 64 or 32
            h = view.shape[0]
            if dx == 0.0:
                assert view.sum() > 150, view.sum()  # a 4.5 cm block ~15 x 15 px
                assert view[h // 2 - 4 : h // 2 + 4, 28:36].mean() > 0.9  # the central 8 x 8 px
            ys, xs = np.nonzero(view)
            centroids.append((xs.mean(), ys.mean()))
        (x0, y0), (x1, y1) = centroids
        assert x0 - x1 > 8 and abs(y1 - y0) < 1, centroids
    finally:
        env.close()


@pytest.mark.parametrize("direction", [-1, 1])
def test_wrist_band_keeps_the_block_at_the_start_of_a_push(direction):
    """At the push expert's start beside a block (fingers at the pusher gap, at block height),
    the wrist view's band in front+wrist shows the block either way. The older gripper camera's
    band in front+gripper shows it for a push to the left only: it looks ahead towards +x with x
    along the image's columns, so a band keeps little of x and nothing of a block the hand pushes
    to the right."""
    grip_offset = (-direction * _PUSH_BEHIND, 0.0, 0.003)
    band = {}
    for camera in ("front+wrist", "front+gripper"):
        env = make_env("playground/push-blue-block-right", image_size=64, camera=camera)
        try:
            env.unwrapped.reset(seed=0)
            env.unwrapped.sim.set_state(_hand_over_blue(grip_offset, _PUSHER_GAP))
            band[camera] = int(_block_pixels(env, ["blue"])["blue"][32:].sum())
        finally:
            env.close()
    assert band["front+wrist"] > 300, band
    if direction == 1:
        assert band["front+gripper"] < band["front+wrist"] / 4, band
    else:
        assert band["front+gripper"] > 300, band


def test_table_camera_shows_every_block_larger_than_front():
    """Over start scenes (stacks included), every block shows in `table` and covers more of a
    64 px frame there than in `front`: on average about twice as many pixels."""
    envs = {
        c: make_env("playground/open-drawer", image_size=64, camera=c) for c in ("front", "table")
    }
    try:
        for env in envs.values():
            env.unwrapped.reset(seed=0)
        totals = {"front": 0, "table": 0}
        for seed in range(6):
            scene = pt.sample_scene(np.random.default_rng(seed))
            px = {}
            for camera, env in envs.items():
                env.unwrapped.sim.set_state(scene)
                px[camera] = {c: int(m.sum()) for c, m in _block_pixels(env).items()}
                totals[camera] += sum(px[camera].values())
            for color in BLOCK_COLORS:
                assert px["table"][color] > max(px["front"][color], 4), (seed, color, px)
        assert totals["table"] > 1.6 * totals["front"], totals
    finally:
        for env in envs.values():
            env.close()
