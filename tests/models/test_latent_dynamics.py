"""Latent dynamics model: causality of the queries, per-code decoding, overfit, save/load."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vw_robot.models.latent_dynamics import (
    LatentDynamicsConfig,
    LatentDynamicsModel,
    query_causal_mask,
    query_frame_mask,
)

HORIZON = 3


def tiny_config(**overrides: object) -> LatentDynamicsConfig:
    fields = {
        "image_size": 16,
        "horizon": HORIZON,
        "down_factor": 4,
        "channels": [8, 16],
        "dim": 32,
        "heads": 2,
        "layers": 2,  # two layers: self-attention must not leak the future either
    }
    fields.update(overrides)
    return LatentDynamicsConfig(**fields)  # type: ignore[arg-type]


def random_clips(batch: int, horizon: int = HORIZON, size: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, horizon + 1, 3, size, size)
    return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)


def moving_squares(
    starts: int, size: int, horizon: int, side: int, speed: int, seed: int
) -> torch.Tensor:
    """(4 * starts, horizon + 1, 3, size, size) uint8 clips on black.

    Each start frame (a random-coloured square) appears four times, moving right, left,
    down and up: x_0 alone cannot tell the future, so only the codes can.
    """
    gen = torch.Generator().manual_seed(seed)
    clips = torch.zeros(4 * starts, horizon + 1, 3, size, size, dtype=torch.uint8)
    travel = speed * horizon
    for k in range(starts):
        colour = torch.randint(64, 256, (3, 1, 1), generator=gen).to(torch.uint8)
        x0, y0 = torch.randint(travel, size - side - travel + 1, (2,), generator=gen).tolist()
        for d, (dx, dy) in enumerate([(1, 0), (-1, 0), (0, 1), (0, -1)]):
            for t in range(horizon + 1):
                x, y = x0 + dx * speed * t, y0 + dy * speed * t
                clips[4 * k + d, t, :, y : y + side, x : x + side] = colour
    return clips


def test_forward_encode_decode_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    model = LatentDynamicsModel(tiny_config()).eval()
    clips = random_clips(2)
    out = model(clips)
    assert out["recon"].shape == (2, HORIZON, 3, 16, 16) and out["recon"].dtype == torch.float32
    assert out["recon"].min() >= 0 and out["recon"].max() <= 1
    codes = out["codes"]
    assert codes.shape == (2, HORIZON) and codes.dtype == torch.int64
    assert model.codebook_size == 1000
    assert ((codes >= 0) & (codes < model.codebook_size)).all()
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert torch.equal(model.encode(clips), codes)
    assert torch.allclose(model.decode(clips[:, 0], codes), out["recon"], atol=1e-6)


def test_wrong_clip_length_rejected() -> None:
    model = LatentDynamicsModel(tiny_config())
    with pytest.raises(ValueError, match="frames must be"):
        model.encode(random_clips(1, horizon=HORIZON + 1))
    with pytest.raises(ValueError, match="codes must be"):
        model.decode(random_clips(1)[:, 0], torch.zeros(1, HORIZON + 1, dtype=torch.int64))


def test_attention_masks_are_causal_and_cumulative() -> None:
    # Two positions per frame, horizon 3: query i reads frames 0..i+1.
    expected = torch.tensor(
        [
            [1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(query_frame_mask(3, 2), expected)
    assert torch.equal(query_causal_mask(3), torch.ones(3, 3, dtype=torch.bool).tril())


@pytest.mark.parametrize("changed", range(HORIZON + 1))
def test_changing_frame_j_leaves_earlier_codes_unchanged(changed: int) -> None:
    """Query i sees frames 0..i+1: a new frame j may move codes i >= j-1, never i < j-1."""
    torch.manual_seed(0)
    model = LatentDynamicsModel(tiny_config()).eval()
    clips = random_clips(2)
    edited = clips.clone()
    edited[:, changed] = random_clips(2, seed=1)[:, changed]
    with torch.no_grad():
        before = model.query_outputs(model.frame_features(clips))  # (B, H, D)
        after = model.query_outputs(model.frame_features(edited))
        codes_before, codes_after = model.encode(clips), model.encode(edited)
    first_affected = max(changed - 1, 0)
    assert torch.equal(before[:, :first_affected], after[:, :first_affected])
    assert torch.equal(codes_before[:, :first_affected], codes_after[:, :first_affected])
    # The query that first sees the new frame does react to it.
    assert not torch.allclose(before[:, first_affected], after[:, first_affected])


def test_query_gradients_respect_causality() -> None:
    torch.manual_seed(0)
    model = LatentDynamicsModel(tiny_config()).eval()
    frames = (random_clips(1).float() / 255).requires_grad_(True)
    outputs = model.query_outputs(model.frame_features(frames))  # (1, H, D)
    # A random read-out, not a plain sum: the outputs are layer-normalised, so their sum is
    # constant and its gradient is only rounding noise (zero on some machines).
    readout = torch.randn(outputs.shape[-1])
    for i in range(HORIZON):
        (grad,) = torch.autograd.grad((outputs[:, i] * readout).sum(), frames, retain_graph=True)
        per_frame = grad.abs().flatten(2).sum(-1)[0]  # (H+1,)
        assert (per_frame[: i + 2] > 0).all(), f"query {i} should see frames 0..{i + 1}"
        assert (per_frame[i + 2 :] == 0).all(), f"query {i} must not see frames > {i + 1}"


def test_frame_features_are_per_frame() -> None:
    torch.manual_seed(0)
    model = LatentDynamicsModel(tiny_config()).eval()
    clips = random_clips(1)
    edited = clips.clone()
    edited[:, 2] = 255 - edited[:, 2]
    with torch.no_grad():
        before, after = model.frame_features(clips), model.frame_features(edited)
    unchanged = [0, 1, 3]
    assert torch.equal(before[:, unchanged], after[:, unchanged])


def test_decoded_frame_i_depends_on_code_i_only() -> None:
    """The decoder's guarantee: reconstruction i is a function of x_0 and codes[:, i]."""
    torch.manual_seed(0)
    model = LatentDynamicsModel(tiny_config()).eval()
    # The output layer starts at zero (an untrained model copies x_0 whatever the codes);
    # give it weights, as training does, so that the codes' paths are visible.
    torch.nn.init.normal_(model.head[-1].weight, std=0.1)
    first = random_clips(2)[:, 0]
    codes = torch.tensor([[3, 500, 999], [0, 42, 777]])
    with torch.no_grad():
        base = model.decode(first, codes)
        for k in range(HORIZON):
            edited = codes.clone()
            edited[:, k] = (edited[:, k] + 123) % model.codebook_size
            frames = model.decode(first, edited)
            others = [i for i in range(HORIZON) if i != k]
            assert torch.allclose(frames[:, others], base[:, others], atol=1e-6, rtol=0)
            assert not torch.allclose(frames[:, k], base[:, k])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"horizon": 0}, "horizon"),
        ({"image_size": 18}, "image_size"),
        ({"down_factor": 3}, "down_factor"),
        ({"channels": [8]}, "channels"),
        ({"dim": 30, "heads": 4}, "dim"),
        ({"layers": 0}, "layers"),
        ({"levels": [8, 1]}, "levels"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_config_errors_name_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key}: "):
        tiny_config(**overrides)


def test_overfits_moving_squares() -> None:
    torch.manual_seed(0)
    horizon = 2
    clips = moving_squares(starts=2, size=16, horizon=horizon, side=8, speed=2, seed=0)
    pixels = clips.float() / 255
    copy_first = (pixels[:, 1:] - pixels[:, :1]).abs().mean().item()
    config = tiny_config(horizon=horizon, down_factor=2, channels=[16], layers=1)
    model = LatentDynamicsModel(config)
    steps, lr = 400, 2e-3
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.1
    )
    start = time.perf_counter()
    initial = None
    for _ in range(steps):
        loss = model(clips)["loss"]
        initial = loss.item() if initial is None else initial
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        out = model(clips)
    final, elapsed = out["loss"].item(), time.perf_counter() - start
    l1 = (out["recon"] - pixels[:, 1:]).abs().mean().item()
    print(
        f"LDM overfit: loss {initial:.4f} -> {final:.4f} in {steps} steps, {elapsed:.1f} s; "
        f"L1 {l1:.4f} (copying x_0: {copy_first:.4f})"
    )
    assert final <= initial / 10
    # Each x_0 moves four ways, so beating "copy x_0" by 2x needs codes that carry motion.
    assert l1 < 0.5 * copy_first
    assert len(torch.unique(out["codes"][:, 0])) > 1


def test_safetensors_round_trip_is_bit_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LatentDynamicsModel(tiny_config()).eval()
    path = tmp_path / "ldm.safetensors"
    save_file(model.state_dict(), str(path))
    torch.manual_seed(1)  # a differently initialised twin, so equality means the load worked
    twin = LatentDynamicsModel(tiny_config()).eval()
    twin.load_state_dict(load_file(str(path)))
    clips = random_clips(2)
    with torch.no_grad():
        out, twin_out = model(clips), twin(clips)
        assert torch.equal(out["codes"], twin_out["codes"])
        assert torch.equal(out["recon"], twin_out["recon"])
        assert torch.equal(out["loss"], twin_out["loss"])
        codes = out["codes"]
        assert torch.equal(model.decode(clips[:, 0], codes), twin.decode(clips[:, 0], codes))
