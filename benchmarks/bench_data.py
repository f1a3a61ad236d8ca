"""Dataset throughput: collection against the raw env loop, and cached clip loading against
decoding the mp4 each time.

Usage:
    python benchmarks/bench_data.py                        # 4 MT10 tasks x 6 episodes, 64 px
    python benchmarks/bench_data.py --episodes 10 --tasks metaworld/reach-v3 metaworld/push-v3

Prints figures; asserts nothing. Targets: collection overhead <= 15% over the raw
env+render loop; 2 workers >= 1.7x one; cached loading >= 10x faster than decoding.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

import vw_robot  # noqa: F401  (headless GL before mujoco)

DEFAULT_TASKS = [
    "metaworld/reach-v3",
    "metaworld/push-v3",
    "metaworld/drawer-close-v3",
    "metaworld/button-press-topdown-v3",
]


def raw_loop(tasks: list[str], episodes: int, size: int) -> tuple[int, float]:
    """The same episodes as collection, without storing anything: (frames, seconds)."""
    from vw_robot.envs import make_env
    from vw_robot.eval.collect import EpisodeJob, record_episode
    from vw_robot.policies import ExpertPolicy

    frames, start = 0, time.perf_counter()
    policy = ExpertPolicy()
    for task_id in tasks:
        env = make_env(task_id, image_size=size)
        kwargs = (("image_size", size), ("camera", None), ("max_episode_steps", None))
        for i in range(episodes):
            job = EpisodeJob(task_id, i, 0, kwargs, "expert", False, 5, "lossless", 20)
            frames += len(record_episode(env, policy, job)["frames"])
        env.close()
    return frames, time.perf_counter() - start


def collection(tasks: list[str], episodes: int, size: int, workers: int) -> tuple[int, float]:
    from vw_robot.eval.collect import collect

    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        summary = collect(root, tasks, episodes_per_task=episodes, image_size=size, workers=workers)
        seconds = time.perf_counter() - start
    return sum(r["frames"] for r in summary["tasks"].values()), seconds


def loading(tasks: list[str], episodes: int, size: int, clip_len: int, clips: int) -> dict:
    from vw_robot.data import format as fmt
    from vw_robot.data.dataset import ClipDataset
    from vw_robot.data.video import read_video
    from vw_robot.eval.collect import collect

    with tempfile.TemporaryDirectory() as root:
        collect(root, tasks, episodes_per_task=episodes, image_size=size)
        start = time.perf_counter()
        ds = ClipDataset(root, clip_len=clip_len)
        build = time.perf_counter() - start  # first build decodes every video into the cache
        rng = np.random.default_rng(0)
        picks = rng.integers(len(ds), size=clips)
        start = time.perf_counter()
        for k in picks:
            ds[int(k)]
        cached = clips / (time.perf_counter() - start)
        start = time.perf_counter()
        for k in picks:
            number, first = ds.index[int(k)]
            video = fmt.episode_dir(root, ds.episodes[number].meta.episode_id) / fmt.VIDEO_FILE
            read_video(video)[first : first + clip_len]
        decoded = clips / (time.perf_counter() - start)
    return {"cache_build_s": build, "cached": cached, "decoded": decoded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--clips", type=int, default=300)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    tasks, n, size = args.tasks, args.episodes, args.image_size
    print(
        f"# dataset throughput — {len(tasks)} tasks x {n} expert episodes at {size} px, "
        f"{os.cpu_count()} cores\n"
    )
    raw_frames, raw_s = raw_loop(tasks, n, size)
    one_frames, one_s = collection(tasks, n, size, 1)
    two_frames, two_s = collection(tasks, n, size, 2)
    raw, one, two = raw_frames / raw_s, one_frames / one_s, two_frames / two_s
    print("| what | frames | seconds | frames/s |")
    print("|---|---:|---:|---:|")
    print(f"| raw env + render loop (1 process) | {raw_frames} | {raw_s:.1f} | {raw:.0f} |")
    print(f"| collect, 1 worker | {one_frames} | {one_s:.1f} | {one:.0f} |")
    print(f"| collect, 2 workers | {two_frames} | {two_s:.1f} | {two:.0f} |")
    print(
        f"\ncollection overhead over the raw loop: {100 * (raw / one - 1):.1f}% "
        f"(target <= 15%); 2 workers / 1 worker: {two / one:.2f}x (target >= 1.7x)\n"
    )
    load = loading(tasks, n, size, args.clip_len, args.clips)
    print(f"| clip loading (T={args.clip_len}) | clips/s |")
    print("|---|---:|")
    print(f"| ClipDataset from the uint8 memmap cache | {load['cached']:.0f} |")
    print(f"| decoding the episode's mp4 for each clip | {load['decoded']:.0f} |")
    print(
        f"\ncached / decoded: {load['cached'] / load['decoded']:.0f}x (target >= 10x); "
        f"first ClipDataset build (decodes into the cache): {load['cache_build_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
