"""Frame tokenizer: shapes, config errors, a tiny overfit, bit-exact save/load."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vw_robot.models.tokenizer import (
    FrameTokenizer,
    TokenizerConfig,
)


def tiny_config(**overrides: object) -> TokenizerConfig:
    fields = {"image_size": 16, "down_factor": 4, "channels": [8, 16]}
    fields.update(overrides)
    return TokenizerConfig(**fields)  # type: ignore[arg-type]


def random_frames(batch: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), generator=gen, dtype=torch.uint8)


def coloured_squares(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) uint8: a random-coloured square on a random-coloured background."""
    gen = torch.Generator().manual_seed(seed)
    frames = torch.empty(n, 3, size, size, dtype=torch.uint8)
    side = size // 4
    for i in range(n):
        background, foreground = torch.randint(0, 256, (2, 3, 1, 1), generator=gen).to(torch.uint8)
        x, y = torch.randint(0, size - side + 1, (2,), generator=gen).tolist()
        frames[i] = background
        frames[i, :, y : y + side, x : x + side] = foreground
    return frames


def test_encode_decode_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    model = FrameTokenizer(tiny_config()).eval()
    frames = random_frames(2)
    tokens = model.encode(frames)
    assert tokens.shape == (2, 4, 4) and tokens.dtype == torch.int64
    assert model.num_tokens == 16 and model.vocab_size == 1000
    assert ((tokens >= 0) & (tokens < model.vocab_size)).all()
    images = model.decode(tokens)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    out = model(frames)
    assert set(out) >= {"recon", "tokens", "loss"}
    assert torch.equal(out["tokens"], tokens)
    assert torch.allclose(out["recon"], images, atol=1e-6)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])


def test_float_frames_match_uint8_frames() -> None:
    torch.manual_seed(0)
    model = FrameTokenizer(tiny_config()).eval()
    frames = random_frames(2)
    assert torch.equal(model.encode(frames), model.encode(frames.float() / 255))


def test_wrong_frame_shape_rejected() -> None:
    model = FrameTokenizer(tiny_config())
    with pytest.raises(ValueError, match="frames must be"):
        model.encode(random_frames(1, size=32))


def test_default_config_geometry() -> None:
    model = FrameTokenizer(TokenizerConfig())
    assert model.num_tokens == 64 and model.vocab_size == 1000


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"image_size": 18}, "image_size"),
        ({"down_factor": 6, "channels": [8, 16]}, "down_factor"),
        ({"down_factor": 1}, "down_factor"),
        ({"channels": [8, 16, 32]}, "channels"),
        ({"levels": [8, 1]}, "levels"),
        ({"levels": []}, "levels"),
        ({"mse_weight": -0.1}, "mse_weight"),
    ],
)
def test_config_errors_name_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key}: "):
        tiny_config(**overrides)


def test_validate_catches_fields_changed_after_construction() -> None:
    config = tiny_config()
    config.image_size = 17
    with pytest.raises(ValueError, match=r"^image_size: "):
        FrameTokenizer(config)


def test_adversarial_option_is_gone() -> None:
    # It was half-wired (its discriminator was never trained); a config asking for it fails.
    with pytest.raises(TypeError, match="adversarial_weight"):
        tiny_config(adversarial_weight=0.1)


def test_overfits_coloured_squares() -> None:
    torch.manual_seed(0)
    frames = coloured_squares(8, 16, seed=0)
    model = FrameTokenizer(tiny_config(channels=[16, 32]))
    steps, lr = 200, 2e-3
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.1
    )
    start = time.perf_counter()
    initial = None
    for _ in range(steps):
        loss = model(frames)["loss"]
        initial = loss.item() if initial is None else initial
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        final = model(frames)["loss"].item()
    elapsed = time.perf_counter() - start
    print(f"tokenizer overfit: {initial:.4f} -> {final:.4f} in {steps} steps, {elapsed:.1f} s")
    assert final <= initial / 10


def test_safetensors_round_trip_is_bit_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = tiny_config()
    model = FrameTokenizer(config).eval()
    path = tmp_path / "tokenizer.safetensors"
    save_file(model.state_dict(), str(path))
    torch.manual_seed(1)  # a differently initialised twin, so equality means the load worked
    twin = FrameTokenizer(config).eval()
    twin.load_state_dict(load_file(str(path)))
    frames = random_frames(3)
    with torch.no_grad():
        out, twin_out = model(frames), twin(frames)
        tokens = out["tokens"]
        assert torch.equal(tokens, twin_out["tokens"])
        assert torch.equal(out["recon"], twin_out["recon"])
        assert torch.equal(model.decode(tokens), twin.decode(tokens))
