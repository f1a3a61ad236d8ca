"""The VideoWorld policy, and the behaviour-cloning and no-LDM baselines, rebuilt from one
checkpoint.

Each control step of :class:`VideoWorldPolicy` (docs/models.md): tokenize the current frame,
append it to the context, sample the H latent codes restricted to the code vocabulary (KV
cache: only the new ids are computed; with past codes hidden and absolute positions, only at
the steps the head plans, see :meth:`VideoWorldBatch._observe`); when the action queue is
empty, map frame + codes to an action chunk and queue its first ``execute`` actions. The
context advances every env step (the transformer was trained on consecutive frames), whatever
the execution interval. Frames are never decoded to act; :meth:`plan_frames` decodes the
latest plan for a person to see.

:class:`NoLDMPolicy` is the ablation without latent codes: when the action queue is empty, the
code-free transformer predicts the next frame's tokens from the recent frames, the tokenizer
decodes them, and the head acts from the current and the predicted frame.

Batched control: ``policy.make_batch(n)`` gives n rows that share the networks,
each with its own context, KV-cache row and action queue; one ``select_actions`` call
tokenizes the rows' frames together, decodes their codes together (contexts of different
lengths left-padded, :func:`~vw_robot.models.transformer.pad_left`) and runs the head once
for the rows whose queues are empty. ``reset``/``select_action`` are a batch of one row, so
one code path acts for one env or for many; a row acts as it would alone up to the float
rounding of the batched matmuls.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from vw_robot import checkpoint as ckpt
from vw_robot.device import resolve_device
from vw_robot.envs import make_env
from vw_robot.envs.rendering import ViewLayout
from vw_robot.errors import UserError
from vw_robot.models.registry import load_model
from vw_robot.models.transformer import KVCache, pad_left
from vw_robot.policies.base import RowErrors

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
    """Shared machinery: the models, env checks, and the single-env API, which is a batch of
    one row (:meth:`make_batch`): one code path acts for one env or for many."""

    batch_class: type[ChunkBatch]  # set below, once the batch classes exist

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
        self._single: ChunkBatch | None = None  # the one row behind reset/select_action

    @property
    def camera(self) -> str | None:
        """The camera whose frames it was trained on (None: not recorded, e.g. imported data)."""
        return (self.info.model_config.get("env") or {}).get("camera")

    @property
    def view(self) -> ViewLayout | None:
        """The view its frames showed in training (None where the camera was not recorded)."""
        camera = self.camera
        return None if camera is None else ViewLayout.of(camera, self.image_size)

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The ``make_env`` arguments of the env it was trained for: image size and camera."""
        kwargs: dict[str, Any] = {"image_size": self.image_size}
        if self.camera is not None:
            kwargs["camera"] = self.camera
        return kwargs

    def make_env(self, task_id: str, **kwargs: Any) -> Any:
        """The env this policy expects for ``task_id``: :func:`vw_robot.envs.make_env` with its
        image size and camera (``kwargs`` adds others: ``seed``, ``max_episode_steps``, ...)."""
        self.check_task(task_id)
        clash = sorted(set(kwargs) & set(self.env_kwargs))
        if clash:
            raise UserError(
                f"make_env({task_id!r}, {', '.join(f'{k}=...' for k in clash)}): the policy "
                f"sets these to the view it was trained on ({self.env_kwargs}); leave them out."
            )
        return make_env(task_id, **self.env_kwargs, **kwargs)

    def check_view(self, view: Any) -> None:
        """Refuse frames of another view than the one it was trained on, naming both.

        Args:
            view: what the env says its frames show (``info["view"]``, e.g.
                ``"front+top@64px"``, or a :class:`ViewLayout`).
        """
        trained = self.view
        if trained is None:
            return
        given = view if isinstance(view, ViewLayout) else ViewLayout.parse(view)
        if given != trained:
            raise PolicyMismatchError(
                f"{self.info.path}: trained on frames of {trained.describe()}; this env's "
                f"frames show {given.describe()}. Build the env with policy.make_env(task_id) "
                f"(or make_env(task_id, image_size={trained.image_size}, "
                f"camera={trained.camera!r}))."
            )

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

    def make_batch(self, size: int) -> ChunkBatch:
        """A batch of ``size`` rows that share this policy's networks (batched evaluation:
        one forward per step for every env); each row has its own context, KV-cache row and
        action queue (see :class:`vw_robot.policies.base.BatchPolicy`)."""
        return self.batch_class(self, size)

    def reset(
        self,
        *,
        task_id: str,
        action_space: Any = None,
        seed: int | None = None,
        view: Any = None,
    ) -> None:
        """Start an episode of ``task_id``: clears the action queue and the context.
        ``view`` (the env's ``info["view"]``), if given, is checked now; the ``info`` passed to
        :meth:`select_action` is checked at every step."""
        if self._single is None:
            self._single = self.make_batch(1)
        self._single.reset(0, task_id=task_id, action_space=action_space, seed=seed, view=view)

    def select_action(
        self, obs: dict[str, np.ndarray], info: dict[str, Any] | None = None
    ) -> np.ndarray:
        if self._single is None or self._single.task(0) is None:
            raise RuntimeError("select_action called before reset(task_id=...).")
        try:
            return self._single.select_actions([obs], [info], [0])[0]
        except RowErrors as exc:
            raise exc.errors[0] from None


class ChunkBatch:
    """Rows of a learned policy acting together (behaviour cloning: frame -> action chunk).

    Per row: the task, the action queue (or the chunks being ensembled) and, in subclasses,
    the context. Every call acts for the rows given in one batched forward; the head's
    inputs are gathered in :meth:`_head_inputs` and the head runs only in :meth:`_head`, the
    one place a plan becomes an action chunk.
    """

    def __init__(self, policy: _ChunkPolicy, size: int) -> None:
        if size < 1:
            raise ValueError(f"size={size} must be >= 1.")
        self.policy = policy
        self.size = size
        self._task: list[int | None] = [None] * size
        self._queue: list[deque[np.ndarray]] = [deque() for _ in range(size)]
        # Temporal ensembling: (step planned at, (k, A) chunk) per row, and the row's step.
        self._chunks: list[deque[tuple[int, np.ndarray]]] = [deque() for _ in range(size)]
        self._step = [0] * size

    def task(self, row: int) -> int | None:
        """The task index row ``row`` acts in (None before its first reset)."""
        return self._task[row]

    def reset(
        self,
        row: int,
        *,
        task_id: str,
        action_space: Any = None,
        seed: int | None = None,
        view: Any = None,
    ) -> None:
        """Start an episode of ``task_id`` in ``row``: clears its queue and its context
        (``view``: the env's ``info["view"]``, checked if given)."""
        self.policy.check_task(task_id, action_space)
        if view is not None:
            self.policy.check_view(view)
        self._task[row] = self.policy.task_ids.index(task_id)
        self._queue[row].clear()
        self._chunks[row].clear()
        self._step[row] = 0
        self._reset_row(row)

    @torch.no_grad()
    def select_actions(
        self,
        obs: Sequence[dict[str, np.ndarray]],
        infos: Sequence[dict[str, Any] | None] | None = None,
        rows: Sequence[int] | None = None,
    ) -> np.ndarray:
        """One action per row given, (R, A) float32 (rows default to 0..len(obs)-1).

        Rows whose observation cannot be read (no image, another size, another view than
        the one trained on as ``info["view"]`` says, no proprio state) fail alone: the others
        act, then :class:`RowErrors` names the failures.
        """
        rows = list(range(len(obs))) if rows is None else list(rows)
        if len(rows) != len(obs) or len(set(rows)) != len(rows):
            raise ValueError(f"rows {rows} must be distinct, one per observation ({len(obs)}).")
        unset = [row for row in rows if self._task[row] is None]
        if unset:
            raise RuntimeError(f"select_actions before reset(row, task_id=...) of rows {unset}.")
        errors: dict[int, BaseException] = {}
        good: list[int] = []
        infos = [None] * len(obs) if infos is None else infos
        for i, (row, o, info) in enumerate(zip(rows, obs, infos, strict=True)):
            try:
                self._check_obs(o)
                if info is not None and info.get("view") is not None:
                    self.policy.check_view(info["view"])
            except PolicyMismatchError as exc:
                errors[row] = exc
            else:
                good.append(i)
        actions = self._act([rows[i] for i in good], [obs[i] for i in good]) if good else None
        if errors:
            acted = {rows[i]: actions[j] for j, i in enumerate(good)}
            raise RowErrors(errors, acted)
        return actions

    def _act(self, rows: list[int], obs: list[dict[str, np.ndarray]]) -> np.ndarray:
        """Observe, plan where needed and pop one action per row; (R, A) float32."""
        policy = self.policy
        frames = torch.cat([_frame_tensor(o, policy.pixels_key, policy.image_size) for o in obs])
        frames = frames.to(policy.device)  # (R, 3, S, S) uint8
        inputs = self._head_inputs(rows, obs)
        planning = [i for i, row in enumerate(rows) if policy.ensemble or not self._queue[row]]
        codes = self._observe(rows, frames, planning)  # (R, H) or None
        if policy.ensemble is not None:
            chunks = self._plan(rows, frames, codes, inputs).cpu().numpy()  # (R, k, A)
            acted = [self._ensembled(row, chunk) for row, chunk in zip(rows, chunks, strict=True)]
            return np.stack(acted)
        if planning:
            if len(planning) < len(rows):
                index = torch.tensor(planning, device=policy.device)
                frames, codes = frames[index], None if codes is None else codes[index]
                inputs = {key: value[index] for key, value in inputs.items()}
            planned = [rows[i] for i in planning]
            chunks = self._plan(planned, frames, codes, inputs).cpu().numpy()  # (R', k, A)
            for row, chunk in zip(planned, chunks, strict=True):
                self._queue[row].extend(chunk[: policy.execute])
        return np.stack([self._queue[row].popleft() for row in rows]).astype(np.float32)

    def _ensembled(self, row: int, chunk: np.ndarray) -> np.ndarray:
        """ACT: keep row's chunk (k, A) planned now; average what the live chunks say now."""
        step = self._step[row]
        self._step[row] += 1
        chunks = self._chunks[row]
        chunks.append((step, chunk))
        while chunks[0][0] + len(chunks[0][1]) <= step:
            chunks.popleft()
        predictions = [planned[step - start] for start, planned in chunks]
        return ensemble_action(predictions, self.policy.ensemble).astype(np.float32)

    def _check_obs(self, obs: dict[str, np.ndarray]) -> None:
        """Raise PolicyMismatchError for an observation this policy cannot read."""
        _frame_tensor(obs, self.policy.pixels_key, self.policy.image_size)
        if self.policy.head.config.state_dim:
            _state_tensor(obs, self.policy.head.config.state_dim)

    def _head_inputs(
        self, rows: list[int], obs: list[dict[str, np.ndarray]]
    ) -> dict[str, torch.Tensor]:
        """The rows' task indices (R,) and proprio states (R, D), for a head trained on them."""
        config, device, inputs = self.policy.head.config, self.policy.device, {}
        if config.num_tasks:
            inputs["task"] = torch.tensor([self._task[row] for row in rows], device=device)
        if config.state_dim:
            states = [_state_tensor(o, config.state_dim) for o in obs]
            inputs["state"] = torch.cat(states).to(device)  # (R, D)
        return inputs

    def _reset_row(self, row: int) -> None:
        """Forget ``row``'s context."""

    def _observe(
        self, rows: list[int], frames: torch.Tensor, planning: list[int]
    ) -> torch.Tensor | None:
        """Take in the rows' current frames (every step); the codes the head needs, or None.
        ``planning``: the indices into ``rows`` of the rows the head plans for at this step."""
        return None

    def _plan(
        self,
        rows: list[int],
        frames: torch.Tensor,
        codes: torch.Tensor | None,
        inputs: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The rows' next action chunks (R, k, A) in env units."""
        return self._head(frames, inputs, codes=codes)

    def _head(
        self,
        frames: torch.Tensor,
        inputs: dict[str, torch.Tensor],
        codes: torch.Tensor | None = None,
        next_frames: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Action chunks (R, k, A) from frames (R, 3, S, S), codes (R, H) or predicted next
        frames (R, 3, S, S), and :meth:`_head_inputs`."""
        if next_frames is None:
            return self.policy.head.predict(frames, codes, **inputs)
        return self.policy.head.predict(frames, codes, next_frames=next_frames, **inputs)


class BCPolicy(_ChunkPolicy):
    """Behaviour cloning: frame -> action chunk, no generator."""

    name = "bc"
    batch_class = ChunkBatch


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


class _GeneratorBatch(ChunkBatch):
    """Rows that decode with the transformer: one KV cache, row r for row r's env."""

    policy: _GeneratorPolicy

    def __init__(self, policy: _GeneratorPolicy, size: int) -> None:
        super().__init__(policy, size)
        self._cache = policy.transformer.make_cache(size) if policy.use_cache else None
        self._tokens: list[list[torch.Tensor]] = [[] for _ in range(size)]  # (N,) per timestep

    def _reset_row(self, row: int) -> None:
        self._tokens[row].clear()
        if self._cache is not None:
            self._cache.reset_rows([row])

    @contextmanager
    def _cache_of(self, rows: list[int]) -> Iterator[KVCache | None]:
        """The cache to decode ``rows`` with: the whole cache when every row decodes in order,
        else their rows copied out and copied back afterwards."""
        if self._cache is None or rows == list(range(self.size)):
            yield self._cache
            return
        part = _take_rows(self._cache, rows)
        yield part
        _put_rows(self._cache, part, rows)

    def _task_tensor(self, rows: list[int]) -> torch.Tensor:
        return torch.tensor([self._task[row] for row in rows], device=self.policy.device)


class VideoWorldBatch(_GeneratorBatch):
    """VideoWorld rows: tokenize every frame, sample z_t every step (only to plan where no
    later step reads it), head on frame + codes."""

    policy: VideoWorldPolicy
    # Sample codes only for the rows that plan where no later step reads them (see _observe);
    # False samples at every step (tests compare the two).
    sample_only_to_plan = True

    def __init__(self, policy: VideoWorldPolicy, size: int) -> None:
        super().__init__(policy, size)
        self._codes: list[list[torch.Tensor]] = [[] for _ in range(size)]  # (H,) per timestep
        # The frame and codes of each row's latest sampling (what plan_frames decodes).
        self._planned: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * size

    def _reset_row(self, row: int) -> None:
        super()._reset_row(row)
        self._codes[row].clear()
        self._planned[row] = None

    def _observe(self, rows: list[int], frames: torch.Tensor, planning: list[int]) -> torch.Tensor:
        """Append x_t to each row's context and sample z_t — at every env step, even while a
        chunk is being executed, because the transformer was trained on consecutive frames.

        Except where no one would read them: with past codes hidden and absolute positions,
        a sampled code never enters a later context (it is laid out as HIDDEN) and a context
        is computed afresh whenever it is decoded (the cache keeps only an unchanged prefix,
        which equals recomputing it), so codes are sampled only for the rows the head plans
        for now — the same codes as at every step, at a quarter of the transformer's work
        with chunks of four. (With rotary positions the sliding cache must take in every
        timestep as it comes to compute what training computed, so those rows decode every
        step.)
        """
        policy, layout, window = self.policy, self.policy.layout, self.policy.window
        tokens = policy.tokenizer.encode(frames).flatten(1)  # (R, N)
        lazy = (
            self.sample_only_to_plan
            and layout.hide_past_codes
            and policy.transformer.config.positions == "absolute"
        )
        decode = planning if lazy else list(range(len(rows)))
        contexts = []
        for i, row in enumerate(rows):
            self._tokens[row].append(tokens[i])
            # Keep at most `window` timesteps: the current one plus window-1 of history.
            del self._tokens[row][:-window]
        for i in decode:
            row = rows[i]
            history = len(self._tokens[row]) - 1
            past = self._codes[row][-history:] if history else []
            tok = torch.stack(self._tokens[row])[None]  # (1, t, N)
            cod = (
                torch.stack(past)[None]
                if past
                else torch.zeros(1, 0, layout.horizon, dtype=torch.int64, device=policy.device)
            )  # (1, t-1, H)
            contexts.append(layout.build_context(tok, cod)[0])  # (L_r,) ending [x_t][SEP]
        # Rows not decoded get placeholder codes: hidden from every later context, never planned on.
        codes = torch.zeros(len(rows), layout.horizon, dtype=torch.int64, device=policy.device)
        if decode:
            ids, lengths = pad_left(contexts)  # (R', L), (R',): rows at different points
            decoding = [rows[i] for i in decode]
            with self._cache_of(decoding) as cache:
                codes[decode] = policy.transformer.generate_codes(
                    ids,
                    self._task_tensor(decoding),
                    cache=cache,
                    lengths=lengths,
                    temperature=policy.temperature,
                )  # (R', H)
        for i, row in enumerate(rows):
            self._codes[row].append(codes[i])
            del self._codes[row][:-window]
        for i in decode:
            self._planned[rows[i]] = (frames[i : i + 1], codes[i])
        return codes

    @torch.no_grad()
    def plan_frames(self, row: int = 0) -> np.ndarray:
        """Decode ``row``'s latest plan: (H+1, S, S, 3) uint8, the current frame then the H
        frames the latent dynamics model rebuilds from it and the sampled codes."""
        if self._planned[row] is None:
            raise RuntimeError("No plan yet: call select_action first.")
        frame, codes = self._planned[row]
        future = self.policy.ldm().decode(frame, codes[None])[0]  # (H, 3, S, S)
        frames = torch.cat([frame.float() / 255, future])
        pixels = (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu()  # (H+1, 3, S, S)
        return pixels.permute(0, 2, 3, 1).numpy()


class VideoWorldPolicy(_GeneratorPolicy):
    """Tokenizer + transformer (latent codes) + action head, with a KV cache."""

    name = "videoworld"
    batch_class = VideoWorldBatch

    def __init__(self, head: Any, info: ckpt.CheckpointInfo, **kwargs: Any) -> None:
        super().__init__(head, info, **kwargs)
        self._ldm_path = ckpt.parent_checkpoint(info, "ldm")
        self._ldm: torch.nn.Module | None = None
        self.window = self.transformer.config.max_timesteps

    def ldm(self) -> torch.nn.Module:
        """The latent dynamics model, loaded on first use: control never needs it."""
        if self._ldm is None:
            self._ldm = load_model(self._ldm_path, "ldm")[0].to(self.device)
        return self._ldm

    def plan_frames(self) -> np.ndarray:
        """Decode the latest plan: (H+1, S, S, 3) uint8, the current frame then the H frames
        the latent dynamics model rebuilds from it and the sampled codes."""
        if self._single is None:
            raise RuntimeError("No plan yet: call select_action first.")
        return self._single.plan_frames(0)


class NoLDMBatch(_GeneratorBatch):
    """No-LDM rows: tokenize every frame; to plan, predict the next frame and act on both."""

    policy: NoLDMPolicy

    def __init__(self, policy: NoLDMPolicy, size: int) -> None:
        super().__init__(policy, size)
        self._predicted: list[torch.Tensor | None] = [None] * size  # (1, 3, S, S) float

    def _reset_row(self, row: int) -> None:
        super()._reset_row(row)
        self._predicted[row] = None

    def _observe(self, rows: list[int], frames: torch.Tensor, planning: list[int]) -> None:
        tokens = self.policy.tokenizer.encode(frames).flatten(1)  # (R, N)
        for i, row in enumerate(rows):
            self._tokens[row].append(tokens[i])
            del self._tokens[row][: -self.policy.window]
        return None

    def _plan(
        self,
        rows: list[int],
        frames: torch.Tensor,
        codes: torch.Tensor | None,
        inputs: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        policy, layout = self.policy, self.policy.layout
        contexts = [
            layout.build_context(torch.stack(self._tokens[row])[None], None)[0] for row in rows
        ]  # (L_r,) whole timesteps each
        ids, lengths = pad_left(contexts)  # (R, L), (R,)
        with self._cache_of(rows) as cache:
            tokens = policy.transformer.generate_frame_tokens(
                ids,
                self._task_tensor(rows),
                cache=cache,
                lengths=lengths,
                temperature=policy.temperature,
            )  # (R, N)
        grid = policy.tokenizer.config.image_size // policy.tokenizer.config.down_factor
        predicted = policy.tokenizer.decode(tokens.view(len(rows), grid, grid))  # (R, 3, S, S)
        for i, row in enumerate(rows):
            self._predicted[row] = predicted[i : i + 1]
        return self._head(frames, inputs, next_frames=predicted)

    def plan_frames(self, row: int = 0) -> np.ndarray:
        """(1, S, S, 3) uint8: the next frame the transformer predicted at ``row``'s last
        plan."""
        predicted = self._predicted[row]
        if predicted is None:
            raise RuntimeError("No plan yet: call select_action first.")
        pixels = (predicted.clamp(0, 1) * 255).round().to(torch.uint8).cpu()  # (1, 3, S, S)
        return pixels.permute(0, 2, 3, 1).numpy()


class NoLDMPolicy(_GeneratorPolicy):
    """The no-LDM ablation: tokenizer + code-free transformer (next frame) + head."""

    name = "noldm"
    batch_class = NoLDMBatch

    def __init__(self, head: Any, info: ckpt.CheckpointInfo, **kwargs: Any) -> None:
        super().__init__(head, info, **kwargs)
        # The predicted frame fills the last timestep of the transformer's window.
        self.window = self.transformer.config.max_timesteps - 1

    def plan_frames(self) -> np.ndarray:
        """(1, S, S, 3) uint8: the next frame the transformer predicted at the last plan."""
        if self._single is None:
            raise RuntimeError("No plan yet: call select_action first.")
        return self._single.plan_frames(0)


def _take_rows(cache: KVCache, rows: list[int]) -> KVCache:
    """A cache holding a copy of ``rows``' entries (for decoding only some rows)."""
    index = torch.tensor(rows, dtype=torch.long, device=cache.ids.device)
    layers, _, heads, capacity, head_dim = cache.keys.shape
    part = KVCache(
        layers,
        len(rows),
        heads,
        head_dim,
        capacity=1,
        device=cache.ids.device,
        dtype=cache.keys.dtype,
        slide=cache.slide,
    )
    part.keys = cache.keys.index_select(1, index)  # (layers, R, heads, capacity, hd)
    part.values = cache.values.index_select(1, index)
    part.ids, part.positions, part.valid = (
        t.index_select(0, index) for t in (cache.ids, cache.positions, cache.valid)
    )  # (R, capacity) each
    part.capacity, part.length = capacity, cache.length
    part.task = None if cache.task is None else cache.task.index_select(0, index)
    if part.length and not bool(part.valid[:, : part.length].any()):
        part.reset()
    return part


def _put_rows(cache: KVCache, part: KVCache, rows: list[int]) -> None:
    """Write ``part`` (from :func:`_take_rows`, then decoded) back into ``rows`` of ``cache``.

    Rows need not share columns (each row's entries are its valid columns), so the rows take
    ``part``'s first columns and the other rows keep theirs.
    """
    index = torch.tensor(rows, dtype=torch.long, device=cache.ids.device)
    length = part.length
    cache.ensure_capacity(length)
    cache.valid[index] = False
    if length:
        cache.keys[:, index, :, :length] = part.keys[:, :, :, :length]
        cache.values[:, index, :, :length] = part.values[:, :, :, :length]
        cache.ids[index, :length] = part.ids[:, :length]
        cache.positions[index, :length] = part.positions[:, :length]
        cache.valid[index, :length] = part.valid[:, :length]
        if cache.task is None:
            cache.task = torch.zeros(cache.batch_size, dtype=torch.long, device=index.device)
        cache.task[index] = part.task
    cache.length = max(cache.length, length)
    if not bool(cache.valid[:, : cache.length].any()):
        cache.reset()


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


def _check_view_trunks(head: Any, info: ckpt.CheckpointInfo) -> None:
    """A head with a trunk per view reads frames of as many views as its camera records."""
    camera = (info.model_config.get("env") or {}).get("camera")
    if not getattr(head.config, "view_trunks", False) or camera is None:
        return
    views = len(ViewLayout.of(camera, head.config.image_size).cameras)
    if views != head.config.num_views:
        raise ckpt.CheckpointError(
            f"{info.path}: its head has a trunk for each of num_views={head.config.num_views} "
            f"views, but was trained on camera={camera!r} frames ({views} view(s)); the "
            "checkpoint's config was changed by hand: retrain it"
        )


def load_policy(path: str | os.PathLike[str], **kwargs: Any) -> _ChunkPolicy:
    """Rebuild a learned policy from a checkpoint, run folder or exported policy folder
    (``.../videoworld-25pct_seed0``, ``.../bc-100pct_seed0``, ``vw-robot export-policy``'s
    ``out``); the checkpoint names everything it was built on, relative to itself.

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
    _check_view_trunks(head, info)
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
