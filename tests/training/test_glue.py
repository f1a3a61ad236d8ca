"""The glue between stages that no model test covers: the action head's
normaliser and masked chunk loss, ActionChunkDataset's timestep alignment, batched
``sample_codes`` against one-at-a-time and direct greedy decoding, and the training layout
against the context the policy builds.

Tiny random CPU models and a tiny dataset written with ``vw_robot.data.format``; actions,
states, tokens and codes are distinctive per (episode, timestep) so that any off-by-one or
cross-episode read shows as a wrong number.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt
from vw_robot.data.sequences import ActionChunkDataset, export_sequences, sequences_dir
from vw_robot.models.action_head import ActionHead, ActionHeadConfig
from vw_robot.models.augment import random_shift
from vw_robot.models.registry import load_model
from vw_robot.models.sequence_layout import SequenceLayout
from vw_robot.models.transformer import TransformerConfig, VideoTransformer
from vw_robot.training.codes import sample_codes
from vw_robot.training.loop import OptimConfig, read_metrics, train

SIZE, FPS, ACTION_DIM, STATE_DIM = 8, 10, 2, 3
# Episode number -> (id, task, frames). ep2 is long so that one history length gathers more
# than sample_codes' batch of 64 rows.
EPISODES = {0: ("ep0", "toy/a", 6), 1: ("ep1", "toy/b", 4), 2: ("ep2", "toy/a", 70)}
TASK_IDS = ["toy/a", "toy/b"]
# Tokens are the tokenizer's 2x2 grid; codes span H=2 timesteps.
LAYOUT = SequenceLayout(num_frame_tokens=4, frame_vocab=256, horizon=2, code_vocab=512)
HAND_KEY = "hand"  # exported sequences written by hand, distinctive per (episode, t)
CODE_OFFSET = 1000  # sampled codes = exported + this, so the two are told apart


def _action(e: int, t: int) -> np.ndarray:
    return np.array([1000 * e + t, -(1000 * e + t)], np.float32)  # (A,)


def _hand_tokens(e: int, count: int, rng: np.random.Generator) -> np.ndarray:
    tokens = rng.integers(0, LAYOUT.frame_vocab, (count, LAYOUT.num_frame_tokens))
    tokens[:, 0] = 80 * e + np.arange(count)  # the first token names (e, t)
    return tokens.astype(np.int16)  # (F, N)


def _hand_codes(e: int, count: int) -> np.ndarray:
    # z_t[j] = 100 e + t + j: unique per (e, t) by its first entry, in the code range.
    t = np.arange(count)[:, None]
    return (100 * e + t + np.arange(LAYOUT.horizon)[None]).astype(np.int16)  # (F, H)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The dataset (frames carry their own t and e in pixel (0, 0)) and what was written."""
    root = tmp_path_factory.mktemp("glue") / "ds"
    rng = np.random.default_rng(0)
    fmt.init_dataset(root, image_size=SIZE, fps=FPS, codec="lossless")
    frames, tokens, codes = {}, {}, {}
    for e, (episode_id, task, count) in EPISODES.items():
        pixels = rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)  # (F, S, S, 3)
        pixels[:, 0, 0, 0] = np.arange(count)  # read back by the stub LDM below
        pixels[:, 0, 0, 1] = e
        t = np.arange(count)[:, None].astype(np.float32)
        steps = {
            "actions": np.stack([_action(e, i) for i in range(count - 1)]),  # (F-1, A)
            "state": 1000 * e + t + np.arange(STATE_DIM, dtype=np.float32) / 10,  # (F, D)
        }
        meta = fmt.EpisodeMeta(
            episode_id=episode_id,
            task_id=task,
            num_frames=0,
            image_size=0,
            fps=FPS,
            has_actions=False,
            source="expert",
            codec="lossless",
            video_sha256="",
            action_low=[-1e5] * ACTION_DIM,  # room for the distinctive action values
            action_high=[1e5] * ACTION_DIM,
        )
        fmt.write_episode(root, meta, pixels, steps)
        frames[e], tokens[e], codes[e] = pixels, _hand_tokens(e, count, rng), _hand_codes(e, count)
        folder = sequences_dir(root, HAND_KEY)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / f"{episode_id}.npz",
            tokens=tokens[e],
            codes=codes[e],
            codes_valid=np.arange(count) + LAYOUT.horizon <= count - 1,
        )
    fmt.write_manifest(root)
    return SimpleNamespace(root=root, frames=frames, tokens=tokens, codes=codes)


@pytest.fixture
def dataset_copy(data: SimpleNamespace, tmp_path: Path) -> Path:
    """A copy of the dataset for a test that writes caches into it."""
    return Path(shutil.copytree(data.root, tmp_path / "ds"))


def _episode_ids() -> list[str]:
    return [episode_id for episode_id, _, _ in EPISODES.values()]


# ---------------------------------------------------------------- action head normaliser


def _head(chunk: int = 2, **overrides) -> ActionHead:
    config = ActionHeadConfig(
        image_size=SIZE,
        down_factor=2,
        channels=[4],
        num_res_blocks=0,
        feature_dim=4,
        horizon=LAYOUT.horizon,
        code_levels=[4, 4],
        code_embed_dim=4,
        hidden=8,
        action_dim=ACTION_DIM,
        chunk=chunk,
        **overrides,
    )
    return ActionHead(config).eval()


def _pin_output(head: ActionHead, normalised: torch.Tensor) -> None:
    """Make the head output ``normalised`` (k, A) whatever its inputs (last layer: bias only)."""
    last = head.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(normalised.flatten())


def _inputs(head: ActionHead, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (batch, 3, SIZE, SIZE), generator=gen, dtype=torch.uint8)
    codes = torch.randint(0, head.config.code_vocab, (batch, head.config.horizon), generator=gen)
    return frames, codes


def test_normaliser_maps_normalised_outputs_to_env_units_and_back() -> None:
    head = _head()
    # Powers of two: every step of the round trip is exact in float32.
    mean, std = torch.tensor([0.25, -0.5]), torch.tensor([0.5, 0.25])
    head.set_normalizer(mean, std)
    env = torch.tensor([[0.75, -0.25], [-0.5, -1.0]])  # (k, A) actions in env units
    normalised = torch.tensor([[1.0, 1.0], [-1.5, -2.0]])  # (env - mean) / std, by hand
    _pin_output(head, normalised)
    frames, codes = _inputs(head)
    assert torch.equal(head(frames, codes), normalised.expand(2, -1, -1))
    assert torch.equal(head.predict(frames, codes), env.expand(2, -1, -1))  # env units
    # chunk_loss compares in normalised units: the env actions are a perfect prediction...
    mask = torch.ones(2, 2, dtype=torch.bool)
    assert head.chunk_loss(head(frames, codes), env.expand(2, -1, -1), mask).item() == 0.0
    assert head.loss(frames, codes, env.expand(2, -1, -1), mask).item() == 0.0
    # ...and an error of 0.5 in every normalised entry costs 0.25, not 0.5 * std squared.
    off = env + torch.tensor([0.25, 0.125])  # 0.5 std in each dimension
    assert head.chunk_loss(head(frames, codes), off.expand(2, -1, -1), mask).item() == 0.25
    # predict clips to the action space: 3 std above the mean of dimension 0 is 1.75 -> 1.
    _pin_output(head, torch.tensor([[3.0, 0.0], [0.0, -8.0]]))
    assert torch.equal(head.predict(frames, codes)[0], torch.tensor([[1.0, -0.5], [0.25, -1.0]]))


def test_normaliser_floors_a_zero_std() -> None:
    head = _head()
    head.set_normalizer(torch.tensor([0.5, 0.0]), torch.tensor([0.0, 2.0]))
    assert head.action_std.tolist() == [pytest.approx(1e-3), 2.0]
    assert torch.isfinite(
        head.chunk_loss(torch.zeros(1, 2, 2), torch.ones(1, 2, 2), torch.ones(1, 2).bool())
    )


def test_normaliser_statistics_travel_with_the_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    head = _head()
    mean, std = torch.randn(ACTION_DIM) / 3, torch.rand(ACTION_DIM) + 0.1  # not round numbers
    head.set_normalizer(mean, std)
    model_config = {**dataclasses.asdict(head.config), "task_ids": TASK_IDS, "env": {}}
    path = ckpt.save_checkpoint(
        tmp_path / "run",
        stage="action_head",
        step=1,
        model=head,
        model_config=model_config,
        config_yaml="{}\n",
    )
    loaded, _ = load_model(path, "action_head")
    assert torch.equal(loaded.action_mean, mean) and torch.equal(loaded.action_std, std)
    state, back = head.state_dict(), loaded.state_dict()
    assert state.keys() == back.keys()
    assert all(torch.equal(state[k], back[k]) for k in state)  # bit-exact
    frames, codes = _inputs(head, batch=3)
    assert torch.equal(loaded.predict(frames, codes), head.predict(frames, codes))
    # A fresh head has the identity normaliser: the statistics came from the file.
    assert not torch.equal(_head().action_mean, loaded.action_mean)


# ---------------------------------------------------------------- chunk loss mask


def test_chunk_loss_ignores_rows_past_the_episode_end() -> None:
    head = _head(chunk=3)
    head.set_normalizer(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 1.0]))
    predicted = torch.zeros(2, 3, 2, requires_grad=True)  # (B, k, A) normalised
    actions = torch.tensor(
        [
            [[2.0, 1.0], [4.0, 3.0], [9.0, 9.0]],
            [[0.0, 0.0], [9.0, 9.0], [9.0, 9.0]],
        ]
    )
    mask = torch.tensor([[True, True, False], [True, False, False]])
    # Normalised targets of the real rows: (1, 0), (2, 2), (0, -1); per-row MSE over A:
    # 0.5, 4, 0.5; three real rows.
    loss = head.chunk_loss(predicted, actions, mask)
    assert loss.item() == pytest.approx(5.0 / 3.0)
    loss.backward()
    assert torch.all(predicted.grad[~mask] == 0) and torch.all(predicted.grad[mask].any(-1))
    changed = actions.clone()
    changed[~mask] = torch.tensor([-7.0, 1e6])  # whatever lies past the end
    assert head.chunk_loss(predicted, changed, mask).item() == loss.item()
    none = torch.zeros_like(mask)
    assert head.chunk_loss(predicted, actions, none).item() == 0.0


# ---------------------------------------------------------------- ActionChunkDataset


def _chunk_dataset(data: SimpleNamespace, chunk: int = 3, **kwargs) -> ActionChunkDataset:
    return ActionChunkDataset(
        data.root, HAND_KEY, chunk, _episode_ids(), task_ids=TASK_IDS, **kwargs
    )


def _which(item: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(episode, t) named by the item's first action."""
    first = int(item["actions"][0, 0])
    return first // 1000, first % 1000


def test_action_chunk_items_hold_their_own_timestep(data: SimpleNamespace) -> None:
    chunk = 3
    items = _chunk_dataset(data, chunk, sampled_fraction=0.0)
    seen = set()
    for k in range(len(items)):
        item = items[k]
        e, t = _which(item)
        _, task, count = EPISODES[e]
        seen.add((e, t))
        assert torch.equal(item["frames"], torch.from_numpy(data.frames[e][t]).permute(2, 0, 1))
        # Actions t..t+k-1, masked (and zero, never another episode's) past the last action.
        real = np.arange(t, t + chunk) < count - 1
        assert item["action_mask"].tolist() == real.tolist()
        for row, step in enumerate(range(t, t + chunk)):
            want = _action(e, step) if real[row] else np.zeros(ACTION_DIM, np.float32)
            assert item["actions"][row].tolist() == want.tolist(), (e, t, row)
        assert item["state"][0].item() == 1000 * e + t
        assert item["codes"].tolist() == data.codes[e][t].tolist()  # the exported z_t
        assert item["codes"].dtype == torch.int64
        assert item["task_index"].item() == TASK_IDS.index(task)
    # Every frame that has an action, once; never the last frame.
    assert seen == {(e, t) for e, (_, _, count) in EPISODES.items() for t in range(count - 1)}
    assert len(items) == len(seen)


def test_action_chunk_sampled_items_hold_the_sampled_codes_of_their_timestep(
    data: SimpleNamespace,
) -> None:
    # ep1 has no sampled codes (e.g. its sampling was skipped): it always serves exported ones.
    sampled = {EPISODES[e][0]: data.codes[e] + CODE_OFFSET for e in (0, 2)}
    items = _chunk_dataset(data, sampled=sampled, sampled_fraction=0.5, seed=3)
    kinds = {"exported": 0, "sampled": 0}
    for k in range(len(items)):
        item = items[k]
        e, t = _which(item)
        codes = item["codes"].tolist()
        if codes == (data.codes[e][t] + CODE_OFFSET).tolist():
            kinds["sampled"] += 1
            assert e != 1
        else:
            assert codes == data.codes[e][t].tolist(), (e, t)
            kinds["exported"] += 1
    assert kinds["sampled"] > 10 and kinds["exported"] > 10  # about half of 76 items each
    always = _chunk_dataset(data, sampled=sampled, sampled_fraction=1.0)
    for k in range(len(always)):
        e, t = _which(always[k])
        offset = 0 if e == 1 else CODE_OFFSET
        assert always[k]["codes"].tolist() == (data.codes[e][t] + offset).tolist()


def test_action_chunk_next_tokens_are_the_next_frames(data: SimpleNamespace) -> None:
    items = _chunk_dataset(data, next_tokens=True, sampled_fraction=0.0)
    sampled = {EPISODES[e][0]: data.tokens[e] // 2 for e in EPISODES}  # (F, N), distinctive
    predicted = _chunk_dataset(data, next_tokens=True, sampled=sampled, sampled_fraction=1.0)
    for k in range(len(items)):
        e, t = _which(items[k])
        assert "codes" not in items[k]
        assert items[k]["next_tokens"].tolist() == data.tokens[e][t + 1].tolist()
        assert predicted[k]["next_tokens"].tolist() == (data.tokens[e][t] // 2).tolist()


@pytest.mark.parametrize(
    "variant", ["bc", "codes", "sampled", "next_tokens", "sampled_next_tokens"]
)
def test_a_batch_is_what_collating_its_items_gives(data: SimpleNamespace, variant: str) -> None:
    """ActionChunkDataset.batch (the training loop's path) serves exactly the items
    __getitem__ serves (checked against the episodes above), collated: same keys, values,
    dtypes, shapes and memory layout, in any index order, repeats included."""
    sampled_codes = {EPISODES[e][0]: data.codes[e] + CODE_OFFSET for e in (0, 2)}
    sampled_tokens = {EPISODES[e][0]: data.tokens[e] // 2 for e in (0, 2)}
    kwargs = {
        "bc": {"key": None},
        "codes": {"sampled_fraction": 0.0},
        "sampled": {"sampled": sampled_codes, "sampled_fraction": 0.5, "seed": 3},
        "next_tokens": {"next_tokens": True, "sampled_fraction": 0.0},
        "sampled_next_tokens": {"next_tokens": True, "sampled": sampled_tokens, "seed": 1},
    }[variant]
    key = kwargs.pop("key", HAND_KEY)
    items = ActionChunkDataset(data.root, key, 3, _episode_ids(), task_ids=TASK_IDS, **kwargs)
    rng = np.random.default_rng(0)
    for indices in (
        rng.permutation(len(items))[:17].tolist(),
        [len(items) - 1, 0, 0, 5],
        list(range(len(items))),
    ):
        want = default_collate([items[k] for k in indices])
        got = items.batch(indices)
        assert sorted(got) == sorted(want)
        for name, value in want.items():
            assert got[name].dtype == value.dtype, name
            assert got[name].shape == value.shape, name
            assert got[name].stride() == value.stride(), name
            assert torch.equal(got[name], value), name


class _ItemsOnly(torch.utils.data.Dataset):
    """The dataset without its batch method: the training loop falls back to a DataLoader."""

    def __init__(self, dataset: ActionChunkDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.dataset[k]


def test_training_on_batches_reproduces_training_through_the_dataloader(
    data: SimpleNamespace, tmp_path: Path
) -> None:
    """Same losses and weights, step for step, with random shifts drawing from the global
    RNG: the batched path serves the same batches and draws nothing else."""
    optim = OptimConfig(steps=4, batch_size=8, warmup_steps=1, log_every=1, checkpoint_every=4)

    def loss_fn(m: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        frames = random_shift(batch["frames"], 2)
        return m.loss(frames, None, batch["actions"], batch["action_mask"]), {}

    runs = []
    for name, dataset in (
        ("batched", _chunk_dataset(data, 2)),
        ("items", _ItemsOnly(_chunk_dataset(data, 2))),
    ):
        torch.manual_seed(0)
        head = _head(use_codes=False)
        train(
            stage="action_head",
            model=head,
            dataset=dataset,
            loss_fn=loss_fn,
            optim=optim,
            run_dir=tmp_path / name,
            model_config={},
            config_yaml="",
        )
        runs.append((read_metrics(tmp_path / name), head.state_dict()))
    (metrics, weights), (metrics_items, weights_items) = runs
    assert [r["loss"] for r in metrics] == [r["loss"] for r in metrics_items]
    assert all(torch.equal(weights[k], weights_items[k]) for k in weights)


class _StubTokenizer(nn.Module):
    """(B, 3, S, S) uint8 -> (B, 2, 2) tokens: channel 0 of the top-left 2x2 pixels."""

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return frames[:, 0, :2, :2].long()


class _StubLDM(nn.Module):
    """Codes of a clip x_t..x_{t+H} (B, H+1, 3, S, S) = the frame indices its pixel (0, 0)
    carries for x_{t+1}..x_{t+H} (the data fixture writes t there)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(horizon=LAYOUT.horizon)

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        return clips[:, 1:, 0, 0, 0].long()  # (B, H)


def test_exported_codes_reach_the_head_at_their_timestep(
    data: SimpleNamespace, dataset_copy: Path
) -> None:
    export_sequences(dataset_copy, _StubTokenizer(), _StubLDM(), "stub")
    items = ActionChunkDataset(
        dataset_copy, "stub", 2, _episode_ids(), task_ids=TASK_IDS, sampled_fraction=0.0
    )
    for k in range(len(items)):
        e, t = _which(items[k])
        last = EPISODES[e][2] - 1
        # z_t encodes x_t..x_{t+H}, padded with the episode's own last frame.
        want = [min(t + j, last) for j in range(1, LAYOUT.horizon + 1)]
        assert items[k]["codes"].tolist() == want, (e, t)


# ---------------------------------------------------------------- sample_codes


def _transformer(
    horizon: int,
    positions: str,
    max_timesteps: int = 3,
    hide_past_codes: bool = False,
    seed: int = 0,
    num_layers: int = 1,
) -> VideoTransformer:
    layout = dataclasses.replace(LAYOUT, horizon=horizon, hide_past_codes=hide_past_codes)
    config = TransformerConfig(
        layout=layout,
        num_layers=num_layers,
        num_heads=2,
        dim=16,
        max_timesteps=max_timesteps,
        num_tasks=len(TASK_IDS),
        positions=positions,
    )
    torch.manual_seed(seed)
    model = VideoTransformer(config).eval()
    with torch.no_grad():  # GPT's 0.02 init gives near-flat logits; spread them out
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    return model


def _info(path: Path, sha_letter: str) -> ckpt.CheckpointInfo:
    """A stand-in checkpoint info; sample_codes caches its results under the checksum."""
    return ckpt.CheckpointInfo(path, "transformer", 1, "VideoTransformer", {}, {}, sha_letter * 64)


def _context(
    data: SimpleNamespace,
    e: int,
    t: int,
    window: int,
    own: np.ndarray | None,
    layout: SequenceLayout = LAYOUT,
) -> torch.Tensor:
    """The context sample_codes' docstring describes: up to ``window`` timesteps ending at t,
    with the codes sampled before t (``own``, (F, H); None: the no-LDM ablation) for the past
    ones — the policy's context, not the exported codes of the real clip."""
    history = min(t, window - 1)
    tokens = torch.from_numpy(data.tokens[e][t - history : t + 1].astype(np.int64))[None]
    if own is None:
        return dataclasses.replace(LAYOUT, horizon=0).build_context(tokens, None)
    past = torch.from_numpy(own[t - history : t].astype(np.int64))[None]
    return layout.build_context(tokens, past)  # (1, L)


@pytest.mark.parametrize("positions", ["absolute", "rope"])
def test_sample_codes_batched_equals_one_at_a_time(
    data: SimpleNamespace, dataset_copy: Path, positions: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _transformer(LAYOUT.horizon, positions)
    root = str(dataset_copy)
    batched = sample_codes(
        root, HAND_KEY, _episode_ids(), model, _info(dataset_copy, "a"), TASK_IDS
    )
    alone = {}
    for episode_id in _episode_ids():  # another checksum: nothing is read from batched's cache
        alone.update(
            sample_codes(root, HAND_KEY, [episode_id], model, _info(dataset_copy, "b"), TASK_IDS)
        )
    assert batched.keys() == alone.keys() == set(_episode_ids())
    for e, (episode_id, task, count) in EPISODES.items():
        assert batched[episode_id].shape == (count, LAYOUT.horizon)
        assert np.array_equal(batched[episode_id], alone[episode_id]), episode_id
        picks = [0, 1, 2, count - 1] if e != 2 else [0, 1, 2, 40, 63, 64, 69]
        for t in picks:
            context = _context(data, e, t, model.config.max_timesteps, batched[episode_id])
            direct = model.generate_codes(context, torch.tensor([TASK_IDS.index(task)]))
            assert batched[episode_id][t].tolist() == direct[0].tolist(), (episode_id, t)
    # Not all the same code (a degenerate model would make the comparisons vacuous).
    assert len(np.unique(np.concatenate(list(batched.values())))) > 5
    # The cache answers a second call without the transformer.
    monkeypatch.setattr(model, "generate_codes", _refuse)
    again = sample_codes(root, HAND_KEY, _episode_ids(), model, _info(dataset_copy, "a"), TASK_IDS)
    assert all(np.array_equal(again[k], batched[k]) for k in batched)


def test_a_rope_model_s_codes_are_sampled_along_the_sliding_cache_the_policy_acts_with(
    data: SimpleNamespace, dataset_copy: Path
) -> None:
    # Two layers: a kept entry's deeper keys saw timesteps that have left the window, so the
    # policy's sliding cache computes the banded forward, not fresh windows; the head must
    # train on the codes the policy will sample.
    model = _transformer(LAYOUT.horizon, "rope", num_layers=2)
    window = model.config.max_timesteps
    sampled = sample_codes(
        str(dataset_copy), HAND_KEY, _episode_ids(), model, _info(dataset_copy, "d"), TASK_IDS
    )
    differs = 0
    for e, (episode_id, task, count) in EPISODES.items():
        cache, index = model.make_cache(1), torch.tensor([TASK_IDS.index(task)])
        for t in range(count):
            context = _context(data, e, t, window, sampled[episode_id])
            acting = model.generate_codes(context, index, cache=cache)  # the policy's way
            assert sampled[episode_id][t].tolist() == acting[0].tolist(), (episode_id, t)
            differs += model.generate_codes(context, index)[0].tolist() != acting[0].tolist()
    assert differs > 0  # fresh windows would have given other codes somewhere


def _refuse(*args, **kwargs):
    raise AssertionError("sampled again instead of reading the cache")


@pytest.mark.parametrize("positions", ["absolute", "rope"])
def test_sample_next_tokens_batched_equals_one_at_a_time(
    data: SimpleNamespace, dataset_copy: Path, positions: str
) -> None:
    model = _transformer(0, positions)  # the no-LDM ablation
    root = str(dataset_copy)
    batched = sample_codes(
        root, HAND_KEY, _episode_ids(), model, _info(dataset_copy, "c"), TASK_IDS
    )
    window = model.config.max_timesteps - 1  # the predicted frame fills the last timestep
    for e, (episode_id, task, count) in EPISODES.items():
        alone = sample_codes(
            root, HAND_KEY, [episode_id], model, _info(dataset_copy, "d"), TASK_IDS
        )
        assert batched[episode_id].shape == (count, LAYOUT.num_frame_tokens)
        assert np.array_equal(batched[episode_id], alone[episode_id]), episode_id
        for t in [0, 1, count - 1] + ([64, 65] if e == 2 else []):
            context = _context(data, e, t, window, None)
            direct = model.generate_frame_tokens(context, torch.tensor([TASK_IDS.index(task)]))
            assert batched[episode_id][t].tolist() == direct[0].tolist(), (episode_id, t)
    assert len(np.unique(np.concatenate(list(batched.values())))) > 5


def test_sample_codes_follows_the_cache_root_of_a_read_only_dataset(
    dataset_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode: (
            False if Path(p) in (dataset_copy, dataset_copy / "cache") else real_access(p, mode)
        ),
    )
    export_sequences(dataset_copy, _StubTokenizer(), _StubLDM(), "stub")  # to the per-user cache
    assert fmt.cache_root(dataset_copy).is_relative_to(tmp_path / "xdg")
    model = _transformer(LAYOUT.horizon, "rope")
    sampled = sample_codes(
        str(dataset_copy), "stub", ["ep0"], model, _info(dataset_copy, "e"), TASK_IDS
    )
    assert sampled["ep0"].shape == (EPISODES[0][2], LAYOUT.horizon)
    assert not (dataset_copy / fmt.CACHE_DIR / "sampled_codes").exists()


# ---------------------------------------------------------------- training layout = control


def test_layout_of_a_hand_made_window() -> None:
    layout = SequenceLayout(num_frame_tokens=2, frame_vocab=10, horizon=2, code_vocab=5)
    tokens = torch.tensor([[[1, 2], [3, 4]]])  # (1, T=2, N=2)
    codes = torch.tensor([[[0, 4], [2, 3]]])  # (1, T, H)
    sep = 15  # frame_vocab + code_vocab
    assert layout.build(tokens, codes).tolist() == [[1, 2, sep, 10, 14, 3, 4, sep, 12, 13]]
    assert layout.build_context(tokens, codes[:, :-1]).tolist() == [[1, 2, sep, 10, 14, 3, 4, sep]]
    # The first timestep of an episode: no past codes at all.
    assert layout.build_context(tokens[:, :1], codes[:, :0]).tolist() == [[1, 2, sep]]


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_training_window_cut_at_the_last_sep_is_the_policy_context(steps: int) -> None:
    gen = torch.Generator().manual_seed(steps)
    tokens = torch.randint(
        0, LAYOUT.frame_vocab, (2, steps, LAYOUT.num_frame_tokens), generator=gen
    )
    codes = torch.randint(0, LAYOUT.code_vocab, (2, steps, LAYOUT.horizon), generator=gen)
    window = LAYOUT.build(tokens, codes)  # (B, T * step_len), as the transformer stage trains
    cut = window[:, : steps * LAYOUT.step_len - LAYOUT.horizon]
    context = LAYOUT.build_context(tokens, codes[:, :-1])  # as the policy feeds before z_t
    assert torch.equal(cut, context)
    assert bool((context[:, -1] == LAYOUT.sep_id).all())
    # No-LDM ablation: whole timesteps on both sides.
    frames_only = dataclasses.replace(LAYOUT, horizon=0)
    assert torch.equal(frames_only.build(tokens, None), frames_only.build_context(tokens, None))


@pytest.mark.parametrize("positions", ["absolute", "rope"])
def test_training_forward_predicts_what_generation_samples(positions: str) -> None:
    """Teacher-forced on the training window, the model's greedy codes (next-frame tokens
    without an LDM) after the last SEP are the ones generation samples from the context."""
    gen = torch.Generator().manual_seed(5)
    steps, batch = 3, 4
    tokens = torch.randint(0, LAYOUT.frame_vocab, (batch, steps, 4), generator=gen)
    codes = torch.randint(0, LAYOUT.code_vocab, (batch, steps, LAYOUT.horizon), generator=gen)
    task = torch.tensor([0, 1, 1, 0])

    model = _transformer(LAYOUT.horizon, positions, max_timesteps=steps)
    sampled = model.generate_codes(LAYOUT.build_context(tokens, codes[:, :-1]), task)  # (B, H)
    window = LAYOUT.build(tokens, torch.cat([codes[:, :-1], sampled[:, None]], dim=1))
    logits, _ = model(window, task)  # (B, L, V)
    lo, hi = LAYOUT.code_range
    first = steps * LAYOUT.step_len - LAYOUT.horizon - 1  # the last SEP predicts z_t[0]
    greedy = logits[:, first : first + LAYOUT.horizon, lo:hi].argmax(-1)  # (B, H)
    assert torch.equal(greedy, sampled)

    frames_only = dataclasses.replace(LAYOUT, horizon=0)
    model = _transformer(0, positions, max_timesteps=steps)
    context = frames_only.build_context(tokens[:, :-1], None)  # (B, (T-1) * step_len)
    predicted = model.generate_frame_tokens(context, task)  # (B, N)
    logits, _ = model(torch.cat([context, predicted], dim=1), task)
    lo, hi = frames_only.frame_range
    start = context.shape[1] - 1
    greedy = logits[:, start : start + frames_only.num_frame_tokens, lo:hi].argmax(-1)
    assert torch.equal(greedy, predicted)


# ---------------------------------------------------------------- hidden past codes


HIDDEN = dataclasses.replace(LAYOUT, hide_past_codes=True)


def test_hidden_layout_shows_past_codes_as_one_id() -> None:
    layout = SequenceLayout(
        num_frame_tokens=2, frame_vocab=10, horizon=2, code_vocab=5, hide_past_codes=True
    )
    tokens = torch.tensor([[[1, 2], [3, 4]]])  # (1, T=2, N=2)
    codes = torch.tensor([[[0, 4], [2, 3]]])  # (1, T, H)
    sep, hid = 15, 16
    assert layout.vocab_size == 17 and layout.hidden_id == hid
    window = layout.build(tokens, codes)
    assert window.tolist() == [[1, 2, sep, 10, 14, 3, 4, sep, 12, 13]]  # targets: real codes
    # The model reads the earlier timestep's codes as HIDDEN, the last one's as they are.
    assert layout.model_inputs(window).tolist() == [[1, 2, sep, hid, hid, 3, 4, sep, 12, 13]]
    context = [[1, 2, sep, hid, hid, 3, 4, sep]]
    assert layout.build_context(tokens, codes[:, :-1]).tolist() == context
    assert layout.build_context(tokens, None).tolist() == context  # no codes needed
    assert layout.build_context(tokens[:, :1], None).tolist() == [[1, 2, sep]]
    with pytest.raises(ValueError, match="hide_past_codes"):
        SequenceLayout(horizon=0, hide_past_codes=True)


@pytest.mark.parametrize("positions", ["absolute", "rope"])
def test_hidden_training_forward_predicts_what_generation_samples(positions: str) -> None:
    """With hidden past codes the model reads, teacher-forced, what control feeds it, and
    what it samples does not depend on the codes given for the past."""
    gen = torch.Generator().manual_seed(6)
    steps, batch = 3, 4
    tokens = torch.randint(0, LAYOUT.frame_vocab, (batch, steps, 4), generator=gen)
    codes = torch.randint(0, LAYOUT.code_vocab, (batch, steps, LAYOUT.horizon), generator=gen)
    other = torch.randint(0, LAYOUT.code_vocab, (batch, steps, LAYOUT.horizon), generator=gen)
    task = torch.tensor([0, 1, 1, 0])
    model = _transformer(LAYOUT.horizon, positions, max_timesteps=steps, hide_past_codes=True)
    sampled = model.generate_codes(HIDDEN.build_context(tokens, codes[:, :-1]), task)  # (B, H)
    again = model.generate_codes(HIDDEN.build_context(tokens, other[:, :-1]), task)
    assert torch.equal(sampled, again)
    window = HIDDEN.build(tokens, torch.cat([other[:, :-1], sampled[:, None]], dim=1))
    logits, _ = model(HIDDEN.model_inputs(window), task)  # (B, L, V)
    lo, hi = HIDDEN.code_range
    first = steps * HIDDEN.step_len - HIDDEN.horizon - 1
    greedy = logits[:, first : first + HIDDEN.horizon, lo:hi].argmax(-1)  # (B, H)
    assert torch.equal(greedy, sampled)
    # Without hiding, the past codes do change what is sampled (the test can fail).
    plain = _transformer(LAYOUT.horizon, positions, max_timesteps=steps)
    a = plain.generate_codes(LAYOUT.build_context(tokens, codes[:, :-1]), task)
    b = plain.generate_codes(LAYOUT.build_context(tokens, other[:, :-1]), task)
    assert not torch.equal(a, b)


def test_sample_codes_with_hidden_past_codes_reads_the_frames_alone(
    data: SimpleNamespace, dataset_copy: Path
) -> None:
    model = _transformer(LAYOUT.horizon, "rope", hide_past_codes=True, seed=1)
    sampled = sample_codes(
        str(dataset_copy), HAND_KEY, _episode_ids(), model, _info(dataset_copy, "h"), TASK_IDS
    )
    for e, (episode_id, task, count) in EPISODES.items():
        for t in [0, 1, 2, count - 1]:
            history = min(t, model.config.max_timesteps - 1)
            tokens = torch.from_numpy(data.tokens[e][t - history : t + 1].astype(np.int64))
            direct = model.generate_codes(
                HIDDEN.build_context(tokens[None], None), torch.tensor([TASK_IDS.index(task)])
            )
            assert sampled[episode_id][t].tolist() == direct[0].tolist(), (episode_id, t)
    assert len(np.unique(np.concatenate(list(sampled.values())))) > 5
