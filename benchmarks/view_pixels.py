"""How many pixels the playground's blocks get from each camera, alone and stacked.

Usage:
    python benchmarks/view_pixels.py                 # 20 scenes, 64 and 128 px
    python benchmarks/view_pixels.py --scenes 5 --sizes 64

For each view (a camera, or views stacked with ``+``, each a middle band of its camera) and
image size, over ``--scenes`` start scenes of the scene sampler (seeds 0, 1, ...; the hand at
its home pose):

- px per block: pixels each block covers in the frame, mean over blocks and scenes;
- px/cm along x and y: how far a block's image moves when the block moves 1 cm along the table
  (x: left-right, y: away from the front), mean over the blocks a view shows; stacked views
  keep each camera's scale, so it is the scale of the views that show the block;
- pre-grasp: with the hand where the scripted experts put it just before touching a block that
  is free on the table — 6 cm above it for a pick (fingers open), 6 cm above the pusher's start
  beside it and at the pusher's start for a push either way (fingers at the pusher gap) — the
  share of those states whose target block covers at least a 2 x 2 px patch at 64 px (scaled
  with the image), and the target's mean pixels.

Pixels are counted by hiding a block and comparing frames
(:func:`vw_robot.envs.rendering.geom_pixels`), so only the visible part counts. Prints
Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from vw_robot.envs import playground_experts as pe
from vw_robot.envs import playground_tasks as pt
from vw_robot.envs.playground_scene import (
    BLOCK_COLORS,
    BLOCK_HALF,
    FINGER_OPEN,
    PlaygroundSim,
    SceneState,
)
from vw_robot.envs.rendering import ViewsRenderer, geom_pixels, split_views

VIEWS = ("front", "gripper", "wrist", "table", "front+gripper", "front+wrist", "table+wrist")
GAP_OPEN = 2 * FINGER_OPEN + 0.002
GAP_PUSHER = 2 * (0.001 + FINGER_OPEN * (1.0 - pe.PUSHER) / 2)  # what the push expert commands
PUSH_BEHIND = BLOCK_HALF + 0.012 + 0.02  # the pusher's start, behind the block (as the expert)
HOVER = 0.06  # the experts descend from this far above their target
SETTLE_STEPS = 5
HAND_CAMERAS = ("gripper", "wrist")
PRE_GRASP_KINDS = (
    "pick hover",
    "push-left hover",
    "push-left start",
    "push-right hover",
    "push-right start",
)


def pre_grasp_states(scene: SceneState) -> list[tuple[str, str, SceneState]]:
    """(kind, target colour, state) for each block free on the table: the pick hover, and the
    push hover and push start either way (kinds: :data:`PRE_GRASP_KINDS`)."""
    out = []
    for color in BLOCK_COLORS:
        if pt.block_location(scene, color) != "table" or pt.is_covered(scene, color):
            continue
        p = scene.blocks[color]
        grips = [("pick hover", p + [0.0, 0.0, HOVER], GAP_OPEN)]
        for side, direction in (("left", -1), ("right", 1)):
            behind = -direction * PUSH_BEHIND
            grips += [
                (f"push-{side} hover", p + [behind, 0.0, HOVER], GAP_PUSHER),
                (f"push-{side} start", p + [behind, 0.0, 0.003], GAP_PUSHER),
            ]
        for kind, grip, gap in grips:
            out.append((kind, color, scene.copy(grip=grip, setpoint=grip.copy(), gap=gap)))
    return out


def px_per_cm(sim: PlaygroundSim, camera: str, size: int, point: np.ndarray) -> tuple[float, float]:
    """Pixels the image of ``point`` moves per cm along world x and y in a ``size`` px image of
    ``camera`` (pinhole projection; MuJoCo cameras look along their -z axis)."""
    m, d = sim.model, sim.data
    cam = m.camera(camera).id
    focal = (size / 2) / np.tan(np.radians(m.cam_fovy[cam]) / 2)
    rot, pos = d.cam_xmat[cam].reshape(3, 3), d.cam_xpos[cam]

    def image(p: np.ndarray) -> np.ndarray:
        c = rot.T @ (p - pos)
        return focal * c[:2] / -c[2]

    step = 0.005
    return tuple(
        float(np.linalg.norm(image(point + step * axis) - image(point - step * axis)) / (2 * step))
        / 100
        for axis in (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    )


def pre_grasp_view(view: str) -> int:
    """Index of the view whose rows the pre-grasp columns count: the hand camera of a stack,
    else the first (the only) one."""
    views = split_views(view)
    return next((i for i, v in enumerate(views) if v in HAND_CAMERAS), 0)


def measure(scenes: int, sizes: list[int]) -> list[dict]:
    sim = PlaygroundSim()
    model, data = sim.model, sim.data
    block_geoms = {c: [model.geom(f"{c}_block").id] for c in BLOCK_COLORS}
    renderers = {
        (view, size): ViewsRenderer(model, size, [(v, False) for v in split_views(view)])
        for view in VIEWS
        for size in sizes
    }
    px = defaultdict(list)  # (view, size) -> pixels per block
    scale = defaultdict(list)  # (camera, size) -> (px/cm x, px/cm y) per block it shows
    grasp = defaultdict(list)  # (view, size) -> target pixels in the pre-grasp view's rows
    kinds = []  # the kind of each pre-grasp state, in order
    try:
        for seed in range(scenes):
            scene = pt.sample_scene(np.random.default_rng(seed))
            sim.set_state(scene, settle_steps=SETTLE_STEPS)
            sim.update_visuals()
            for (view, size), renderer in renderers.items():
                masks = geom_pixels(lambda r=renderer: r.render(data), model, block_geoms)
                for color, mask in masks.items():
                    px[view, size].append(int(mask.sum()))
                    if len(split_views(view)) == 1 and mask.any():
                        centre = data.xpos[model.body(f"{color}_block").id]
                        scale[view, size].append(px_per_cm(sim, view, size, centre))
            for kind, color, state in pre_grasp_states(scene):
                kinds.append(kind)
                sim.set_state(state, settle_steps=SETTLE_STEPS)
                sim.update_visuals()
                for (view, size), renderer in renderers.items():
                    mask = geom_pixels(
                        lambda r=renderer: r.render(data), model, {color: block_geoms[color]}
                    )[color]
                    rows = size // len(split_views(view))
                    i = pre_grasp_view(view)
                    grasp[view, size].append(int(mask[i * rows : (i + 1) * rows].sum()))
    finally:
        for renderer in renderers.values():
            renderer.close()
    out = []
    for view in VIEWS:
        for size in sizes:
            # Stacked views keep each camera's scale: the scale of each camera, joined by " / ".
            per_camera = [np.array(scale[c, size]).reshape(-1, 2) for c in split_views(view)]
            target = np.array(grasp[view, size])
            seen = target >= 4 * (size / 64) ** 2  # a 2 x 2 px patch at 64 px
            out.append(
                {
                    "view": view,
                    "size": size,
                    "px_per_block": float(np.mean(px[view, size])),
                    "blocks_seen": float(np.mean(np.array(px[view, size]) > 0)),
                    "px_per_cm_x": [float(s[:, 0].mean()) if len(s) else None for s in per_camera],
                    "px_per_cm_y": [float(s[:, 1].mean()) if len(s) else None for s in per_camera],
                    "pre_grasp_view": split_views(view)[pre_grasp_view(view)],
                    "pre_grasp_seen": float(np.mean(seen)),
                    "pre_grasp_px": float(np.mean(target)),
                    "pre_grasp_states": int(target.size),
                    "pre_grasp_seen_by_kind": {
                        k: float(np.mean(seen[np.array(kinds) == k])) for k in PRE_GRASP_KINDS
                    },
                }
            )
    return out


def _scales(values: list[float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=20, help="start scenes (seeds 0..N-1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sides")
    args = parser.parse_args()
    if args.scenes < 1:
        parser.error(f"--scenes={args.scenes}: need at least 1 scene")
    if any(s % 2 for s in args.sizes):
        parser.error(f"--sizes={args.sizes}: stacked views need even image sizes")
    start = time.perf_counter()
    rows = measure(args.scenes, args.sizes)
    states = rows[0]["pre_grasp_states"]
    print(
        f"| view | px | px per block | blocks seen | px/cm x | px/cm y | pre-grasp: rows of | "
        f"target seen ({states} states) | target px |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['view']} | {r['size']} | {r['px_per_block']:.1f} | {r['blocks_seen']:.2f} | "
            f"{_scales(r['px_per_cm_x'])} | {_scales(r['px_per_cm_y'])} | "
            f"{r['pre_grasp_view']} | {r['pre_grasp_seen']:.2f} | {r['pre_grasp_px']:.0f} |"
        )
    print(f"\nTarget seen, by pre-grasp state ({states // len(PRE_GRASP_KINDS)} states each):\n")
    print(f"| view | px | {' | '.join(PRE_GRASP_KINDS)} |")
    print(f"|---|---:|{'---:|' * len(PRE_GRASP_KINDS)}")
    for r in rows:
        if r["pre_grasp_view"] in HAND_CAMERAS:
            shares = " | ".join(f"{r['pre_grasp_seen_by_kind'][k]:.2f}" for k in PRE_GRASP_KINDS)
            print(f"| {r['view']} | {r['size']} | {shares} |")
    print(f"\n{args.scenes} scenes, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
