"""Pictures written at the end of each stage, for a person to judge what the stage learned.

- tokenizer: real frames over their reconstructions (``reconstructions.png``);
- ldm: real clips over x_0 + the frames rebuilt from x_0 and the codes (``future_frames.png``),
  and a 2-D map of latent codes coloured by task and by step offset (``code_map.png``; UMAP
  when ``umap-learn`` is installed, PCA otherwise — the paper's analysis);
- transformer: real future frames over the ones decoded from what the transformer sampled
  (``predictions.png``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vw_robot.data.dataset import ClipDataset
from vw_robot.models.registry import load_model

log = logging.getLogger(__name__)

PICTURES_DIR = "pictures"


def image_grid(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Rows of (K, S, S, 3) uint8 images -> one image, rows stacked."""
    k = max(len(r) for r in rows)
    s = rows[0].shape[1]
    canvas = np.full((len(rows) * (s + pad) + pad, k * (s + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = pad + i * (s + pad), pad + j * (s + pad)
            canvas[y : y + s, x : x + s] = image
    return canvas


def save_image(path: Path, image: np.ndarray, scale: int = 2) -> str:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, np.kron(image, np.ones((scale, scale, 1), np.uint8)))
    return str(path)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(..., 3, S, S) float in [0, 1] or uint8 -> (..., S, S, 3) uint8."""
    if x.dtype != torch.uint8:
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@torch.no_grad()
def tokenizer_pictures(
    model: Any,
    dataset_root: str,
    out: Path,
    parents: dict[str, Path],
    tasks: list[str] | None = None,
    cache_dir: str | None = None,
    count: int = 8,
) -> dict:
    """Real frames over their reconstructions, and the PSNR between them."""
    ds = ClipDataset(dataset_root, clip_len=1, tasks=tasks, cache_dir=cache_dir)
    picks = np.linspace(0, len(ds) - 1, count).astype(int)
    frames = torch.stack([ds[int(k)]["frames"][0] for k in picks])  # (K, 3, S, S) uint8
    frames = frames.to(_device(model))
    model.eval()
    recon = model.decode(model.encode(frames))
    real, fake = _to_uint8(frames), _to_uint8(recon)
    path = save_image(out / "reconstructions.png", image_grid([real, fake]))
    return {"reconstructions": path, "psnr_db": psnr(real, fake)}


@torch.no_grad()
def ldm_pictures(
    model: Any,
    dataset_root: str,
    out: Path,
    parents: dict[str, Path],
    tasks: list[str] | None = None,
    cache_dir: str | None = None,
    count: int = 4,
) -> dict:
    """Real clips over x_0 + the frames rebuilt from x_0 and the codes; the code map."""
    horizon = model.config.horizon
    ds = ClipDataset(dataset_root, clip_len=horizon + 1, tasks=tasks, cache_dir=cache_dir)
    picks = np.linspace(0, len(ds) - 1, count).astype(int)
    clips = torch.stack([ds[int(k)]["frames"] for k in picks]).to(_device(model))  # (K, H+1, ..)
    model.eval()
    recon = model(clips)["recon"]  # (K, H, 3, S, S)
    rows = []
    for i in range(count):
        rows.append(_to_uint8(clips[i]))
        rows.append(np.concatenate([_to_uint8(clips[i, :1]), _to_uint8(recon[i])]))
    path = save_image(out / "future_frames.png", image_grid(rows))
    real, fake = _to_uint8(clips[:, 1:]), _to_uint8(recon)
    result = {"future_frames": path, "future_psnr_db": psnr(real, fake)}
    result["code_map"] = code_map(model, ds, out / "code_map.png")
    return result


@torch.no_grad()
def code_map(model: Any, ds: Any, path: Path, clips: int = 400) -> str:
    """Scatter the continuous FSQ codes of many clips in 2-D, by task and by step offset."""
    # matplotlib is imported only when a picture is drawn: it costs ~1 s at start-up.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    picks = rng.choice(len(ds), size=min(clips, len(ds)), replace=False)
    vectors, tasks, offsets = [], [], []
    for start in range(0, len(picks), 64):
        batch = [ds[int(k)] for k in picks[start : start + 64]]
        frames = torch.stack([b["frames"] for b in batch]).to(_device(model))
        codes = model.encode(frames)  # (b, H)
        values = model.quantizer.indices_to_codes(codes).cpu()  # (b, H, C)
        for b, item in enumerate(batch):
            for i in range(codes.shape[1]):
                vectors.append(values[b, i].numpy())
                tasks.append(int(item["task_index"]))
                offsets.append(i + 1)
    x = np.stack(vectors)
    method = "PCA"
    try:
        import umap  # type: ignore[import-not-found]

        xy = umap.UMAP(n_components=2, random_state=0).fit_transform(x)
        method = "UMAP"
    except ImportError:
        centred = x - x.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
    jitter = rng.normal(scale=0.02 * (np.ptp(xy, 0) + 1e-9), size=xy.shape)  # codes repeat
    xy = xy + jitter
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for t in sorted(set(tasks)):
        m = np.asarray(tasks) == t
        axes[0].scatter(xy[m, 0], xy[m, 1], s=6, label=ds.task_ids[t].split("/")[-1])
    axes[0].set_title(f"latent codes ({method}) by task")
    axes[0].legend(fontsize=6, markerscale=2)
    sc = axes[1].scatter(xy[:, 0], xy[:, 1], s=6, c=offsets, cmap="viridis")
    axes[1].set_title("by step offset i (code i: x_0 -> x_i)")
    fig.colorbar(sc, ax=axes[1])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


@torch.no_grad()
def transformer_pictures(
    model: Any,
    dataset_root: str,
    out: Path,
    parents: dict[str, Path],
    tasks: list[str] | None = None,
    cache_dir: str | None = None,
    count: int = 4,
) -> dict:
    """Sample from a window's context and decode what the transformer predicts."""
    device = _device(model)
    tokenizer = load_model(parents["tokenizer"], "tokenizer")[0].to(device)
    layout = model.config.layout
    horizon = layout.horizon
    ldm = load_model(parents["ldm"], "ldm")[0].to(device) if horizon > 0 else None
    steps_ahead = horizon if horizon > 0 else 1
    ds = ClipDataset(dataset_root, clip_len=steps_ahead + 1, tasks=tasks, cache_dir=cache_dir)
    picks = np.linspace(0, len(ds) - 1, count).astype(int)
    model.eval()
    rows, reals, fakes = [], [], []
    for k in picks:
        item = ds[int(k)]
        clip = item["frames"].to(device)  # (H+1, 3, S, S) uint8
        tokens = tokenizer.encode(clip[:1]).flatten(1)[None]  # (1, 1, N)
        task = item["task_index"][None].to(device)
        context = layout.build_context(
            tokens,
            None if horizon == 0 else torch.zeros(1, 0, horizon, dtype=torch.int64, device=device),
        )
        if horizon > 0:
            codes = model.generate_codes(context, task)  # (1, H)
            predicted = ldm.decode(clip[:1], codes)[0]  # (H, 3, S, S)
        else:
            next_tokens = model.generate_frame_tokens(context, task)  # (1, N)
            side = int(round(layout.num_frame_tokens**0.5))
            predicted = tokenizer.decode(next_tokens.view(1, side, side))  # (1, 3, S, S)
        real = _to_uint8(clip[1:])
        fake = _to_uint8(predicted)
        rows += [_to_uint8(clip), np.concatenate([_to_uint8(clip[:1]), fake])]
        reals.append(real)
        fakes.append(fake)
    path = save_image(out / "predictions.png", image_grid(rows))
    return {
        "predictions": path,
        "prediction_psnr_db": psnr(np.concatenate(reals), np.concatenate(fakes)),
    }
