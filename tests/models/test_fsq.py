"""Finite scalar quantization: code grid, mixed-radix indices, straight-through gradients."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from vw_robot.models.fsq import FSQ, FSQConfig

LEVELS = [[8, 5, 5, 5], [3, 4], [2, 2, 2], [7], [8, 6, 5]]


@pytest.mark.parametrize("levels", LEVELS)
def test_codebook_size_is_product_of_levels(levels: list[int]) -> None:
    assert FSQ(FSQConfig(levels=levels)).codebook_size == math.prod(levels)


@pytest.mark.parametrize("levels", LEVELS)
def test_indices_codes_round_trip_over_all_indices(levels: list[int]) -> None:
    fsq = FSQ(FSQConfig(levels=levels))
    indices = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(indices)  # (N, C)
    assert codes.shape == (fsq.codebook_size, len(levels))
    assert torch.equal(fsq.codes_to_indices(codes), indices)
    # Every index names a distinct grid point, so codes -> indices -> codes is exact too.
    assert torch.unique(codes, dim=0).shape[0] == fsq.codebook_size
    assert torch.equal(fsq.indices_to_codes(fsq.codes_to_indices(codes)), codes)
    assert codes.min() >= -1 and codes.max() <= 1


@pytest.mark.parametrize("levels", LEVELS)
def test_quantized_values_lie_on_the_level_grid(levels: list[int]) -> None:
    torch.manual_seed(0)
    fsq = FSQ(FSQConfig(levels=levels))
    z = torch.randn(4096, len(levels)) * 3
    codes = fsq.quantize(z)
    half_width = torch.tensor(levels) // 2
    steps = codes * half_width  # integer level offsets from the centre
    assert torch.allclose(steps, steps.round(), atol=1e-5)
    digits = (steps.round() + half_width).long()
    assert (digits >= 0).all() and (digits <= torch.tensor(levels) - 1).all()
    # Strong inputs reach both ends of every channel, weak ones the centre.
    assert torch.equal(
        fsq.codes_to_indices(fsq.quantize(torch.full((1, len(levels)), -20.0))),
        torch.zeros(1, dtype=torch.int64),
    )
    top = fsq.codes_to_indices(fsq.quantize(torch.full((1, len(levels)), 20.0)))
    assert top.item() == fsq.codebook_size - 1
    assert torch.equal(fsq.quantize(torch.zeros(1, len(levels))), torch.zeros(1, len(levels)))


def test_forward_shapes_dtypes_and_indices_match_codes() -> None:
    torch.manual_seed(0)
    fsq = FSQ(FSQConfig())
    z = torch.randn(2, 3, 5, 4)
    z_q, indices = fsq(z)
    assert z_q.shape == z.shape and z_q.dtype == torch.float32
    assert indices.shape == (2, 3, 5) and indices.dtype == torch.int64
    assert ((indices >= 0) & (indices < 1000)).all()
    assert torch.equal(fsq.indices_to_codes(indices), z_q)
    assert torch.equal(fsq.indices_to_output(indices), z_q)


def test_projections_when_dim_differs() -> None:
    torch.manual_seed(0)
    fsq = FSQ(FSQConfig(levels=[8, 5, 5, 5], dim=16))
    z = torch.randn(7, 16)
    z_q, indices = fsq(z)
    assert z_q.shape == (7, 16) and indices.shape == (7,)
    assert torch.allclose(fsq.indices_to_output(indices), z_q, atol=1e-6)


def test_straight_through_gradients_reach_input_and_projections() -> None:
    torch.manual_seed(0)
    fsq = FSQ(FSQConfig(levels=[8, 5, 5, 5], dim=16))
    z = torch.randn(32, 16, requires_grad=True)
    target = torch.randn(32, 16)
    z_q, _ = fsq(z)
    ((z_q - target) ** 2).mean().backward()
    for grad in (z.grad, fsq.project_in.weight.grad, fsq.project_out.weight.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_rounding_passes_gradient_through_unchanged() -> None:
    fsq = FSQ(FSQConfig(levels=[5]))
    z = torch.tensor([[0.3]], requires_grad=True)
    fsq.quantize(z).sum().backward()
    # d/dz of tanh(z) * half_range / half_width, the rounding contributing a factor of 1.
    half_range = 4 * (1 + 1e-3) / 2
    expected = (1 - torch.tanh(torch.tensor(0.3)) ** 2) * half_range / 2
    assert torch.allclose(z.grad, expected.reshape(1, 1))


def test_half_precision_input_quantizes_in_float32() -> None:
    torch.manual_seed(0)
    fsq = FSQ(FSQConfig())
    z = torch.randn(64, 4)
    z_q16, indices16 = fsq(z.to(torch.bfloat16))
    assert z_q16.dtype == torch.bfloat16 and indices16.dtype == torch.int64
    assert torch.equal(indices16, fsq(z.to(torch.bfloat16).float())[1])


@pytest.mark.parametrize("levels", [[1, 5], [8, 2.5], [], [0], [True, 3], "855"])
def test_bad_levels_rejected_naming_the_value(levels: object) -> None:
    with pytest.raises(ValueError, match=r"^levels: ") as info:
        FSQConfig(levels=levels)  # type: ignore[arg-type]
    if isinstance(levels, list) and levels:
        assert repr(levels[0]) in str(info.value) or repr(levels[1]) in str(info.value)


def test_bad_dim_rejected() -> None:
    with pytest.raises(ValueError, match=r"^dim: "):
        FSQConfig(dim=0)


def test_config_works_as_omegaconf_schema() -> None:
    schema = OmegaConf.structured(FSQConfig)
    merged = OmegaConf.merge(schema, {"levels": [4, 4], "dim": 8})
    config = OmegaConf.to_object(merged)
    assert isinstance(config, FSQConfig) and config.levels == [4, 4] and config.dim == 8


def test_state_dict_holds_only_projections() -> None:
    # Level tables derive from the config; only learned weights belong in checkpoints.
    assert FSQ(FSQConfig()).state_dict() == {}
    assert set(FSQ(FSQConfig(dim=8)).state_dict()) == {
        "project_in.weight",
        "project_in.bias",
        "project_out.weight",
        "project_out.bias",
    }
