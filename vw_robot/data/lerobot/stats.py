"""LeRobot's feature statistics (``meta/stats.json`` and the episodes' ``stats/...`` columns):
per episode, and aggregated over episodes as LeRobot's ``aggregate_stats`` does."""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # written as q01, q10, q50, q90, q99


def feature_stats(array: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's per-feature stats of (N,) or (N, D) values: shape (1,) or (D,) each."""
    values = array.reshape(len(array), -1)  # (N, D)
    as_float = values.astype(np.float64)
    stats = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": as_float.mean(axis=0),
        "std": as_float.std(axis=0),
        "count": np.array([len(values)]),
    }
    for q, value in zip(QUANTILES, np.quantile(as_float, QUANTILES, axis=0), strict=True):
        stats[f"q{round(q * 100):02d}"] = value
    return stats


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of (N, H, W, 3) uint8 frames in [0, 1], shape (3, 1, 1); count N."""
    stats = feature_stats(frames.reshape(-1, 3))  # over the (N*H*W, 3) pixels
    scaled = {k: (v / 255.0).reshape(3, 1, 1) for k, v in stats.items() if k != "count"}
    return {**scaled, "count": np.array([len(frames)])}  # LeRobot counts images, not pixels


def aggregate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset stats from episode stats, as LeRobot's aggregate_stats combines them: weighted
    mean, pooled variance, extreme min/max, summed count, count-weighted quantiles."""
    counts = np.array([p["count"][0] for p in parts], np.float64)
    weights = counts / counts.sum()
    shape = parts[0]["mean"].shape
    w = weights.reshape(-1, *([1] * len(shape)))
    means = np.stack([p["mean"] for p in parts])
    mean = (w * means).sum(axis=0)
    variance = (w * (np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2)).sum(axis=0)
    out = {
        "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
        "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(counts.sum())]),
    }
    for name in parts[0]:
        if name.startswith("q"):
            out[name] = (w * np.stack([p[name] for p in parts])).sum(axis=0)
    return out
