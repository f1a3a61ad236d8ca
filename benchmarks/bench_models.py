"""Model figures: parameters and training samples/s per stage (tiny_cpu and gpu configs, on
this machine), tokens per frame, and — given trained checkpoints — tokenizer PSNR and LDM
future-frame PSNR on held-out episodes.

Usage:
    python benchmarks/bench_models.py                                   # sizes and speed
    python benchmarks/bench_models.py --steps 5 --experiments tiny_cpu
    python benchmarks/bench_models.py --pipeline runs/mt10 --heldout data/mt10_heldout

Prints Markdown; asserts nothing. Speed uses random inputs of the real shapes (forward +
backward + AdamW), so it measures the models, not the data pipeline.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from vw_robot.cli import load_config
from vw_robot.models.registry import build_model, load_model
from vw_robot.models.transformer import TransformerConfig, VideoTransformer
from vw_robot.training.codes import sequence_layout


def stage_inputs(stage: str, cfg, batch: int) -> tuple[torch.nn.Module, callable]:
    import dataclasses

    exp = cfg.experiment
    if stage == "tokenizer":
        model = build_model("FrameTokenizer", dataclasses.asdict(exp.tokenizer.model))
        s = exp.tokenizer.model.image_size
        frames = torch.randint(0, 256, (batch, 3, s, s), dtype=torch.uint8)
        return model, lambda: model(frames)["loss"]
    if stage == "ldm":
        model = build_model("LatentDynamicsModel", dataclasses.asdict(exp.ldm.model))
        s, h = exp.ldm.model.image_size, exp.ldm.model.horizon
        clips = torch.randint(0, 256, (batch, h + 1, 3, s, s), dtype=torch.uint8)
        return model, lambda: model(clips)["loss"]
    layout = sequence_layout(
        dataclasses.asdict(exp.tokenizer.model), dataclasses.asdict(exp.ldm.model)
    )
    m = exp.transformer.model
    model = VideoTransformer(
        TransformerConfig(
            layout=layout,
            num_layers=m.num_layers,
            num_heads=m.num_heads,
            dim=m.dim,
            positions=m.positions,
            mlp_ratio=m.mlp_ratio,
            dropout=m.dropout,
            max_timesteps=m.max_timesteps,
            num_tasks=10,
        )
    )
    t = m.max_timesteps
    tokens = torch.randint(0, layout.frame_vocab, (batch, t, layout.num_frame_tokens))
    codes = torch.randint(0, layout.code_vocab, (batch, t, layout.horizon))
    ids = layout.build(tokens, codes)
    targets = layout.targets(ids)
    task = torch.zeros(batch, dtype=torch.int64)
    return model, lambda: model(ids, task, targets)[1]


def speed(stage: str, cfg, steps: int, precision: str) -> tuple[int, float, int]:
    batch = getattr(cfg.experiment, stage).optim.batch_size
    torch.manual_seed(0)
    model, loss_fn = stage_inputs(stage, cfg, batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ctx = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else torch.autocast("cpu", enabled=False)
    )
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        with ctx:
            loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step pays one-off allocation costs
            times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    return params, batch / float(np.median(times)), batch


@torch.no_grad()
def heldout_psnr(pipeline: str, heldout: str, clips: int = 64) -> dict[str, float]:
    from vw_robot.data.dataset import ClipDataset
    from vw_robot.training.pictures import psnr

    tokenizer, _ = load_model(f"{pipeline}/tokenizer", "tokenizer")
    ldm, _ = load_model(f"{pipeline}/ldm", "ldm")
    h = ldm.config.horizon
    ds = ClipDataset(heldout, clip_len=h + 1, stride=h + 1)
    picks = np.linspace(0, len(ds) - 1, min(clips, len(ds))).astype(int)
    batch = torch.stack([ds[int(k)]["frames"] for k in picks])  # (K, H+1, 3, S, S)
    frames = batch[:, 0]
    recon = tokenizer.decode(tokenizer.encode(frames))
    to_u8 = lambda x: (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # noqa: E731
    future = ldm(batch)["recon"]
    # The same first frames decoded with other clips' codes: what the codes themselves carry.
    shuffled = ldm.decode(batch[:, 0], ldm.encode(batch).roll(1, dims=0))
    codes = ldm.encode(batch)
    # L1 where something moved since x_0 (> 0.05 in any channel), the pixels codes must explain.
    target = batch[:, 1:].float() / 255
    moved = ((target - batch[:, :1].float() / 255).abs().amax(2, keepdim=True) > 0.05).float()

    def moved_l1(prediction: torch.Tensor) -> float:
        error = (prediction.float() - target).abs() * moved
        return float(error.sum() / (moved.sum() * 3).clamp_min(1))

    copy_last = batch[:, :1].expand(-1, h, -1, -1, -1)  # baseline: predict "nothing moves"
    return {
        "tokenizer_psnr": psnr(frames.numpy(), to_u8(recon)),
        "ldm_future_psnr": psnr(batch[:, 1:].numpy(), to_u8(future)),
        "ldm_shuffled_codes_psnr": psnr(batch[:, 1:].numpy(), to_u8(shuffled)),
        "distinct_codes": int(codes.unique().numel()),
        "horizon": h,
        "moved_l1": {
            "ldm": moved_l1(future),
            "shuffled codes": moved_l1(shuffled),
            "copy x_0": moved_l1(batch[:, :1].float().expand(-1, h, -1, -1, -1) / 255),
        },
        "moved_share": float(moved.mean()),
        "copy_first_frame_psnr": psnr(batch[:, 1:].numpy(), copy_last.numpy()),
        "clips": len(picks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=["tiny_cpu", "gpu"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pipeline", help="pipeline folder with tokenizer/ and ldm/ runs")
    parser.add_argument("--heldout", help="dataset of episodes the models never saw")
    parser.add_argument("--no-speed", action="store_true", help="parameter counts only")
    args = parser.parse_args()
    print(f"# model figures — torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| experiment | stage | parameters | batch | fp32 samples/s | bf16 samples/s |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.experiments:
        cfg = load_config("train", [f"experiment={name}"])
        for stage in ("tokenizer", "ldm", "transformer"):
            if args.no_speed:
                model, _ = stage_inputs(stage, cfg, 1)
                params = sum(p.numel() for p in model.parameters())
                batch = getattr(cfg.experiment, stage).optim.batch_size
                print(f"| {name} | {stage} | {params:,} | {batch} | — | — |", flush=True)
                continue
            params, fp32, batch = speed(stage, cfg, args.steps, "fp32")
            _, bf16, _ = speed(stage, cfg, args.steps, "bf16")
            print(
                f"| {name} | {stage} | {params:,} | {batch} | {fp32:.1f} | {bf16:.1f} |", flush=True
            )
        tok = cfg.experiment.tokenizer.model
        print(
            f"\n{name}: {(tok.image_size // tok.down_factor) ** 2} tokens per "
            f"{tok.image_size}px frame, vocabulary {math.prod(tok.levels)}; "
            f"{cfg.experiment.ldm.model.horizon} codes per timestep\n"
        )
    if args.pipeline and args.heldout:
        r = heldout_psnr(args.pipeline, args.heldout)
        print(
            f"held-out ({r['clips']} clips of {args.heldout}): tokenizer PSNR "
            f"{r['tokenizer_psnr']:.2f} dB; LDM future-frame PSNR {r['ldm_future_psnr']:.2f} "
            f"dB (copying x_0 forward: {r['copy_first_frame_psnr']:.2f} dB; with another "
            f"clip's codes: {r['ldm_shuffled_codes_psnr']:.2f} dB); {r['distinct_codes']} "
            f"distinct codes over {r['clips']} x {r['horizon']} queries"
        )
        print(
            f"L1 on the {100 * r['moved_share']:.1f}% of future pixels that moved since x_0: "
            + ", ".join(f"{k} {v:.4f}" for k, v in r["moved_l1"].items())
        )


if __name__ == "__main__":
    main()
