"""What the codes are worth to a VideoWorld head: its action error with the LDM's codes of the
real clip, with codes the transformer samples along the real past codes, along its own past
codes (what the policy acts on: `sample_codes`, cached in the dataset as head training caches
it) and with random codes, on the same recorded frames.

Usage:
    python benchmarks/code_error.py runs/playground/videoworld-25pct_seed0 runs/playground/data \\
        --per-task 1

For each chosen episode (``--per-task`` per task of the head's labelled episodes it trained
on, and as many of the dataset's other episodes, never seen with actions) the head predicts a
chunk at every recorded frame from the frame, the proprio state and the task (as it was
trained to) and one of the code sources; the error is the mean |first predicted action -
expert action| in env units. Also the share of codes equal to the LDM's, per code. A head whose
error with the codes it acts on is near its error with random codes gets nothing from the
generator when it acts. Greedy sampling, the transformer's own window; prints Markdown;
asserts nothing.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt
from vw_robot.data.dataset import FrameCache
from vw_robot.data.sequences import sequence_key, sequences_dir
from vw_robot.models.registry import load_model
from vw_robot.training.codes import sample_codes

SOURCES = ("LDM (real clip)", "sampled, real past codes", "sampled, own past codes", "random")


@torch.no_grad()
def sample_along_real_past(
    transformer, tokens: list[torch.Tensor], real: list[torch.Tensor], tasks: list[int]
) -> list[torch.Tensor]:
    """Greedy codes (F_i, H) per episode and timestep with the LDM's codes of the real clip as
    the earlier codes of each context (what heads trained on before b02cea0; the policy's own
    context is :func:`vw_robot.training.codes.sample_codes`'), the episodes batched timestep
    by timestep."""
    layout, window = transformer.config.layout, transformer.config.max_timesteps
    out = [torch.zeros(len(t), layout.horizon, dtype=torch.int64) for t in tokens]
    for t in range(max(len(x) for x in tokens)):
        rows = [i for i, x in enumerate(tokens) if t < len(x)]
        history = min(t, window - 1)
        tok = torch.stack([tokens[i][t - history : t + 1] for i in rows])
        cod = torch.stack([real[i][t - history : t] for i in rows])
        codes = transformer.generate_codes(
            layout.build_context(tok, cod), torch.tensor([tasks[i] for i in rows])
        )
        for i, row in zip(rows, codes, strict=True):
            out[i][t] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", type=Path, help="a VideoWorld action head checkpoint or run")
    parser.add_argument("dataset", type=Path, help="the dataset it was trained on")
    parser.add_argument("--per-task", type=int, default=1, help="episodes per task and group")
    args = parser.parse_args()
    info = ckpt.read_info(args.policy, stage="action_head")
    head, _ = load_model(info.path, "action_head")
    transformer, trf_info = load_model(info.parents["transformer"], "transformer")
    head.eval(), transformer.eval()
    tok_sha = ckpt.read_info(info.parents["tokenizer"]).model_sha256
    ldm_sha = ckpt.read_info(info.parents["ldm"]).model_sha256
    key = sequence_key(tok_sha, ldm_sha)
    folder = sequences_dir(args.dataset, key)
    config = head.config
    task_ids = info.model_config["task_ids"]
    env = info.model_config["env"]
    trained = set(env["labelled_episodes"]) - set(env.get("validation_episodes") or [])
    ids, _ = fmt.list_episode_folders(args.dataset)
    metas = fmt.parsed_metas(args.dataset, ids)
    chosen: dict[str, list[str]] = defaultdict(list)
    seen: dict[tuple[str, str], int] = defaultdict(int)
    for episode_id in sorted(metas):
        meta = metas[episode_id]
        if meta.task_id not in task_ids or not meta.has_actions:
            continue
        group = "trained on" if episode_id in trained else "other"
        if group == "other" and episode_id in env["labelled_episodes"]:
            continue  # held out for validation: neither group
        if seen[(meta.task_id, group)] < args.per_task:
            seen[(meta.task_id, group)] += 1
            chosen[group].append(episode_id)
    cache = FrameCache(args.dataset)
    rng = np.random.default_rng(0)
    hidden = transformer.config.layout.hide_past_codes
    print(
        f"# {info.path} (transformer {trf_info.path}; past codes "
        f"{'hidden' if hidden else 'shown'})\n"
    )
    print("| episodes | codes | mean abs action error | codes equal to the LDM's |")
    print("|---|---|---:|---:|")
    for group, episodes in chosen.items():
        errors, agree = defaultdict(list), defaultdict(list)
        loaded = []
        for episode_id in episodes:
            meta = metas[episode_id]
            with np.load(folder / f"{episode_id}.npz", allow_pickle=False) as npz:
                tokens = torch.from_numpy(npz["tokens"].astype(np.int64))
                ldm = torch.from_numpy(npz["codes"].astype(np.int64))
            loaded.append((meta, tokens, ldm, task_ids.index(meta.task_id)))
        tokens_all = [x[1] for x in loaded]
        ldm_all = [x[2] for x in loaded]
        tasks = [x[3] for x in loaded]
        real_past = sample_along_real_past(transformer, tokens_all, ldm_all, tasks)
        own = sample_codes(str(args.dataset), key, episodes, transformer, trf_info, task_ids)
        own_past = [torch.from_numpy(own[e].astype(np.int64)) for e in episodes]
        for i, (meta, _, ldm, task) in enumerate(loaded):
            steps = fmt.load_steps(args.dataset, meta)
            actions = steps["actions"]
            count = len(actions)
            frames = torch.from_numpy(np.array(cache.frames(meta)[:count])).permute(0, 3, 1, 2)
            inputs = {"task": torch.full((count,), task)} if config.num_tasks else {}
            if config.state_dim:
                inputs["state"] = torch.from_numpy(steps["state"][:count].astype(np.float32))
            sources = {
                SOURCES[0]: ldm,
                SOURCES[1]: real_past[i],
                SOURCES[2]: own_past[i],
                SOURCES[3]: torch.from_numpy(
                    rng.integers(0, int(np.prod(config.code_levels)), ldm.shape)
                ),
            }
            for name, codes in sources.items():
                with torch.no_grad():
                    predicted = head.predict(frames, codes[:count], **inputs)[:, 0].numpy()
                errors[name].append(float(np.abs(predicted - actions).mean()))
                agree[name].append(float((codes[:count] == ldm[:count]).float().mean()))
        for name in SOURCES:
            print(
                f"| {group} ({len(episodes)}) | {name} | {np.mean(errors[name]):.3f} "
                f"| {np.mean(agree[name]):.3f} |"
            )


if __name__ == "__main__":
    main()
