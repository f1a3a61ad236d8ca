"""A frozen trunk's features, cached on disk (``cache_features``): a head whose trunk is a
frozen copy of a pretrained encoder (the LDM's or the tokenizer's) computes that trunk's output
for every labelled frame once, and trains its conditioning and MLP on the cached output
instead of running the trunk at every step. The policy still runs the trunk on the frames it
sees, so it acts with exactly the network it trained.

``<cache>/features/<key>/<episode_id>.npy`` holds an episode's (F, C, g, g) float32 outputs;
``key`` hashes the trunk's weights and input scaling, so features of another trunk are never
read.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from vw_robot.data import format as fmt
from vw_robot.data.dataset import FrameCache
from vw_robot.data.sequences import ActionChunkDataset
from vw_robot.io import atomic_write

FEATURES_DIR = "features"


def trunk_key(head: torch.nn.Module) -> str:
    """The cache key of an ActionHead's trunk: its weights and how it reads pixels."""
    digest = hashlib.sha256(f"unit_inputs={head.config.unit_inputs}".encode())
    for name, tensor in sorted(head.trunk.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def cached_trunk_outputs(
    root: str | os.PathLike[str],
    episode_ids: list[str],
    head: torch.nn.Module,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 256,
) -> list[np.ndarray]:
    """The head's trunk output for every frame of each episode, (F, C, g, g) float32 per
    episode in the order given, computed on a miss and cached (see module doc)."""
    folder = fmt.cache_root(root, cache_dir) / FEATURES_DIR / trunk_key(head)
    frames_cache = FrameCache(root, cache_dir)
    before = next(head.parameters()).device
    out: list[np.ndarray] = []
    for episode_id in episode_ids:
        path = folder / f"{episode_id}.npy"
        if path.exists():
            out.append(np.load(path, allow_pickle=False))
            continue
        head.to(device)
        frames = frames_cache.frames(fmt.read_meta(root, episode_id))  # (F, S, S, 3) uint8
        chunks = []
        for start in range(0, len(frames), batch_size):
            batch = torch.from_numpy(np.array(frames[start : start + batch_size]))
            pixels = batch.permute(0, 3, 1, 2).to(device)  # (b, 3, S, S)
            chunks.append(head.trunk_output(pixels).float().cpu())  # (b, C, g, g)
        array = torch.cat(chunks).numpy()
        atomic_write(path, lambda f, a=array: np.save(f, a))
        out.append(array)
    head.to(before)
    return out


class CachedTrunkDataset(Dataset):
    """An :class:`~vw_robot.data.sequences.ActionChunkDataset` whose items carry the frozen
    trunk's output for their frame, ``trunk_output`` (C, g, g) float32, in place of
    ``frames``; everything else (actions, codes, state, task) is the wrapped dataset's."""

    def __init__(self, data: ActionChunkDataset, outputs: list[np.ndarray]) -> None:
        self.data = data
        starts = np.cumsum([0] + [len(o) for o in outputs])  # first row of each episode
        rows = [starts[number] + t for number, t, _ in data.items]
        self.rows = torch.tensor(rows, dtype=torch.int64)  # (N,)
        self.outputs = torch.from_numpy(np.concatenate(outputs))  # (F_all, C, g, g)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        item = self.data[k]
        del item["frames"]
        return {**item, "trunk_output": self.outputs[self.rows[k]]}

    def batch(self, indices: list[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """As ``ActionChunkDataset.batch``, with ``trunk_output`` (B, C, g, g) for frames."""
        out = self.data.batch(indices)
        del out["frames"]
        out["trunk_output"] = self.outputs[self.rows[torch.as_tensor(indices)]]
        return out


def cached_dataset(
    data: ActionChunkDataset,
    episode_ids: list[str],
    head: torch.nn.Module,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
) -> CachedTrunkDataset:
    """``data`` (made of ``episode_ids``) served with its frames' cached trunk outputs,
    computed on a miss."""
    episodes = sorted(episode_ids)  # the order ActionChunkDataset lists them in
    outputs = cached_trunk_outputs(data.root, episodes, head, device=device, cache_dir=cache_dir)
    return CachedTrunkDataset(data, outputs)
