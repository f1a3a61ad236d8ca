"""Latent-action pretraining of the head: its targets are the LDM's codes of the right future
frames, the stage trains and resumes exactly, and a head fine-tunes from it (every weight but
the output layer) or refuses a pretrained network of another shape. And the other road from
video to the head that needs no labels either: a frozen pretrained trunk (the LDM's or the
tokenizer's encoder) whose features are cached on disk.

A hand-built dataset (random frames, two tasks, one episode without actions) and untrained
tokenizer and LDM checkpoints: the codes need not mean anything, only come from the right
frames.
"""

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
from vw_robot.cli import load_config
from vw_robot.data import format as fmt
from vw_robot.data.sequences import sequence_key
from vw_robot.errors import ConfigError
from vw_robot.heads import HEADS, head_of_stage
from vw_robot.models.latent_dynamics import LatentDynamicsConfig, LatentDynamicsModel
from vw_robot.models.registry import load_model
from vw_robot.models.tokenizer import FrameTokenizer, TokenizerConfig
from vw_robot.study import generator_runs, head_experiment, study_runs
from vw_robot.training.config import TrainConfig
from vw_robot.training.features import FEATURES_DIR, CachedTrunkDataset, trunk_key
from vw_robot.training.latent_pretrain import LatentActionDataset
from vw_robot.training.loop import train
from vw_robot.training.seeding import seed_everything
from vw_robot.training.stages import STAGES, run_stage

SIZE, HORIZON, CHUNK = 16, 2, 3
# id -> (task, frames, labelled)
EPISODES = {
    "a0": ("toy/a", 7, True),
    "a1": ("toy/a", 5, True),
    "b0": ("toy/b", 6, True),
    "v0": ("toy/b", 4, False),  # video only: pretraining reads it, no head does
}
MODEL = {"channels": [4, 8], "num_res_blocks": 0, "feature_dim": 4, "hidden": 16}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The dataset, and a pipeline folder holding untrained tokenizer and LDM checkpoints."""
    root = tmp_path_factory.mktemp("lapa")
    data, out = root / "data", root / "runs"
    rng = np.random.default_rng(0)
    fmt.init_dataset(data, image_size=SIZE, fps=10, codec="lossless")
    frames = {}
    for episode_id, (task, count, labelled) in EPISODES.items():
        frames[episode_id] = rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)
        steps = None
        if labelled:
            steps = {
                "actions": rng.uniform(-1, 1, (count - 1, 2)).astype(np.float32),
                "state": rng.normal(size=(count, 3)).astype(np.float32),
            }
        write_toy_episode(data, episode_id, task, frames[episode_id], steps)
    fmt.write_manifest(data)
    torch.manual_seed(0)
    tokenizer = TokenizerConfig(image_size=SIZE, down_factor=4, channels=[4, 8], levels=[4, 4])
    ldm = LatentDynamicsConfig(
        image_size=SIZE, horizon=HORIZON, down_factor=4, channels=[4, 8], dim=16, heads=2
    )
    ldm_model = LatentDynamicsModel(ldm)
    # Untrained codes all round to one value; amplified, they tell the clips apart.
    ldm_model.code_norm.running_var.fill_(1e-4)
    for stage, model, config in (
        ("tokenizer", FrameTokenizer(tokenizer), tokenizer),
        ("ldm", ldm_model, ldm),
    ):
        save_stage(out, stage, model, config)
    return SimpleNamespace(data=data, out=out, frames=frames)


def _config(pipe: SimpleNamespace, stage: str, **changes) -> TrainConfig:
    """A tiny TrainConfig; ``changes``: dotted keys of the experiment (``bc.hidden=8``)."""
    cfg = TrainConfig(stage=stage, dataset=str(pipe.data), out=str(pipe.out), pictures=False)
    for name in ("latent_pretrain", "bc"):
        section = getattr(cfg.experiment, name)
        section.model = dataclasses.replace(section.model, chunk=CHUNK, **MODEL)
        section.optim = dataclasses.replace(
            section.optim, steps=4, batch_size=4, warmup_steps=1, checkpoint_every=2
        )
        section.task_conditioning = True
    merged = OmegaConf.merge(
        OmegaConf.structured(cfg),
        OmegaConf.from_dotlist([f"experiment.{key}={value}" for key, value in changes.items()]),
    )
    return OmegaConf.to_object(merged)


@pytest.fixture(scope="module")
def pretrained(pipe: SimpleNamespace) -> Path:
    """The latent_pretrain run, trained to its last step."""
    result = run_stage(_config(pipe, "latent_pretrain"))
    assert Path(result["run_dir"]) == pipe.out / "latent_pretrain"
    return Path(result["checkpoint"])


def test_the_targets_are_the_ldms_codes_of_the_next_frames(pipe, pretrained):
    ldm, ldm_info = load_model(pipe.out / "ldm", "ldm")
    tokenizer = ckpt.read_info(pipe.out / "tokenizer")
    key = sequence_key(tokenizer.model_sha256, ldm_info.model_sha256)
    episodes = sorted(EPISODES)
    dataset = LatentActionDataset(pipe.data, key, CHUNK, episodes, task_ids=["toy/a", "toy/b"])
    assert len(dataset) == sum(count - 1 for _, count, _ in EPISODES.values())  # video too
    batch = dataset.batch(list(range(len(dataset))))
    row, seen = 0, set()
    for episode_id in episodes:
        frames = torch.from_numpy(pipe.frames[episode_id]).permute(0, 3, 1, 2)  # (F, 3, S, S)
        count = len(frames)
        # The LDM itself on x_s, x_{s+1} (padded with x_{s+1}): the code of that change.
        clips = torch.stack(
            [torch.stack([frames[s]] + [frames[s + 1]] * HORIZON) for s in range(count - 1)]
        )  # (F-1, H+1, 3, S, S)
        with torch.no_grad():
            direct = ldm.encode(clips)[:, 0]  # (F-1,)
        for t in range(count - 1):
            assert torch.equal(batch["frames"][row], frames[t])
            for j in range(CHUNK):
                inside = t + j + 1 < count
                assert bool(batch["code_mask"][row, j]) == inside
                if inside:
                    assert int(batch["codes"][row, j]) == int(direct[t + j]), (episode_id, t, j)
                    seen.add(int(direct[t + j]))
            assert int(batch["task_index"][row]) == ["toy/a", "toy/b"].index(
                EPISODES[episode_id][0]
            )
            row += 1
    assert len(seen) > 1  # the comparison is not between constant codes
    # Items are what batch() gathers.
    item = dataset[5]
    assert all(torch.equal(item[k], batch[k][5]) for k in item)


def test_the_stage_records_its_network_and_parents(pipe, pretrained):
    info = ckpt.read_info(pretrained, stage="latent_pretrain")
    assert info.step == 4
    assert set(info.parents) == {"tokenizer", "ldm"}
    config = info.model_config
    assert config["predict_codes"] and not config["use_codes"]
    assert (config["chunk"], config["code_levels"]) == (CHUNK, [8, 5, 5, 5])
    assert config["task_ids"] == ["toy/a", "toy/b"] and config["num_tasks"] == 2
    header = (pipe.out / "latent_pretrain" / "metrics.csv").read_text().splitlines()[0]
    assert "code_accuracy" in header


def test_a_resumed_run_reproduces_the_uninterrupted_one(pipe, pretrained):
    cfg = _config(pipe, "latent_pretrain")
    cfg.run_name = "latent_pretrain_resumed"
    seed_everything(cfg.experiment.latent_pretrain.optim.seed)
    setup = STAGES["latent_pretrain"].setup(cfg)
    train(
        stage="latent_pretrain",
        model=setup.model,
        dataset=setup.dataset,
        loss_fn=setup.loss,
        optim=cfg.experiment.latent_pretrain.optim,
        run_dir=pipe.out / cfg.run_name,
        model_config=setup.model_config,
        config_yaml=OmegaConf.to_yaml(OmegaConf.structured(cfg)),
        parents=setup.parents,
        stop_at=2,
    )
    assert ckpt.read_info(pipe.out / cfg.run_name).step == 2
    result = run_stage(cfg)
    assert result["step"] == 4
    resumed, uninterrupted = ckpt.load_weights(result["checkpoint"]), ckpt.load_weights(pretrained)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_fine_tuning_starts_from_every_pretrained_weight_but_the_output_layer(pipe, pretrained):
    cfg = _config(pipe, "bc", **{"bc.pretrained": "true", "bc.use_state": "true"})
    seed_everything(0)
    setup = STAGES["bc"].setup(cfg)
    theirs = ckpt.load_weights(pretrained)
    mine = setup.model.state_dict()
    for name, tensor in mine.items():
        if name.startswith(("trunk.", "mlp.2.")) or name == "mlp.0.bias":
            assert torch.equal(tensor, theirs[name]), name
    assert mine["mlp.4.weight"].shape != theirs["mlp.4.weight"].shape  # actions, not codes
    # The first layer's input: [frame features, state, task]; the state is new.
    frame = MODEL["feature_dim"] * (SIZE // 4) ** 2
    task = setup.model.config.task_embed_dim
    assert torch.equal(mine["mlp.0.weight"][:, :frame], theirs["mlp.0.weight"][:, :frame])
    assert torch.equal(mine["mlp.0.weight"][:, -task:], theirs["mlp.0.weight"][:, -task:])
    assert torch.equal(mine["task_embedding.weight"], theirs["task_embedding.weight"])
    assert setup.parents["latent_pretrain"] == pretrained
    assert all(p.requires_grad for p in setup.model.parameters())  # finetune=all

    result = run_stage(cfg)
    assert Path(result["run_dir"]).name == "lapa-100pct_seed0"  # the lapa head's folder
    info = ckpt.read_info(result["checkpoint"], stage="bc")
    assert set(info.parents) == {"latent_pretrain", "tokenizer", "ldm"}
    section = OmegaConf.load(info.path / ckpt.CONFIG_FILE).experiment.bc
    assert (section.pretrained, section.finetune) == (True, "all")


def test_finetune_last_freezes_what_comes_before_the_mlp(pipe, pretrained):
    cfg = _config(pipe, "bc", **{"bc.pretrained": "true", "bc.finetune": "last"})
    model = STAGES["bc"].setup(cfg).model
    assert not any(p.requires_grad for p in model.trunk.parameters())
    assert not model.task_embedding.weight.requires_grad
    assert all(p.requires_grad for p in model.mlp.parameters())
    cfg.run_name = "lapa-last"
    trained = ckpt.load_weights(run_stage(cfg)["checkpoint"])
    theirs = ckpt.load_weights(pretrained)
    assert all(torch.equal(trained[k], theirs[k]) for k in theirs if k.startswith("trunk."))
    assert not torch.equal(trained["mlp.2.weight"], theirs["mlp.2.weight"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bc.model.hidden": 8}, "hidden: 16 there, 8 here"),
        ({"bc.model.channels": "[4,4]"}, "channels: [4, 8] there, [4, 4] here"),
        ({"bc.conditioning": "film"}, "film.weight is absent there"),
    ],
)
def test_a_pretrained_network_of_another_shape_is_refused(pipe, pretrained, change, message):
    cfg = _config(pipe, "bc", **{"bc.pretrained": "true", **change})
    with pytest.raises(ckpt.CheckpointError, match="another shape") as error:
        STAGES["bc"].setup(cfg)
    assert message in str(error.value) and str(pretrained) in str(error.value)


def test_a_missing_pretrained_run_names_the_command(pipe, tmp_path):
    cfg = _config(pipe, "bc", **{"bc.pretrained": "true"})
    cfg.latent_pretrain_checkpoint = str(tmp_path / "none")
    with pytest.raises(ckpt.CheckpointError, match="stage=latent_pretrain"):
        STAGES["bc"].setup(cfg)


def test_finetune_needs_a_pretrained_head():
    cfg = TrainConfig(stage="bc")
    cfg.experiment.bc.finetune = "last"
    with pytest.raises(ConfigError, match="experiment.bc.pretrained=true"):
        cfg.validate()
    cfg.experiment.bc.finetune = "some"
    with pytest.raises(ConfigError, match="use all or last"):
        cfg.validate()


def test_a_study_lists_lapa_and_trains_its_pretraining_as_a_generator_run():
    assert head_of_stage("bc", pretrained=True) is HEADS["lapa"]
    assert head_of_stage("bc") is HEADS["bc"]
    cfg = load_config("study", ["study=tiny", "heads.2.policy=lapa"])
    runs = study_runs(cfg)
    lapa = next(r for r in runs if r.name == "lapa-50pct_seed0")
    assert generator_runs(cfg, [lapa]) == ["tokenizer", "ldm", "latent_pretrain"]
    assert head_experiment(cfg, lapa).bc.pretrained
    switched = load_config("study", ["study=tiny", "heads.0.switches=['pretrained=true']"])
    videoworld = next(r for r in study_runs(switched) if r.name.startswith("videoworld"))
    assert generator_runs(switched, [videoworld]) == [
        "tokenizer",
        "ldm",
        "latent_pretrain",
        "transformer",
    ]
    bc = load_config("study", ["study=tiny"])
    plain = next(r for r in study_runs(bc) if r.name == "bc-50pct_seed0")
    assert not head_experiment(bc, plain).bc.pretrained


# ------------------------------------------------------------ frozen trunks, features cached


def _frozen(pipe: SimpleNamespace, trunk: str = "ldm", **changes) -> TrainConfig:
    return _config(pipe, "bc", **{"bc.trunk": trunk, "bc.freeze_trunk": "true", **changes})


def test_cached_features_give_the_loss_the_trunk_gives(pipe):
    plain = _frozen(pipe)
    cached = _frozen(pipe, **{"bc.cache_features": "true"})
    seed_everything(0)
    reference = STAGES["bc"].setup(plain)
    seed_everything(0)
    setup = STAGES["bc"].setup(cached)
    assert isinstance(setup.dataset, CachedTrunkDataset)
    folder = pipe.data / "cache" / FEATURES_DIR / trunk_key(setup.model)
    assert sorted(p.stem for p in folder.glob("*.npy")) == ["a0", "a1", "b0"]  # labelled
    indices = list(range(len(setup.dataset)))
    batch, frames = setup.dataset.batch(indices), reference.dataset.batch(indices)
    assert "frames" not in batch and batch["trunk_output"].shape[1:] == (16, 4, 4)
    with torch.no_grad():
        assert torch.allclose(
            setup.loss(setup.model, batch)[0], reference.loss(reference.model, frames)[0]
        )
        expected = reference.model.trunk_output(frames["frames"])
    # Equal up to float rounding: the cache ran the trunk on bigger batches.
    assert torch.allclose(batch["trunk_output"], expected, atol=1e-5)
    item = setup.dataset[3]
    assert torch.equal(item["trunk_output"], batch["trunk_output"][3])
    assert torch.equal(item["actions"], batch["actions"][3])


def test_a_head_on_cached_features_trains_validates_and_keeps_its_trunk(pipe):
    cfg = _frozen(pipe, **{"bc.cache_features": "true", "bc.val_fraction": 0.3})
    cfg.run_name = "cached"
    result = run_stage(cfg)
    weights = ckpt.load_weights(result["checkpoint"])
    encoder = ckpt.load_weights(pipe.out / "ldm")
    trunk = {k: v for k, v in weights.items() if k.startswith("trunk.")}
    assert trunk and all(torch.equal(v, encoder["encoder." + k[6:]]) for k, v in trunk.items())
    assert (pipe.out / "cached" / "validation.csv").exists()


def test_a_tokenizer_trunk_starts_from_the_tokenizers_encoder(pipe):
    setup = STAGES["bc"].setup(_frozen(pipe, "tokenizer"))
    encoder = ckpt.load_weights(pipe.out / "tokenizer")
    for name, tensor in setup.model.trunk.state_dict().items():
        assert torch.equal(tensor, encoder["encoder." + name]), name
    assert setup.model_config["feature_dim"] == 2 and setup.model_config["unit_inputs"]
    assert "tokenizer" in setup.parents


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bc.cache_features": "true"}, "freeze_trunk=true"),
        (
            {
                "bc.cache_features": "true",
                "bc.trunk": "ldm",
                "bc.freeze_trunk": "true",
                "bc.augment_shift": 2,
            },
            "augment_shift=0",
        ),
        (
            {
                "bc.cache_features": "true",
                "bc.trunk": "ldm",
                "bc.freeze_trunk": "true",
                "bc.pretrained": "true",
            },
            "pretrained",
        ),
    ],
)
def test_cached_features_need_a_frozen_trunk_seen_as_recorded(pipe, changes, message):
    with pytest.raises(ConfigError, match=message):
        _config(pipe, "bc", **changes).validate()
