"""How well one camera frame can tell where a Meta-World goal is: goals that land on the same
pixel but lie far apart in 3-D cannot be told apart by a single-view pixel policy.

Usage:
    python benchmarks/goal_ambiguity.py                       # reach, pick-place, push; 2 cameras
    python benchmarks/goal_ambiguity.py --tasks reach-v3 --cameras corner2 workspace gripperPOV
    python benchmarks/goal_ambiguity.py --cameras corner2 front top front+top    # stacked views

For each task and camera, goals are drawn uniformly from the task's goal box (as each reset
does) and projected through the camera (pinhole, its MuJoCo frustum) into the IMAGE_SIZE frame.
For each goal, the spread is the largest 3-D distance to any other goal that projects within
RADIUS pixels of it (stacked views, camera="a+b": within RADIUS * sqrt(views) pixels over all
the views' coordinates together, so every goal within RADIUS in each view counts). Where that
spread exceeds the task's success radius (5 cm for reach and push, 7 cm for pick-place), the
frame alone cannot place the goal precisely enough to succeed: only a second view, depth, or
cues this renderer switches off (shadows) could. The projection is checked first against the
rendered goal marker (hidden vs shown). Geometry only: no policy, no training; prints Markdown.
"""

from __future__ import annotations

import argparse

import mujoco
import numpy as np
from scipy.spatial import cKDTree

from vw_robot.envs import make_env
from vw_robot.envs.rendering import FreeCamera


def projector(env, size: int, view: str):
    """A function (N, 3) world points -> (N, 2) pixel coordinates (column, row) in the square
    image of ``env``'s camera ``view``, from the frustum MuJoCo builds for it."""
    sim = env.unwrapped
    renderer = mujoco.Renderer(sim.mj_model, size, size)
    camera, flip = sim.view(view)
    renderer.update_scene(
        sim.mj_data, camera=camera.mjv_camera() if isinstance(camera, FreeCamera) else camera
    )
    cam = renderer.scene.camera[0]
    # MuJoCo keeps a stereo pair (eyes apart by the model's ipd); a mono image sees from between.
    pos = (np.array(cam.pos) + np.array(renderer.scene.camera[1].pos)) / 2
    forward, up = np.array(cam.forward), np.array(cam.up)
    right = np.cross(forward, up)
    scale = cam.frustum_near / cam.frustum_top * size / 2
    renderer.close()

    def project(points: np.ndarray) -> np.ndarray:
        v = points - pos
        depth = v @ forward
        col = size / 2 + (v @ right) / depth * scale
        row = size / 2 - (v @ up) / depth * scale
        return np.stack([col, size - row if flip else row], -1)

    return project


def marker_centres(env, seed: int, views: int) -> tuple[np.ndarray, list, int]:
    """The goal (3,) after reset(seed); per view, the centre (col, row) of the pixels its
    marker covers in the first frame, in that view's square-image coordinates (None: no pixel
    shows it); and the fewest pixels it covers in a view."""
    obs, info = env.reset(seed=seed)
    sim = env.unwrapped
    goal = np.asarray(info["privileged"]["obs"][-3:])
    site = sim.mj_model.site("goal").id
    alpha = sim.mj_model.site_rgba[site, 3]
    sim.mj_model.site_rgba[site, 3] = 0.0
    hidden = sim._render_pixels()
    sim.mj_model.site_rgba[site, 3] = alpha
    changed = np.any(obs["pixels"] != hidden, axis=-1)
    size = len(changed)
    band = size // views
    centres, fewest = [], size * size
    for i in range(views):  # view i: rows [i * band, (i + 1) * band), its image's middle rows
        rows, cols = np.nonzero(changed[i * band : (i + 1) * band])
        fewest = min(fewest, len(rows))
        offset = (size - band) / 2
        centres.append(
            np.array([cols.mean() + 0.5, rows.mean() + 0.5 + offset]) if len(rows) else None
        )
    return goal, centres, fewest


SUCCESS_RADIUS = {"reach-v3": 0.05, "pick-place-v3": 0.07, "push-v3": 0.05}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["reach-v3", "pick-place-v3", "push-v3"])
    parser.add_argument("--cameras", nargs="+", default=["corner2", "workspace"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--radius", type=float, default=0.5, help="pixels")
    parser.add_argument("--goals", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    print(
        f"| task | camera | marker (px, 5 resets) | goals span (px) | goals in view "
        f"| projection vs rendered "
        f"marker (px) | 3-D spread "
        f"of goals within {args.radius} px: median | share above the success radius |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|")
    for task in args.tasks:
        radius = SUCCESS_RADIUS.get(task, 0.05)
        for camera in args.cameras:
            env = make_env(f"metaworld/{task}", image_size=args.image_size, camera=camera)
            views = camera.split("+")
            try:
                projects = [projector(env, args.image_size, view) for view in views]
                errors, covered = [], []
                for seed in range(5):
                    goal, centres, pixels = marker_centres(env, seed, len(views))
                    covered.append(pixels)
                    for project, centre in zip(projects, centres, strict=True):
                        if centre is not None:
                            errors.append(np.linalg.norm(project(goal[None])[0] - centre))
                space = env.unwrapped._env.goal_space
                rng = np.random.default_rng(0)
                goals = rng.uniform(space.low, space.high, size=(args.goals, 3))
            finally:
                env.close()
            pixels = np.concatenate([project(goals) for project in projects], axis=1)
            near = cKDTree(pixels).query_ball_point(
                pixels[: args.queries], r=args.radius * np.sqrt(len(views))
            )
            spread = np.array(
                [np.linalg.norm(goals[j] - goals[i], axis=1).max() for i, j in enumerate(near)]
            )
            span = np.ptp(pixels, axis=0)
            spans = " / ".join(
                f"{span[2 * i]:.0f} x {span[2 * i + 1]:.0f}" for i in range(len(views))
            )
            band = args.image_size // len(views)  # each view shows its image's middle rows
            low, high = (args.image_size - band) / 2, (args.image_size + band) / 2
            cols, rows = pixels[:, 0::2], pixels[:, 1::2]
            seen = np.all((cols >= 0) & (cols < args.image_size) & (rows >= low) & (rows < high), 1)
            check = f"{np.mean(errors):.2f}" if errors else "marker not in view"
            print(
                f"| {task} | {camera} | {min(covered)}-{max(covered)} | "
                f"{spans} | {seen.mean():.2f} | {check} | "
                f"{np.median(spread) * 100:.1f} cm | {np.mean(spread > radius):.2f} "
                f"(> {radius * 100:.0f} cm) |"
            )


if __name__ == "__main__":
    main()
