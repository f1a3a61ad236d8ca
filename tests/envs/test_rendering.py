"""Frustum culling: the same pixels as drawing every geom, on each suite's cameras."""

from __future__ import annotations

import subprocess
import sys

import mujoco
import numpy as np
import pytest

from vw_robot.envs import list_tasks, make_env
from vw_robot.envs.playground_scene import BLOCK_COLORS, PlaygroundSim
from vw_robot.envs.playground_tasks import sample_scene
from vw_robot.envs.rendering import FastRenderer, geom_pixels, outside_frustum, split_views


def _camera(pos, forward, up, near=1.0, top=0.5, bottom=-0.5) -> mujoco.MjvGLCamera:
    camera = mujoco.MjvGLCamera()
    camera.pos[:], camera.forward[:], camera.up[:] = pos, forward, up
    camera.frustum_near, camera.frustum_far = near, 50.0
    camera.frustum_top, camera.frustum_bottom = top, bottom
    camera.frustum_center, camera.frustum_width = 0.0, 0.0
    return camera


def test_outside_frustum_on_a_hand_computed_camera():
    # From the origin along +y, z up (x to the right). Near plane 1 m away, 1 m tall; with an
    # aspect of 2 it is 2 m wide: the side planes are at 45 degrees, the top and bottom ones at
    # slope 0.5.
    camera = _camera((0, 0, 0), (0, 1, 0), (0, 0, 1))
    centers = np.array(
        [
            (0.0, 5.0, 0.0),  # on the axis
            (6.0, 5.0, 0.0),  # 1 m right of the right plane (0.71 m from it)
            (5.1, 5.0, 0.0),  # 0.07 m beyond it, radius 0.2: touches the view
            (-6.0, 5.0, 0.0),  # beyond the left plane
            (0.0, 5.0, 2.4),  # just under the top plane (z = 2.5 at y = 5)
            (0.0, 5.0, 3.0),  # 0.45 m above it
            (0.0, 5.0, -3.0),  # below the bottom plane
            (0.0, -1.0, 0.0),  # behind the eye
            (0.0, 0.8, 0.0),  # before the near plane, radius 0.5: reaches past it
        ]
    )
    radii = np.array([0.1, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.5, 0.5])
    got = outside_frustum(centers, radii, camera, aspect=2.0)
    assert got.tolist() == [False, True, False, True, False, True, True, True, False]
    # A square viewport narrows the sides to slope 0.5: x = 3 at y = 5 is then outside.
    narrow = outside_frustum(np.array([(3.0, 5.0, 0.0)]), np.array([0.1]), camera, aspect=1.0)
    assert narrow.tolist() == [True]


CASES = [
    ("metaworld/push-v3", "front+top"),  # the default policy camera: bands of two free cameras
    ("metaworld/pick-place-v3", "corner2"),  # a flipped camera of the model
    ("metaworld/reach-v3", "gripperPOV"),  # a camera that moves with the hand
    (list_tasks("playground/all")[0], "front+gripper"),
    (list_tasks("playground/all")[0], "table+wrist"),
    ("robosuite/lift", "robot0_eye_in_hand"),
]


@pytest.mark.parametrize(("task_id", "camera"), CASES)
def test_culled_frames_are_the_frames_of_every_geom(task_id, camera):
    env = make_env(task_id, image_size=32, camera=camera)
    env.reset(seed=3)
    inner = env.unwrapped
    model, data = inner.mj_model, inner.mj_data
    views = split_views(camera)
    pairs = []
    for name in views:
        view, flip = inner.view(name)
        band = len(views)
        pairs.append(
            tuple(
                FastRenderer(model, 32, view, flip=flip, band=band, cull=cull)
                for cull in (True, False)
            )
        )
    rng = np.random.default_rng(0)
    culled_any = False
    try:
        for _ in range(12):
            env.step(rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32))
            for culled, full in pairs:
                culled_any |= bool(culled._outside(data).size)
                np.testing.assert_array_equal(culled.render(data), full.render(data))
            # The env's own frame is the culled views stacked.
            stacked = np.concatenate([culled.render(data) for culled, _ in pairs], axis=0)
            np.testing.assert_array_equal(inner._render_pixels(), stacked)
    finally:
        for pair in pairs:
            for renderer in pair:
                renderer.close()
        env.close()
    if camera in ("front+top", "gripperPOV", "front+gripper", "table+wrist", "robot0_eye_in_hand"):
        assert culled_any, f"{task_id} {camera}: no geom was ever outside the view"


@pytest.mark.parametrize("camera", ["front", "table", "wrist"])
def test_geom_pixels_are_the_segmentation_renderers_pixels(camera):
    """Hiding a block and comparing frames finds exactly the pixels MuJoCo's segmentation
    rendering gives the block's geom (culled or not), and leaves the model's colours as they
    were."""
    sim = PlaygroundSim()
    model, data = sim.model, sim.data
    sim.set_state(sample_scene(np.random.default_rng(1)))
    groups = {c: [model.geom(f"{c}_block").id] for c in BLOCK_COLORS}
    rgba = model.geom_rgba.copy()
    segmentation = mujoco.Renderer(model, 64, 64)
    segmentation.enable_segmentation_rendering()
    segmentation.update_scene(data, camera=camera)
    ids = segmentation.render()  # (64, 64, 2): object id, object type
    segmentation.close()
    for cull in (True, False):
        renderer = FastRenderer(model, 64, camera, cull=cull)
        try:
            masks = geom_pixels(lambda r=renderer: r.render(data), model, groups)
        finally:
            renderer.close()
        np.testing.assert_array_equal(model.geom_rgba, rgba)
        shown = 0
        for color, (geom,) in groups.items():
            want = (ids[..., 0] == geom) & (ids[..., 1] == mujoco.mjtObj.mjOBJ_GEOM)
            np.testing.assert_array_equal(masks[color], want)
            shown += int(want.sum())
        assert shown > 0


def test_geom_pixels_name_a_bad_geom_id():
    model = PlaygroundSim().model
    with pytest.raises(ValueError, match=r"'red'.*\[9999\]"):
        geom_pixels(lambda: np.zeros((4, 4, 3), np.uint8), model, {"red": [9999]})


_SCRIPT_WITHOUT_CLOSE = """
import gc, sys
import vw_robot.envs as envs
kept = []
for task in sys.argv[1:]:
    env = envs.make_env(task, image_size=32)
    env.reset(seed=0)
    kept.append(env)  # never closed: released at exit
dropped = envs.make_env(sys.argv[1], image_size=32)
dropped.reset(seed=1)
del dropped  # never closed: released by garbage collection
gc.collect()
print("done")
"""


def test_a_script_that_never_closes_its_envs_exits_quietly(tmp_path):
    """GL contexts are released at garbage collection and before interpreter teardown, so no
    'Exception ignored ... EGLError' traceback reaches stderr."""
    script = tmp_path / "no_close.py"
    script.write_text(_SCRIPT_WITHOUT_CLOSE)
    tasks = ["metaworld/reach-v3", "robosuite/lift", "playground/open-drawer"]
    done = subprocess.run(
        [sys.executable, str(script), *tasks],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
