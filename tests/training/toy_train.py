"""A toy regression trained by vw_robot's loop; run by the tests in-process, as a subprocess
that gets killed, and under torchrun with 2 gloo processes.

Usage:
    python tests/training/toy_train.py RUN_DIR [STEPS] [SLEEP_PER_STEP]
    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/training/toy_train.py RUN_DIR
"""

from __future__ import annotations

import sys
import time

import torch
from torch.utils.data import Dataset

from vw_robot.training.loop import OptimConfig, train


class ToyData(Dataset):
    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[k], "y": self.y[k]}


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1)
    )


def run(run_dir: str, steps: int = 12, sleep: float = 0.0, stop_at: int | None = None) -> dict:
    def loss_fn(model, batch):
        if sleep:
            time.sleep(sleep)
        loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return loss, {}

    optim = OptimConfig(
        steps=steps,
        batch_size=8,
        lr=1e-2,
        warmup_steps=2,
        log_every=1,
        checkpoint_every=3,
        device="cpu",
    )
    return train(
        stage="toy",
        model=make_model(),
        dataset=ToyData(),
        loss_fn=loss_fn,
        optim=optim,
        run_dir=run_dir,
        model_config={"hidden": 16},
        config_yaml="toy: true\n",
        stop_at=stop_at,
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    result = run(
        args[0], int(args[1]) if len(args) > 1 else 12, float(args[2]) if len(args) > 2 else 0.0
    )
    print("done", result["step"], result["last_loss"])
