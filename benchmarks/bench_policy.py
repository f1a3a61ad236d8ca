"""Control latency of VideoWorldPolicy (planning every step) with and without the KV cache and
with the plan decoded to frames every step, and evaluation episodes/min with 1 and 2 workers.

Without a checkpoint it times the same per-step work on randomly initialised models of the
experiment's sizes (tokenize the frame, build the context, generate_codes, head predict), at
several control windows, rope and absolute positions, with and without the cache, on 1 and 2
threads. Random weights decode as many ids as trained ones, so the timings carry over.

Usage:
    python benchmarks/bench_policy.py                        # checkpoint-free, tiny_cpu sizes
    python benchmarks/bench_policy.py --windows 3 8 16 --steps 60
    python benchmarks/bench_policy.py --rows 1 4 16 --windows 3 --steps 20   # rows at once
    python benchmarks/bench_policy.py runs/demo/videoworld-100pct_seed0
    python benchmarks/bench_policy.py runs/demo/videoworld-100pct_seed0 --task metaworld/push-v3

With a policy it also times acting as the policy acts by default (a plan per chunk), codes
sampled at every step against only to plan (the same where past codes are shown).

Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import warnings

import torch

import vw_robot  # noqa: F401  (headless GL before mujoco)


class RandomControl:
    """VideoWorldPolicy's per-step work (``_observe`` then ``_plan`` with execute=1) on
    randomly initialised tokenizer, transformer and action head."""

    def __init__(self, experiment: str, window: int, positions: str, use_cache: bool) -> None:
        from vw_robot.cli import load_config
        from vw_robot.models.action_head import ActionHead, ActionHeadConfig
        from vw_robot.models.tokenizer import FrameTokenizer, TokenizerConfig
        from vw_robot.models.transformer import TransformerConfig, VideoTransformer
        from vw_robot.training.codes import sequence_layout

        exp = load_config("train", [f"experiment={experiment}"]).experiment
        tok = dataclasses.asdict(exp.tokenizer.model)
        ldm = dataclasses.asdict(exp.ldm.model)
        torch.manual_seed(0)
        self.tokenizer = FrameTokenizer(TokenizerConfig(**tok)).eval()
        self.layout = sequence_layout(tok, ldm)
        m = exp.transformer.model
        self.transformer = VideoTransformer(
            TransformerConfig(
                layout=self.layout,
                num_layers=m.num_layers,
                num_heads=m.num_heads,
                dim=m.dim,
                mlp_ratio=m.mlp_ratio,
                max_timesteps=window,  # the control window is the training window
                num_tasks=10,
                positions=positions,
            )
        ).eval()
        h = exp.action_head.model
        self.head = ActionHead(
            ActionHeadConfig(
                image_size=tok["image_size"],
                down_factor=2 ** len(h.channels),
                channels=list(h.channels),
                num_res_blocks=h.num_res_blocks,
                feature_dim=h.feature_dim,
                horizon=ldm["horizon"],
                code_levels=list(ldm["levels"]),
                code_embed_dim=h.code_embed_dim,
                hidden=h.hidden,
                chunk=h.chunk,
            )
        ).eval()
        self.image_size = tok["image_size"]
        self.window = window
        self.cache = self.transformer.make_cache(1) if use_cache else None
        self.task = torch.tensor([0])
        self.tokens: list[torch.Tensor] = []
        self.codes: list[torch.Tensor] = []

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """One control step on frame (1, 3, S, S) uint8; the action chunk (1, k, A)."""
        self.tokens.append(self.tokenizer.encode(frame).flatten(1)[0])  # (N,)
        del self.tokens[: -self.window]
        history = len(self.tokens) - 1
        codes = (
            torch.stack(self.codes[-history:])[None]
            if history
            else torch.zeros(1, 0, self.layout.horizon, dtype=torch.long)
        )  # (1, t-1, H)
        context = self.layout.build_context(torch.stack(self.tokens)[None], codes)  # (1, L)
        sampled = self.transformer.generate_codes(context, self.task, cache=self.cache)  # (1, H)
        self.codes.append(sampled[0])
        del self.codes[: -self.window]
        return self.head.predict(frame, sampled)

    @torch.no_grad()
    def frame_and_head_only(self, frame: torch.Tensor) -> torch.Tensor:
        """The step's work outside the transformer: tokenize and predict the chunk."""
        self.tokenizer.encode(frame)
        codes = torch.zeros(1, self.layout.horizon, dtype=torch.long)
        return self.head.predict(frame, codes)


def random_latencies(controls: dict[str, RandomControl], steps: int) -> dict[str, list[float]]:
    """ms per control step of each control once its window is full (it slides every step).

    The controls take turns step by step, so load from other processes on a shared machine
    falls on all of them alike; "frame+head" times the work outside the transformer.
    """
    some = next(iter(controls.values()))
    gen = torch.Generator().manual_seed(0)
    s = some.image_size
    frames = [
        torch.randint(0, 256, (1, 3, s, s), dtype=torch.uint8, generator=gen) for _ in range(8)
    ]
    times: dict[str, list[float]] = {name: [] for name in [*controls, "frame+head"]}
    for i in range(some.window + steps):
        frame = frames[i % len(frames)]
        for name, control in controls.items():
            start = time.perf_counter()
            control.step(frame)
            times[name].append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        some.frame_and_head_only(frame)
        times["frame+head"].append(1000 * (time.perf_counter() - start))
    return {name: sorted(t[some.window :]) for name, t in times.items()}


def random_table(experiment: str, windows: list[int], steps: int) -> None:
    print(
        f"# control step latency — random {experiment}-size models, a new plan every step\n\n"
        "ms per control step, median (min) over "
        f"{steps} steps with the window full, so it slides every step: tokenize frame, build "
        "context, generate_codes, head predict.\n"
    )
    print(
        "| window (timesteps) | threads | rope + cache | rope, no cache | cache speed-up "
        "(median) | absolute + cache | absolute, no cache | tokenize + head alone |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for window in windows:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            controls = {
                f"{positions}{'+cache' if cache else ''}": RandomControl(
                    experiment, window, positions, cache
                )
                for positions in ("rope", "absolute")
                for cache in (True, False)
            }
            ms = random_latencies(controls, steps)
            cell = {name: f"{statistics.median(t):.1f} ({t[0]:.1f})" for name, t in ms.items()}
            speedup = statistics.median(ms["rope"]) / statistics.median(ms["rope+cache"])
            print(
                f"| {window} | {threads} | {cell['rope+cache']} | {cell['rope']} "
                f"| {speedup:.1f}x | {cell['absolute+cache']} | {cell['absolute']} "
                f"| {cell['frame+head']} |",
                flush=True,
            )


def rows_table(experiment: str, window: int, rows: list[int], steps: int) -> None:
    """generate_codes alone for R rows at once (one thread, the window full and sliding): the
    absolute model refills its window, the rope one feeds only the new timestep."""
    torch.set_num_threads(1)
    print(
        f"\n# generate_codes for R rows at once — random {experiment}-size transformer, "
        f"window {window}, one thread; median ms per call (per row)\n\n"
        "| rows | absolute, refilled | rope + sliding cache |\n|---:|---:|---:|"
    )
    for count in rows:
        cells = []
        for positions, cache in (("absolute", False), ("rope", True)):
            control = RandomControl(experiment, window, positions, False)
            model, layout = control.transformer, control.layout
            kv = model.make_cache(count) if cache else None
            task = torch.zeros(count, dtype=torch.long)
            gen = torch.Generator().manual_seed(0)
            tokens: list[torch.Tensor] = []
            codes: list[torch.Tensor] = []
            times = []
            for i in range(window + steps):
                tokens.append(
                    torch.randint(
                        0, layout.frame_vocab, (count, layout.num_frame_tokens), generator=gen
                    )
                )
                del tokens[:-window]
                history = len(tokens) - 1
                past = (
                    torch.stack(codes[-history:], 1)
                    if history
                    else torch.zeros(count, 0, layout.horizon, dtype=torch.long)
                )
                context = layout.build_context(torch.stack(tokens, 1), past)  # (R, L)
                start = time.perf_counter()
                with torch.no_grad():
                    codes.append(model.generate_codes(context, task, cache=kv))
                if i >= window:
                    times.append(1000 * (time.perf_counter() - start))
                del codes[:-window]
            ms = statistics.median(times)
            cells.append(f"{ms:.1f} ({ms / count:.1f})")
        print(f"| {count} | {cells[0]} | {cells[1]} |", flush=True)


def _camera(policy) -> dict[str, str]:
    """make_env's camera argument: the one the policy was trained on, where recorded."""
    return {"camera": policy.camera} if policy.camera else {}


def latency(path: str, task: str, steps: int, use_cache: bool, decode: bool) -> float:
    """Median ms of select_action (a new plan every step) on real observations."""
    from vw_robot.envs import make_env
    from vw_robot.policies.videoworld import load_policy

    policy = load_policy(path, execute=1, use_cache=use_cache)
    env = make_env(task, image_size=policy.image_size, **_camera(policy))
    obs, info = env.reset(seed=0)
    policy.reset(task_id=task, action_space=env.action_space)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        action = policy.select_action(obs, info)
        if decode:
            policy.plan_frames()
        times.append(time.perf_counter() - start)
        obs, _, _, _, info = env.step(action)
    env.close()
    return 1000 * statistics.median(times[3:])


def chunk_latency(path: str, task: str, steps: int, only_to_plan: bool) -> float:
    """Mean ms of select_action as the policy acts by default (a plan per chunk), codes sampled
    only to plan where no later step reads them (past codes hidden) or at every step."""
    from vw_robot.envs import make_env
    from vw_robot.policies.videoworld import VideoWorldBatch, load_policy

    before = VideoWorldBatch.sample_only_to_plan
    VideoWorldBatch.sample_only_to_plan = only_to_plan
    try:
        policy = load_policy(path)
        env = make_env(task, image_size=policy.image_size, **_camera(policy))
        obs, info = env.reset(seed=0)
        policy.reset(task_id=task, action_space=env.action_space)
        times = []
        for _ in range(steps + 4):
            start = time.perf_counter()
            action = policy.select_action(obs, info)
            times.append(time.perf_counter() - start)
            obs, _, _, _, info = env.step(action)
        env.close()
    finally:
        VideoWorldBatch.sample_only_to_plan = before
    return 1000 * statistics.fmean(times[4:])


def episodes_per_minute(path: str, task: str, episodes: int, workers: int, limit: int) -> float:
    from vw_robot.eval import evaluate

    start = time.perf_counter()
    evaluate(
        [task],
        policy=path,
        episodes_per_task=episodes,
        workers=workers,
        env_kwargs={"max_episode_steps": limit},
    )
    return episodes / ((time.perf_counter() - start) / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", nargs="?", help="a trained policy; none: random models")
    parser.add_argument("--task", default="metaworld/reach-v3")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--limit", type=int, default=100, help="steps per evaluation episode")
    parser.add_argument("--experiment", default="tiny_cpu", help="model sizes without a policy")
    parser.add_argument("--windows", type=int, nargs="+", default=[3, 8])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for a policy (default: torch's)"
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", help="only generate_codes for these batch sizes"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.rows:
        for window in args.windows:
            rows_table(args.experiment, window, args.rows, args.steps)
        return
    if args.policy is None:
        random_table(args.experiment, args.windows, args.steps)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# policy latency — {args.policy} on {args.task}, {torch.get_num_threads()} torch "
        "thread(s)\n"
    )
    print("| mode | ms per control step (median) |")
    print("|---|---:|")
    for label, cache, decode in [
        ("KV cache (default)", True, False),
        ("no KV cache", False, False),
        ("KV cache + decode the plan's frames every step", True, True),
    ]:
        ms = latency(args.policy, args.task, args.steps, cache, decode)
        print(f"| {label} | {ms:.1f} |", flush=True)
    print(
        "\n| acting in chunks (the default execute), codes sampled | ms per control step "
        "(mean) |\n|---|---:|"
    )
    for label, only_to_plan in [("at every step", False), ("only to plan (default)", True)]:
        ms = chunk_latency(args.policy, args.task, args.steps, only_to_plan)
        print(f"| {label} | {ms:.1f} |", flush=True)
    print(
        f"\n| evaluation ({args.episodes} episodes x {args.limit} steps, whole chunks) "
        "| episodes/min |\n|---|---:|"
    )
    for workers in (1, 2):
        rate = episodes_per_minute(args.policy, args.task, args.episodes, workers, args.limit)
        print(f"| {workers} worker(s) | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
