"""What frustum culling saves: ms per frame of each env's camera with and without it, and the
share of the scene's mesh triangles it leaves out, over an episode of random actions.

Usage:
    python benchmarks/bench_cull.py
    python benchmarks/bench_cull.py --cases metaworld/push-v3:front+top robosuite/lift:agentview

The two renderers take turns frame by frame on the same states, so a busy machine slows both
alike. The frames are equal (tests/envs/test_rendering.py); this prints Markdown and asserts
nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

import vw_robot  # noqa: F401  (headless GL before mujoco)
from vw_robot.envs import make_env
from vw_robot.envs.rendering import FastRenderer, split_views

DEFAULT_CASES = [
    "metaworld/push-v3:front+top",
    "metaworld/push-v3:corner2",
    "metaworld/push-v3:gripperPOV",
    "playground/open-drawer:front+gripper",
    "robosuite/lift:agentview",
    "robosuite/lift:robot0_eye_in_hand",
]


def bench_case(task_id: str, camera: str, size: int, steps: int) -> dict[str, float]:
    import mujoco  # after vw_robot, which picks the headless GL backend

    env = make_env(task_id, image_size=size, camera=camera)
    env.reset(seed=0)
    inner = env.unwrapped
    model, data = inner.mj_model, inner.mj_data
    views = split_views(camera)
    renderers = {
        cull: [
            FastRenderer(model, size, view, flip=flip, band=len(views), cull=cull)
            for view, flip in (inner.view(name) for name in views)
        ]
        for cull in (True, False)
    }
    mesh = model.geom_type == mujoco.mjtGeom.mjGEOM_MESH
    faces = np.zeros(model.ngeom, dtype=np.int64)
    faces[mesh] = model.mesh_facenum[model.geom_dataid[mesh]]
    times: dict[bool, list[float]] = {True: [], False: []}
    left_out = []
    rng = np.random.default_rng(0)
    for step in range(steps):
        _, _, terminated, truncated, _ = env.step(
            rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32)
        )
        if terminated or truncated:
            env.reset(seed=step)
        for cull in (step % 2 == 0, step % 2 == 1):  # which goes first alternates
            start = time.perf_counter()
            for renderer in renderers[cull]:
                renderer.render(data)
            times[cull].append(time.perf_counter() - start)
        hidden = sum(int(faces[r._outside(data)].sum()) for r in renderers[True])
        left_out.append(hidden / (int(faces.sum()) * len(views)) if faces.any() else np.nan)
    for group in renderers.values():
        for renderer in group:
            renderer.close()
    env.close()
    return {
        "culled": 1000 * statistics.median(times[True][5:]),
        "full": 1000 * statistics.median(times[False][5:]),
        "left_out": float(np.mean(left_out)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="TASK:CAMERA")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    print(
        f"# frustum culling — {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, {args.size} px, {args.steps} steps\n"
    )
    print(
        "| task | camera | mesh triangles left out | ms per frame, all geoms | culled | speed-up |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for case in args.cases:
        task_id, camera = case.rsplit(":", 1)
        r = bench_case(task_id, camera, args.size, args.steps)
        print(
            f"| {task_id} | {camera} | "
            f"{'no meshes' if np.isnan(r['left_out']) else format(r['left_out'], '.0%')} | "
            f"{r['full']:.1f} | "
            f"{r['culled']:.1f} | {r['full'] / r['culled']:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
