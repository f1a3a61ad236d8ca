"""The head recipe's switches: random shifts, task and state inputs."""

from __future__ import annotations

import pytest
import torch

from vw_robot.models.action_head import ActionHead, ActionHeadConfig
from vw_robot.models.augment import random_shift


def frames(batch: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randint(
        0, 256, (batch, 3, size, size), generator=torch.Generator().manual_seed(0)
    ).to(torch.uint8)


def test_random_shift_is_deterministic_for_a_seed_and_keeps_content():
    x = frames()
    a = random_shift(x, 2, torch.Generator().manual_seed(7))
    b = random_shift(x, 2, torch.Generator().manual_seed(7))
    c = random_shift(x, 2, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(random_shift(x, 0), x)


def test_random_shift_moves_the_image_by_its_offset():
    """A shift of (dy, dx) puts pixel (i, j) of the padded image at (i - dy, j - dx)."""
    x = torch.arange(36, dtype=torch.float32).view(1, 1, 6, 6)
    gen = torch.Generator().manual_seed(3)
    dy, dx = torch.randint(0, 3, (1, 2), generator=torch.Generator().manual_seed(3))[0].tolist()
    out = random_shift(x, 1, gen)[0, 0]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")[0, 0]
    assert torch.equal(out, padded[dy : dy + 6, dx : dx + 6])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("pad", [1, 4, 16])
def test_random_shift_is_padding_then_cropping_each_image_at_its_own_offset(dtype, pad):
    """The batched gather equals the definition, image by image: replicate-pad, then cut the
    window at the offset drawn for that image (draws in the order (B, 2): dy, dx)."""
    x = torch.randint(0, 256, (5, 6, 12, 12), generator=torch.Generator().manual_seed(1))
    x = x.to(dtype)
    out = random_shift(x, pad, torch.Generator().manual_seed(4))
    offsets = torch.randint(0, 2 * pad + 1, (5, 2), generator=torch.Generator().manual_seed(4))
    padded = torch.nn.functional.pad(x.float(), (pad, pad, pad, pad), mode="replicate")
    for b, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(out[b], padded[b, :, dy : dy + 12, dx : dx + 12].to(dtype))
    assert out.dtype == dtype and out.shape == x.shape


def head(**overrides) -> ActionHead:
    config = {
        "image_size": 16,
        "down_factor": 4,
        "channels": [8, 16],
        "feature_dim": 8,
        "use_codes": False,
        "hidden": 32,
        "chunk": 2,
    }
    return ActionHead(ActionHeadConfig(**{**config, **overrides}))


def test_task_input_changes_the_action_and_is_required():
    torch.manual_seed(0)
    model = head(num_tasks=3)
    x = frames(2)
    a = model(x, task=torch.tensor([0, 0]))
    b = model(x, task=torch.tensor([0, 2]))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="task must be"):
        model(x)


def test_state_input_is_normalised_and_checked():
    torch.manual_seed(0)
    model = head(state_dim=4)
    model.set_state_normalizer(torch.full((4,), 10.0), torch.full((4,), 2.0))
    x = frames(1)
    # A state equal to the mean reads as zeros: the same as a zero state around mean 0.
    twin = head(state_dim=4)
    twin.load_state_dict(
        {**model.state_dict(), "state_mean": torch.zeros(4), "state_std": torch.ones(4)}
    )
    torch.testing.assert_close(
        model(x, state=torch.full((1, 4), 10.0)), twin(x, state=torch.zeros(1, 4))
    )
    with pytest.raises(ValueError, match=r"state must be \(B, 4\)"):
        model(x, state=torch.zeros(1, 3))
    # Pixel-only heads have no state buffers, so their checkpoints are unchanged.
    assert "state_mean" not in head().state_dict()


@pytest.mark.parametrize("use_codes", [False, True])
def test_film_is_the_identity_at_init_and_then_conditions_the_trunk(use_codes):
    """At init a FiLM head computes what the concat head of the same seed computes (gamma =
    1, beta = 0 on the trunk's features); one step later the task scales the features."""
    options = {"num_tasks": 3, "use_codes": use_codes, "horizon": 2, "code_levels": [4, 4]}
    torch.manual_seed(0)
    concat = head(**options)
    torch.manual_seed(0)
    film = head(**options, conditioning="film")
    x, task = frames(4), torch.tensor([0, 1, 2, 1])
    codes = torch.tensor([[0, 1], [3, 15], [7, 2], [9, 9]]) if use_codes else None
    conditions = [film.task_embedding(task)]
    if use_codes:
        conditions.insert(0, film.code_embedding(codes + torch.tensor([0, 16])).flatten(1))
    with torch.no_grad():
        assert torch.equal(film.features(x, conditions), film.trunk(film._pixels(x)).flatten(1))
        assert torch.equal(film(x, codes, task=task), concat(x, codes, task=task))
    film(x, codes, task=task).pow(2).mean().backward()
    assert film.film.weight.grad.abs().sum() > 0  # it learns from the first step
    with torch.no_grad():
        film.film.weight.add_(0.1 * torch.randn_like(film.film.weight))
        a = film.features(x[:1], [c[:1] for c in conditions])
        other = [c[1:2] for c in conditions]  # another task (and codes), the same frame
        assert not torch.equal(a, film.features(x[:1], other))


def test_film_needs_a_condition_and_a_known_mode():
    with pytest.raises(ValueError, match="conditioning: film needs a condition"):
        head(conditioning="film")
    with pytest.raises(ValueError, match="conditioning: 'add'"):
        head(num_tasks=2, conditioning="add")
