"""Where a frame's rendering time goes: the robot's visual meshes against the rest of the scene.

Usage:
    python benchmarks/bench_render.py                         # Meta-World reach, push; 64 px
    python benchmarks/bench_render.py --tasks metaworld/pick-place-v3 robosuite/lift --size 128

Per task: ms per frame of the env's own renderer (fast visuals, as every env renders); with the
geom groups that hold meshes hidden; and with every mesh's triangle list cut to 50% and
10% of its faces. The cut meshes are broken shapes, not a usable image: they bound what
simplified visual meshes (same silhouette, fewer triangles) would save on this software
renderer. Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform

import numpy as np
from bench_envs import _rate  # this folder's env benchmark (run as a script)

import vw_robot  # noqa: F401  (headless GL before mujoco)
from vw_robot.envs import make_env
from vw_robot.envs.rendering import FastRenderer

DEFAULT_TASKS = ["metaworld/reach-v3", "metaworld/push-v3"]


def _ms(render, frames: int, repeats: int) -> float:
    render()  # first frame: GL set-up
    return 1000 / _rate(render, frames, repeats)


def bench_task(task_id: str, size: int, frames: int, repeats: int) -> dict[str, float]:
    import mujoco  # after vw_robot, which picks the headless GL backend

    env = make_env(task_id, image_size=size, max_episode_steps=10**6)
    inner = env.unwrapped
    env.reset(seed=0)
    model, data = inner.mj_model, inner.mj_data
    row = {
        "faces": int(model.mesh_facenum.sum()),
        "mesh_geoms": int((model.geom_type == mujoco.mjtGeom.mjGEOM_MESH).sum()),
        "geoms": int(model.ngeom),
        "env": _ms(inner._render_pixels, frames, repeats),
    }
    renderer = FastRenderer(model, size, inner.camera)
    hidden = mujoco.MjvOption()
    mesh_groups = set(model.geom_group[model.geom_type == mujoco.mjtGeom.mjGEOM_MESH].tolist())
    # Hide the geom groups that hold meshes (with any other geom in them).
    for group in mesh_groups:
        hidden.geomgroup[group] = 0
    raw = renderer._renderer

    def without_meshes() -> None:
        raw.update_scene(data, camera=inner.camera, scene_option=hidden)
        raw.render()

    row["no_meshes"] = _ms(without_meshes, frames, repeats)
    renderer.close()
    for share in (0.5, 0.1):
        cut = copy.deepcopy(model)
        cut.mesh_facenum[:] = np.maximum(1, (model.mesh_facenum * share).astype(np.int32))
        cut_renderer = FastRenderer(cut, size, inner.camera)
        row[f"faces_{share}"] = _ms(lambda r=cut_renderer: r.render(data), frames, repeats)
        cut_renderer.close()
    env.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"# render cost — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}, {args.size} px\n"
    )
    print(
        "| task | mesh geoms / geoms | mesh faces | ms per frame | mesh groups hidden "
        "| faces x0.5 | faces x0.1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for task_id in args.tasks:
        r = bench_task(task_id, args.size, args.frames, args.repeats)
        print(
            f"| {task_id} | {r['mesh_geoms']} / {r['geoms']} | {r['faces']} | {r['env']:.1f} | "
            f"{r['no_meshes']:.1f} | {r['faces_0.5']:.1f} | {r['faces_0.1']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
