"""The VideoWorld policy, and the behaviour-cloning and no-LDM baselines, rebuilt from one
checkpoint.

Each control step of :class:`VideoWorldPolicy` (DESIGN §1.5): tokenize the current frame,
append it to the context, sample the H latent codes restricted to the code vocabulary (KV
cache: only the new ids are computed); when the action queue is empty, map frame + codes to
an action chunk and queue its first ``execute`` actions. The context advances every env step
(the transformer was trained on consecutive frames), whatever the execution interval. Frames
are never decoded to act; :meth:`plan_frames` decodes the latest plan for a person to see.

:class:`NoLDMPolicy` is the ablation without latent codes: when the action queue is empty, the
code-free transformer predicts the next frame's tokens from the recent frames, the tokenizer
decodes them, and the head acts from the current and the predicted frame.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import numpy as np
import torch

from vw_robot import checkpoint as ckpt
from vw_robot.device import resolve_device
from vw_robot.errors import UserError
from vw_robot.models.registry import load_model

# The checkpoint stages that are policies (each with its class in POLICY_CLASSES below).
POLICY_STAGES = ("action_head", "bc", "noldm_head")


class PolicyMismatchError(UserError):
    """A checkpoint does not fit the env it is asked to drive; both sides are named."""


def _frame_tensor(obs: dict[str, np.ndarray], key: str, size: int) -> torch.Tensor:
    """The observation's RGB image as (1, 3, S, S) uint8, checked against the model's size."""
    if key not in obs:
        raise PolicyMismatchError(f"observation has no {key!r} image (keys: {sorted(obs)}).")
    image = np.asarray(obs[key])
    if image.ndim != 3 or image.shape[-1] != 3:
        raise PolicyMismatchError(f"observation {key!r} should be (H, W, 3), got {image.shape}.")
    if image.shape[:2] != (size, size):
        raise PolicyMismatchError(
            f"observation {key!r} is {image.shape[0]}x{image.shape[1]} but the policy was "
            f"trained on {size}x{size} frames; make the env with image_size={size}."
        )
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]


def _state_tensor(obs: dict[str, np.ndarray], size: int) -> torch.Tensor:
    """The observation's proprio state as (1, D) float32, checked against the head's size."""
    if "state" not in obs:
        raise PolicyMismatchError(
            f"the policy reads a {size}-D proprio 'state', the observation has none (keys: "
            f"{sorted(obs)})."
        )
    state = np.asarray(obs["state"], dtype=np.float32)
    if state.shape != (size,):
        raise PolicyMismatchError(
            f"the policy was trained on a {size}-D proprio state; the env's is {state.shape}."
        )
    return torch.from_numpy(state)[None]


def ensemble_action(predictions: list[np.ndarray], weight: float) -> np.ndarray:
    """ACT's temporal ensembling: the actions that successive chunks predicted for the same
    step, oldest first, averaged with weights exp(-weight * i) (i = 0 the oldest chunk).

    Args:
        predictions: (A,) actions for the current step, oldest chunk first.
        weight: m >= 0; larger trusts older predictions more; 0 is a plain mean.
    """
    weights = np.exp(-weight * np.arange(len(predictions)))  # (n,)
    return (weights[:, None] * np.stack(predictions)).sum(0) / weights.sum()


class _ChunkPolicy:
    """Shared per-episode machinery: task, action queue (or temporal ensemble), env checks."""

    def __init__(
        self,
        head: Any,
        info: ckpt.CheckpointInfo,
        execute: int | None,
        pixels_key: str,
        device: str = "cpu",
        ensemble: float | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.head = head.eval().to(self.device)
        self.info = info
        self.task_ids: list[str] = list(info.model_config["task_ids"])
        self.image_size = int(head.config.image_size)
        self.execute = execute or head.config.chunk
        if not 1 <= self.execute <= head.config.chunk:
            raise UserError(f"execute={execute} must be in [1, chunk={head.config.chunk}].")
        self.pixels_key = pixels_key
        # Temporal ensembling (ACT): plan every step and average what the recent chunks
        # predicted for it; None executes `execute` actions of each chunk open-loop.
        if ensemble is not None and ensemble < 0:
            raise UserError(f"ensemble={ensemble} must be >= 0 (or None: off).")
        self.ensemble = ensemble
        self._queue: deque[np.ndarray] = deque()
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (step planned at, (k, A))
        self._step = 0
        self._task: int | None = None

    def check_task(self, task_id: str, action_space: Any = None) -> None:
        """Refuse a task this checkpoint was not trained for, or actions of another size."""
        if task_id not in self.task_ids:
            raise PolicyMismatchError(
                f"{self.info.path}: trained for tasks {', '.join(self.task_ids)}; "
                f"not for {task_id!r}."
            )
        if action_space is not None and tuple(action_space.shape) != (self.head.config.action_dim,):
            raise PolicyMismatchError(
                f"{self.info.path}: predicts {self.head.config.action_dim}-D actions, the env's "
                f"action space is {tuple(action_space.shape)}."
            )

    def reset(self, *, task_id: str, action_space: Any = None, seed: int | None = None) -> None:
        """Start an episode of ``task_id``: clears the action queue and the context."""
        self.check_task(task_id, action_space)
        self._task = self.task_ids.index(task_id)
        self._queue.clear()
        self._chunks.clear()
        self._step = 0
        self._reset_context()

    def _reset_context(self) -> None:
        pass

    def select_action(
        self, obs: dict[str, np.ndarray], info: dict[str, Any] | None = None
    ) -> np.ndarray:
        if self._task is None:
            raise RuntimeError("select_action called before reset(task_id=...).")
        frame = _frame_tensor(obs, self.pixels_key, self.image_size).to(self.device)
        codes = self._observe(frame)
        inputs = self._head_inputs(obs)
        if self.ensemble is not None:
            step, self._step = self._step, self._step + 1
            self._chunks.append((step, self._plan(frame, codes, inputs)[0].cpu().numpy()))
            while self._chunks[0][0] + len(self._chunks[0][1]) <= step:
                self._chunks.popleft()
            predictions = [chunk[step - start] for start, chunk in self._chunks]
            return ensemble_action(predictions, self.ensemble).astype(np.float32)
        if not self._queue:
            chunk = self._plan(frame, codes, inputs)[0].cpu().numpy()  # (k, A)
            self._queue.extend(chunk[: self.execute])
        return self._queue.popleft().astype(np.float32)

    def _head_inputs(self, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """The task index and proprio state, for a head trained with them."""
        config, inputs = self.head.config, {}
        if config.num_tasks:
            inputs["task"] = torch.tensor([self._task], device=self.device)
        if config.state_dim:
            inputs["state"] = _state_tensor(obs, config.state_dim).to(self.device)
        return inputs

    def _observe(self, frame: torch.Tensor) -> torch.Tensor | None:
        """Take in the current frame (every step); return the codes the head needs."""
        return None

    def _plan(
        self, frame: torch.Tensor, codes: torch.Tensor | None, inputs: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The next action chunk (1, k, A) in env units (``inputs``: task, state)."""
        return self.head.predict(frame, codes, **inputs)


class BCPolicy(_ChunkPolicy):
    """Behaviour cloning: frame -> action chunk, no generator."""

    name = "bc"


class _GeneratorPolicy(_ChunkPolicy):
    """A head that acts on what the tokenizer + transformer predict (KV-cached decoding)."""

    def __init__(
        self,
        head: Any,
        info: ckpt.CheckpointInfo,
        *,
        execute: int | None = None,
        temperature: float = 0.0,
        pixels_key: str = "pixels",
        use_cache: bool = True,
        device: str = "cpu",
        ensemble: float | None = None,
    ) -> None:
        super().__init__(head, info, execute, pixels_key, device, ensemble)
        self.transformer = _parent(info, "transformer").to(self.device)
        self.tokenizer = _parent(info, "tokenizer").to(self.device)
        self.layout = self.transformer.config.layout
        self.temperature = temperature
        self.use_cache = use_cache
        self._cache = self.transformer.make_cache(1) if use_cache else None


class VideoWorldPolicy(_GeneratorPolicy):
    """Tokenizer + transformer (latent codes) + action head, with a KV cache."""

    name = "videoworld"

    def __init__(self, head: Any, info: ckpt.CheckpointInfo, **kwargs: Any) -> None:
        super().__init__(head, info, **kwargs)
        self._ldm_path = ckpt.parent_checkpoint(info, "ldm")
        self._ldm = None
        self.window = self.transformer.config.max_timesteps
        self._tokens: list[torch.Tensor] = []  # (N,) per timestep in the context
        self._codes: list[torch.Tensor] = []  # (H,) sampled per timestep
        self._frames: list[torch.Tensor] = []

    def _reset_context(self) -> None:
        self._tokens.clear()
        self._codes.clear()
        self._frames.clear()
        if self._cache is not None:
            self._cache.reset()

    @torch.no_grad()
    def _observe(self, frame: torch.Tensor) -> torch.Tensor:
        """Append x_t to the context and sample z_t — at every env step, even while a chunk is
        being executed, because the transformer was trained on consecutive frames."""
        tokens = self.tokenizer.encode(frame).flatten(1)[0]  # (N,)
        self._tokens.append(tokens)
        self._frames.append(frame)
        # Keep at most `window` timesteps: the current one plus window-1 of history.
        del self._tokens[: -self.window], self._frames[: -self.window]
        history = len(self._tokens) - 1
        codes_context = self._codes[-history:] if history else []
        tok = torch.stack(self._tokens)[None]  # (1, t, N)
        cod = (
            torch.stack(codes_context)[None]
            if codes_context
            else torch.zeros(1, 0, self.layout.horizon, dtype=torch.int64, device=self.device)
        )  # (1, t-1, H)
        context = self.layout.build_context(tok, cod)  # (1, L) ending [x_t][SEP]
        task = torch.tensor([self._task], device=self.device)
        codes = self.transformer.generate_codes(
            context, task, cache=self._cache, temperature=self.temperature
        )  # (1, H)
        self._codes.append(codes[0])
        del self._codes[: -self.window]
        return codes

    @torch.no_grad()
    def plan_frames(self) -> np.ndarray:
        """Decode the latest plan: (H+1, S, S, 3) uint8, the current frame then the H frames
        the latent dynamics model rebuilds from it and the sampled codes."""
        if not self._codes:
            raise RuntimeError("No plan yet: call select_action first.")
        if self._ldm is None:  # loaded on first use: control never needs it
            self._ldm = load_model(self._ldm_path, "ldm")[0].to(self.device)
        frame = self._frames[-1]
        future = self._ldm.decode(frame, self._codes[-1][None])[0]  # (H, 3, S, S)
        frames = torch.cat([frame.float() / 255, future])
        pixels = (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu()  # (H+1, 3, S, S)
        return pixels.permute(0, 2, 3, 1).numpy()


class NoLDMPolicy(_GeneratorPolicy):
    """The no-LDM ablation: tokenizer + code-free transformer (next frame) + head."""

    name = "noldm"

    def __init__(self, head: Any, info: ckpt.CheckpointInfo, **kwargs: Any) -> None:
        super().__init__(head, info, **kwargs)
        # The predicted frame fills the last timestep of the transformer's window.
        self.window = self.transformer.config.max_timesteps - 1
        self._tokens: list[torch.Tensor] = []  # (N,) per timestep in the context
        self._predicted: torch.Tensor | None = None  # (1, 3, S, S) float, the last prediction

    def _reset_context(self) -> None:
        self._tokens.clear()
        self._predicted = None
        if self._cache is not None:
            self._cache.reset()

    @torch.no_grad()
    def _observe(self, frame: torch.Tensor) -> None:
        self._tokens.append(self.tokenizer.encode(frame).flatten(1)[0])
        del self._tokens[: -self.window]
        return None

    @torch.no_grad()
    def _plan(
        self, frame: torch.Tensor, codes: torch.Tensor | None, inputs: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        context = self.layout.build_context(torch.stack(self._tokens)[None], None)  # (1, L)
        tokens = self.transformer.generate_frame_tokens(
            context,
            torch.tensor([self._task], device=self.device),
            cache=self._cache,
            temperature=self.temperature,
        )  # (1, N)
        grid = self.tokenizer.config.image_size // self.tokenizer.config.down_factor
        self._predicted = self.tokenizer.decode(tokens.view(1, grid, grid))  # (1, 3, S, S)
        return self.head.predict(frame, next_frames=self._predicted, **inputs)

    def plan_frames(self) -> np.ndarray:
        """(1, S, S, 3) uint8: the next frame the transformer predicted at the last plan."""
        if self._predicted is None:
            raise RuntimeError("No plan yet: call select_action first.")
        pixels = (self._predicted.clamp(0, 1) * 255).round().to(torch.uint8).cpu()  # (1, 3, S, S)
        return pixels.permute(0, 2, 3, 1).numpy()


def _parent(info: ckpt.CheckpointInfo, stage: str) -> torch.nn.Module:
    """The model of the ``stage`` checkpoint a policy checkpoint was built on."""
    return load_model(ckpt.parent_checkpoint(info, stage), stage)[0]


def policy_info(path: str | os.PathLike[str]) -> ckpt.CheckpointInfo:
    """Read a policy checkpoint's info (nothing loaded) and check that its parents exist.

    Raises:
        CheckpointError: not a policy checkpoint, or a missing parent (with the command that
            produces it).
    """
    info = ckpt.read_info(path)
    if info.stage not in POLICY_STAGES:
        raise ckpt.CheckpointError(
            f"{info.path}: is a {info.stage!r} checkpoint; a policy is an 'action_head' (or "
            "'bc', 'noldm_head') checkpoint — `vw-robot train stage=action_head` makes one."
        )
    for stage in info.parents:
        ckpt.parent_checkpoint(info, stage)
    return info


def load_policy(path: str | os.PathLike[str], **kwargs: Any) -> _ChunkPolicy:
    """Rebuild a learned policy from a checkpoint, run folder or exported policy folder
    (``.../action_head``, ``.../bc``, ``vw-robot export-policy``'s ``out``); the checkpoint
    names everything it was built on, relative to itself.

    Args:
        path: the policy checkpoint.
        **kwargs: ``execute``, ``temperature``, ``pixels_key``, ``use_cache``, ``device``,
            ``ensemble`` (BC takes only ``execute``, ``pixels_key``, ``device``, ``ensemble``).

    Raises:
        CheckpointError: not a policy checkpoint, or a missing parent (with the command that
            produces it).
    """
    info = policy_info(path)
    head, _ = load_model(info.path, info.stage)
    policy_class = POLICY_CLASSES[info.stage]
    if policy_class is BCPolicy:
        kwargs.pop("temperature", None)
        kwargs.pop("use_cache", None)
        return BCPolicy(
            head,
            info,
            kwargs.pop("execute", None),
            kwargs.pop("pixels_key", "pixels"),
            kwargs.pop("device", "cpu"),
            kwargs.pop("ensemble", None),
        )
    return policy_class(head, info, **kwargs)


POLICY_CLASSES: dict[str, type[_ChunkPolicy]] = {
    "action_head": VideoWorldPolicy,
    "bc": BCPolicy,
    "noldm_head": NoLDMPolicy,
}
