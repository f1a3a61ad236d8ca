"""The head recipe's switches: random shifts, task and state inputs, FiLM, a trunk per camera
view (view_trunks) and spatial-softmax keypoints (pool); the last two also through the training
stages on a tiny hand-built two-view dataset (random frames, untrained tokenizer and LDM)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.toy_data import save_stage, write_toy_episode
from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt
from vw_robot.errors import ConfigError
from vw_robot.models.action_head import ActionHead, ActionHeadConfig, SpatialSoftmax
from vw_robot.models.augment import random_shift
from vw_robot.models.latent_dynamics import LatentDynamicsConfig, LatentDynamicsModel
from vw_robot.models.registry import build_model, load_model
from vw_robot.models.tokenizer import Encoder, FrameTokenizer, TokenizerConfig
from vw_robot.policies import load_policy
from vw_robot.training.config import TrainConfig
from vw_robot.training.stages import STAGES, run_stage


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


# A small head's config (model_config as a checkpoint records it).
HEAD = {
    "image_size": 16,
    "down_factor": 4,
    "channels": [8, 16],
    "feature_dim": 8,
    "use_codes": False,
    "hidden": 32,
    "chunk": 2,
}


def head(**overrides) -> ActionHead:
    return ActionHead(ActionHeadConfig(**{**HEAD, **overrides}))


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


# --- a trunk per camera view, spatial-softmax keypoints -----------------------------------


def two_view_head(**overrides) -> ActionHead:
    return head(view_trunks=True, num_views=2, **overrides)


@pytest.mark.parametrize("num_views", [2, 4])
def test_each_view_trunk_reads_exactly_its_own_band(num_views):
    """Changing the pixels of one band changes that band's rows of the feature map only; each
    view's rows are its own trunk on its band alone."""
    torch.manual_seed(0)
    model = head(image_size=32, view_trunks=True, num_views=num_views)
    x = frames(2, 32)
    changed = x.clone()
    changed[:, :, 32 // num_views : 2 * 32 // num_views] = (
        255 - changed[:, :, 32 // num_views : 2 * 32 // num_views]
    )  # band 2
    with torch.no_grad():
        a, b = model.trunk_output(x), model.trunk_output(changed)  # (B, F, 8, 8)
    rows = 8 // num_views  # feature rows per view
    assert torch.equal(a[:, :, :rows], b[:, :, :rows])  # trunk 1 did not see it
    assert not torch.equal(a[:, :, rows : 2 * rows], b[:, :, rows : 2 * rows])
    assert torch.equal(a[:, :, 2 * rows :], b[:, :, 2 * rows :])
    with torch.no_grad():
        pixels = model._pixels(x)
        for i, trunk in enumerate(model.trunk.views):
            band = pixels[:, :, i * 32 // num_views : (i + 1) * 32 // num_views]
            assert torch.equal(trunk(band), a[:, :, i * rows : (i + 1) * rows])
    assert not torch.equal(model.trunk.views[0].conv_in.weight, model.trunk.views[1].conv_in.weight)


def test_a_shared_trunk_reads_across_the_seam():
    """What per-view trunks remove: one trunk's features of the top view depend on the bottom."""
    torch.manual_seed(0)
    model = head()
    x = frames(2)
    changed = x.clone()
    changed[:, :, 8:] = 0
    with torch.no_grad():
        a, b = model.trunk_output(x), model.trunk_output(changed)  # (B, F, 4, 4)
    assert not torch.equal(a[:, :, :2], b[:, :, :2])


def test_spatial_softmax_finds_a_hot_cell_and_the_centre_of_a_uniform_map():
    features = torch.zeros(1, 3, 4, 6)  # (B, C, h, w)
    features[0, 0, 1, 4] = 50.0  # channel 0: one hot cell at row 1, column 4
    features[0, 2] = torch.randn(4, 6)  # channel 2: anything; channel 1: uniform
    keypoints = SpatialSoftmax()(features)  # (1, 3, 2)
    # Cell centres in [-1, 1]: column 4 of 6 at x = 9/6 - 1, row 1 of 4 at y = 3/4 - 1.
    torch.testing.assert_close(keypoints[0, 0], torch.tensor([0.5, -0.25]))
    torch.testing.assert_close(keypoints[0, 1], torch.tensor([0.0, 0.0]))
    assert keypoints.abs().max() <= 1
    # The temperature is learned; a colder softmax sharpens towards the hot cell.
    pool = SpatialSoftmax()
    features[0, 0, 1, 4] = 1.0
    warm = pool(features)[0, 0]
    pool(features).sum().backward()
    assert pool.log_temperature.grad is not None
    with torch.no_grad():
        pool.log_temperature.fill_(-3.0)
    cold = pool(features)[0, 0]
    target = torch.tensor([0.5, -0.25])
    assert (cold - target).abs().sum() < (warm - target).abs().sum()


def test_the_head_pools_keypoints_per_view_in_each_views_own_frame():
    """A hot cell in the bottom view's map is located in that view's coordinates; the top view
    (uniform) reads as the centre. Order: view, channel, (x, y)."""
    model = two_view_head(pool="spatial_softmax")  # 16 px, 2 views: a (F, 4, 4) map
    assert model.config.frame_features == 2 * 8 * 2
    trunk_output = torch.zeros(1, 8, 4, 4)  # (B, F, g, g): rows 0-1 view 1, rows 2-3 view 2
    trunk_output[0, 3, 3, 0] = 50.0  # channel 3, view 2's row 1, column 0
    pooled = model.features(None, [], trunk_output).view(1, 2, 8, 2)  # (B, N, F, 2)
    torch.testing.assert_close(pooled[0, 1, 3], torch.tensor([-0.75, 0.5]))
    pooled[0, 1, 3] = 0
    assert pooled.abs().max() < 1e-6  # every other keypoint: the centre
    # One trunk pools the whole image: the same cell is at y = 0.75 of the frame.
    shared = head(pool="spatial_softmax")
    assert shared.config.frame_features == 8 * 2
    torch.testing.assert_close(
        shared.features(None, [], trunk_output).view(8, 2)[3], torch.tensor([-0.75, 0.75])
    )


@pytest.mark.parametrize(
    "options",
    [
        {"view_trunks": True, "num_views": 2},
        {"pool": "spatial_softmax"},
        {"view_trunks": True, "num_views": 2, "pool": "spatial_softmax"},
    ],
)
@pytest.mark.parametrize("use_codes", [False, True])
def test_film_scales_each_view_trunk_before_pooling(options, use_codes):
    """With the switches on, FiLM still starts as the identity (a concat head of the same
    seed computes the same) and then conditions every trunk's features before pooling."""
    codes_options = {"use_codes": use_codes, "horizon": 2, "code_levels": [4, 4]}
    torch.manual_seed(0)
    concat = head(num_tasks=3, state_dim=2, **codes_options, **options)
    torch.manual_seed(0)
    film = head(num_tasks=3, state_dim=2, conditioning="film", **codes_options, **options)
    x, task, state = frames(4), torch.tensor([0, 1, 2, 1]), torch.randn(4, 2)
    codes = torch.tensor([[0, 1], [3, 15], [7, 2], [9, 9]]) if use_codes else None
    with torch.no_grad():
        assert torch.equal(film(x, codes, state, task=task), concat(x, codes, state, task=task))
        film.film.weight.add_(0.1 * torch.randn_like(film.film.weight))
        conditions = [film.task_embedding(task)]
        if use_codes:
            conditions.insert(0, film.code_embedding(codes + torch.tensor([0, 16])).flatten(1))
        one = film.features(x[:1], [c[:1] for c in conditions])
        other = film.features(x[:1], [c[1:2] for c in conditions])  # another task, same frame
    assert one.shape == (1, film.config.frame_features)
    if film.config.view_trunks:  # both views' features move with the condition
        half = film.config.frame_features // 2
        assert not torch.equal(one[:, :half], other[:, :half])
        assert not torch.equal(one[:, half:], other[:, half:])
    else:
        assert not torch.equal(one, other)


def test_the_no_ldm_head_reads_both_frames_through_the_view_trunks():
    torch.manual_seed(0)
    model = two_view_head(use_next_frame=True, pool="spatial_softmax")
    x = frames(2)
    out = model(x, next_frames=x.flip(0))
    assert out.shape == (2, 2, 4)
    assert model.mlp[0].in_features == 2 * model.config.frame_features


def test_random_shifts_move_each_view_within_its_own_band():
    """A shift never carries one camera's pixels into another's band; without view trunks the
    head shifts the whole image exactly as before (the same draws, the same result)."""
    x = torch.zeros(6, 3, 16, 16, dtype=torch.uint8)
    x[:, :, 8:] = 255  # top view black, bottom view white
    shifted = two_view_head().random_shift(x, 4, torch.Generator().manual_seed(0))
    assert shifted.dtype == torch.uint8 and shifted.shape == x.shape
    assert torch.equal(shifted, x)  # each band is uniform, so only a leak would change it
    whole = head().random_shift(x, 4, torch.Generator().manual_seed(0))
    assert torch.equal(whole, random_shift(x, 4, torch.Generator().manual_seed(0)))
    assert not torch.equal(whole, x)  # the shared trunk's shift crosses the seam
    # Each band moves: a gradient inside each band is shifted, not left in place.
    ramp = torch.arange(16, dtype=torch.float32).repeat(1, 3, 16, 1)  # (1, 3, 16, 16)
    moved = two_view_head().random_shift(ramp.repeat(8, 1, 1, 1), 3)
    assert not torch.equal(moved, ramp.repeat(8, 1, 1, 1))


def test_view_and_pool_settings_are_checked_naming_the_key():
    with pytest.raises(ValueError, match=r"view_trunks: the frame holds one camera view"):
        head(view_trunks=True)
    with pytest.raises(ValueError, match=r"view_trunks: each of the 3 views"):
        head(view_trunks=True, num_views=3)
    with pytest.raises(ValueError, match=r"view_trunks: each of the 8 views"):
        head(view_trunks=True, num_views=8)  # 2 rows a view: less than down_factor=4
    assert head(view_trunks=True, num_views=4).config.trunks == 4  # one feature row a view
    with pytest.raises(ValueError, match=r"num_views: expected >= 1, got 0"):
        head(num_views=0)
    with pytest.raises(ValueError, match=r"pool: 'mean'; use flatten or spatial_softmax"):
        head(pool="mean")
    cfg = TrainConfig(stage="bc")
    cfg.experiment.bc.model.pool = "max"
    with pytest.raises(ConfigError, match=r"experiment\.bc\.model\.pool: 'max'"):
        cfg.validate()


def test_the_switches_round_trip_through_a_checkpoint_and_old_ones_load_as_before(tmp_path):
    config = {**HEAD, "num_tasks": 2, "task_ids": ["a", "b"]}
    x, task = frames(2), torch.tensor([0, 1])
    switched = {**config, "view_trunks": True, "num_views": 2, "pool": "spatial_softmax"}
    for name, model_config in (("old", config), ("new", switched)):
        torch.manual_seed(0)
        model = build_model("ActionHead", model_config)
        ckpt.save_checkpoint(
            tmp_path / name,
            stage="bc",
            step=1,
            model=model,
            model_config=model_config,
            config_yaml="stage: bc\n",
        )
        loaded, _ = load_model(tmp_path / name, "bc")
        with torch.no_grad():
            assert torch.equal(loaded(x, task=task), model(x, task=task))
    new, _ = load_model(tmp_path / "new", "bc")
    assert (new.config.view_trunks, new.config.num_views, new.config.pool) == (
        True,
        2,
        "spatial_softmax",
    )
    # A checkpoint written before the switches existed: a shared trunk, flattened features,
    # and nothing else in its weights than it had.
    old, _ = load_model(tmp_path / "old", "bc")
    assert (old.config.view_trunks, old.config.pool) == (False, "flatten")
    assert isinstance(old.trunk, Encoder) and old.pool is None
    assert not any(k.startswith("pool") or ".views." in k for k in old.state_dict())
    assert old.mlp[0].in_features == 8 * 4 * 4 + old.config.task_embed_dim
    with torch.no_grad():
        by_hand = old.mlp(
            torch.cat([old.trunk(old._pixels(x)).flatten(1), old.task_embedding(task)], 1)
        ).view(2, 2, 4)
        assert torch.equal(old(x, task=task), by_hand)


# --- the switches through the training stages ---------------------------------------------

SIZE = 16
MODEL = {"channels": [4, 8], "num_res_blocks": 0, "feature_dim": 4, "hidden": 16, "chunk": 2}
EPISODES = {"a0": ("toy/a", 6), "a1": ("toy/a", 5), "b0": ("toy/b", 6), "b1": ("toy/b", 5)}


def _record(data: Path, camera: str | None, rng: np.random.Generator) -> None:
    """Random episodes of two tasks recorded with ``camera`` (None: imported, no camera)."""
    fmt.init_dataset(data, image_size=SIZE, fps=10, codec="lossless")
    for episode_id, (task, count) in EPISODES.items():
        steps = {
            "actions": rng.uniform(-1, 1, (count - 1, 2)).astype(np.float32),
            "state": rng.normal(size=(count, 3)).astype(np.float32),
        }
        frames = rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)
        write_toy_episode(data, episode_id, task, frames, steps, camera)
    fmt.write_manifest(data)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A front+top dataset, a one-camera one, and a pipeline folder with untrained tokenizer
    and LDM checkpoints and the two transformers (with codes, code-free) trained two steps."""
    root = tmp_path_factory.mktemp("views")
    rng = np.random.default_rng(0)
    _record(root / "data", "front+top", rng)
    _record(root / "one_view", "corner2", rng)
    _record(root / "imported", None, rng)
    out = root / "runs"
    torch.manual_seed(0)
    tokenizer = TokenizerConfig(image_size=SIZE, down_factor=4, channels=[4, 8], levels=[4, 4])
    ldm = LatentDynamicsConfig(
        image_size=SIZE, horizon=2, down_factor=4, channels=[4, 8], dim=8, heads=2
    )
    for stage, model, config in (
        ("tokenizer", FrameTokenizer(tokenizer), tokenizer),
        ("ldm", LatentDynamicsModel(ldm), ldm),
    ):
        save_stage(out, stage, model, config)
    pipe = SimpleNamespace(data=root / "data", out=out, root=root)
    for changes in ({}, {"transformer.use_codes": "false"}):
        run_stage(_config(pipe, "transformer", **changes))
    return pipe


def _config(pipe: SimpleNamespace, stage: str, data: str = "data", **changes) -> TrainConfig:
    """A tiny TrainConfig; ``changes``: dotted keys of the experiment (``bc.model.pool=...``)."""
    cfg = TrainConfig(stage=stage, dataset=str(pipe.root / data), out=str(pipe.out), pictures=False)
    for name in ("action_head", "bc", "noldm_head", "latent_pretrain", "transformer"):
        section = getattr(cfg.experiment, name)
        if name == "transformer":
            section.model = dataclasses.replace(
                section.model, num_layers=1, num_heads=2, dim=16, max_timesteps=2
            )
        else:
            section.model = dataclasses.replace(section.model, **MODEL)
        section.optim = dataclasses.replace(
            section.optim, steps=2, batch_size=4, warmup_steps=1, checkpoint_every=2
        )
    merged = OmegaConf.merge(
        OmegaConf.structured(cfg),
        OmegaConf.from_dotlist([f"experiment.{key}={value}" for key, value in changes.items()]),
    )
    return OmegaConf.to_object(merged)


BOTH = {"model.view_trunks": "true", "model.pool": "spatial_softmax"}


@pytest.mark.parametrize(
    ("stage", "changes"),
    [
        ("bc", {"model.view_trunks": "true"}),
        ("bc", {"model.pool": "spatial_softmax"}),
        # The head recipe's other switches with both on.
        ("bc", {**BOTH, "task_conditioning": "true", "use_state": "true", "augment_shift": 2}),
        ("bc", {**BOTH, "task_conditioning": "true", "conditioning": "film"}),
        ("action_head", {**BOTH, "conditioning": "film", "augment_shift": 2}),
        ("noldm_head", {**BOTH, "augment_shift": 2}),
        # Frozen copies of the LDM's encoder, one per view, their features cached on disk.
        ("bc", {**BOTH, "trunk": "ldm", "freeze_trunk": "true", "cache_features": "true"}),
    ],
)
def test_a_tiny_run_trains_with_the_switches_and_its_policy_acts(pipe, stage, changes):
    cfg = _config(pipe, stage, **{f"{stage}.{k}": v for k, v in changes.items()})
    cfg.run_name = f"{stage}-" + "-".join(f"{k}={v}" for k, v in changes.items())
    before = STAGES[stage].setup(cfg).model.state_dict()
    result = run_stage(cfg)
    assert result["step"] == 2
    info = ckpt.read_info(result["checkpoint"], stage=stage)
    config = info.model_config
    views = "model.view_trunks" in changes
    assert config.get("view_trunks", False) == views
    assert config.get("num_views", 1) == (2 if views else 1)
    assert config.get("pool", "flatten") == changes.get("model.pool", "flatten")
    after = ckpt.load_weights(result["checkpoint"])
    assert not torch.equal(after["mlp.4.weight"], before["mlp.4.weight"])  # it trained
    if changes.get("freeze_trunk"):  # every view trunk started as the LDM's encoder, frozen
        encoder = load_model(pipe.out / "ldm", "ldm")[0].encoder.state_dict()
        for view in (0, 1):
            for name, tensor in encoder.items():
                assert torch.equal(after[f"trunk.views.{view}.{name}"], tensor)
    policy = load_policy(result["checkpoint"])
    policy.reset(task_id="toy/b")
    obs = {
        "pixels": np.zeros((SIZE, SIZE, 3), np.uint8),
        "state": np.zeros(3, np.float32),
    }
    action = policy.select_action(obs, {"view": f"front+top@{SIZE}px"})
    assert action.shape == (2,) and np.isfinite(action).all()


def test_latent_pretraining_builds_the_same_network_and_a_head_fine_tunes_from_it(pipe):
    pretrain = _config(
        pipe, "latent_pretrain", **{f"latent_pretrain.{k}": v for k, v in BOTH.items()}
    )
    pretrained = Path(run_stage(pretrain)["checkpoint"])
    config = ckpt.read_info(pretrained).model_config
    assert (config["view_trunks"], config["num_views"], config["pool"]) == (
        True,
        2,
        "spatial_softmax",
    )
    changes = {"bc.pretrained": "true", "bc.finetune": "last"}
    cfg = _config(pipe, "bc", **changes, **{f"bc.{k}": v for k, v in BOTH.items()})
    model = STAGES["bc"].setup(cfg).model
    theirs = ckpt.load_weights(pretrained)
    for name, tensor in model.state_dict().items():
        if name.startswith(("trunk.views.1.", "pool.")):
            assert torch.equal(tensor, theirs[name]), name
    frozen = [*model.trunk.parameters(), *model.pool.parameters()]
    assert not any(p.requires_grad for p in frozen)
    # A head of another shape is refused, naming the setting on both sides.
    for key, message in (
        ("bc.model.view_trunks", "view_trunks: True there, False here"),
        ("bc.model.pool", "pool: spatial_softmax there, flatten here"),
    ):
        other = _config(
            pipe,
            "bc",
            **changes,
            **{f"bc.{k}": v for k, v in BOTH.items() if f"bc.{k}" != key},
        )
        with pytest.raises(ckpt.CheckpointError, match="another shape") as error:
            STAGES["bc"].setup(other)
        assert message in str(error.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("one_view", r"frames are one view \(camera='corner2'\)"),
        ("imported", "no recorded camera"),
    ],
)
def test_view_trunks_on_data_without_two_views_is_refused_naming_the_key(pipe, data, message):
    cfg = _config(pipe, "bc", data=data, **{"bc.model.view_trunks": "true"})
    with pytest.raises(ConfigError, match=r"experiment\.bc\.model\.view_trunks") as error:
        STAGES["bc"].setup(cfg)
    assert error.match(message)
