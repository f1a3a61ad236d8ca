"""The pipeline's training stages, each declared once.

A :class:`Stage` says everything particular to one stage: the run folder it produces, how it
builds its model and data from the config (and which checkpoints it builds on), its loss, and
the pictures it writes at the end. :func:`run_stage` does the rest through the shared loop, so
adding a stage means one declaration in :data:`STAGES` plus its section of the typed
experiment config (:class:`~vw_robot.training.config.ExperimentConfig`); a stage that makes a
policy also names its policy class in :mod:`vw_robot.policies`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt
from vw_robot.data.dataset import (
    ClipDataset,
    action_statistics,
    labelled_per_task,
    select_labelled,
    split_validation,
)
from vw_robot.data.sequences import (
    ActionChunkDataset,
    SequenceDataset,
    export_sequences,
    sequence_key,
)
from vw_robot.device import resolve_device
from vw_robot.errors import ConfigError
from vw_robot.heads import head_of_stage, run_name, stage_reads
from vw_robot.models.registry import build_model, load_model
from vw_robot.training import pictures
from vw_robot.training.codes import export, sample_codes, sequence_layout, stage_checkpoint
from vw_robot.training.config import ActionHeadStage, TrainConfig
from vw_robot.training.features import cached_dataset
from vw_robot.training.latent_pretrain import LatentActionDataset, load_pretrained
from vw_robot.training.loop import train
from vw_robot.training.seeding import seed_everything

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict]]
PicturesFn = Callable[..., dict[str, Any]]


@dataclass
class Setup:
    """What a stage trains: built from its config before the loop starts."""

    model: torch.nn.Module
    model_config: dict[str, Any]  # plain dict that rebuilds the model (stored in checkpoints)
    dataset: Dataset
    loss: LossFn
    parents: dict[str, Path] = dataclasses.field(default_factory=dict)  # stage -> checkpoint
    validate: Callable[[torch.nn.Module], float] | None = None  # held-out loss (heads)


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    Attributes:
        name: the ``stage=`` value and the experiment config section it reads.
        produces: one line on what its run folder holds (``vw-robot train`` help, docs).
        setup: config -> :class:`Setup` (model, data, loss, parent checkpoints).
        pictures: ``(model, dataset_root, out_dir, parents, tasks, cache_dir) -> {name: path
            or figure}``
            written at the end, or None.
        run_folder: config -> the run folder's name under ``out`` (default: ``name``; a
            head's is :func:`vw_robot.heads.run_name`, e.g. ``videoworld-25pct_seed0``).
    """

    name: str
    produces: str
    setup: Callable[[TrainConfig], Setup]
    pictures: PicturesFn | None = None
    run_folder: Callable[[TrainConfig], str] | None = None

    def run_name(self, cfg: TrainConfig) -> str:
        """The run folder name: ``cfg.run_name`` when given, else the stage's own."""
        if cfg.run_name:
            return cfg.run_name
        return self.run_folder(cfg) if self.run_folder else self.name


def _unwrap(m: torch.nn.Module) -> torch.nn.Module:
    return m.module if hasattr(m, "module") else m  # DDP wraps the model


def _tasks(cfg: TrainConfig) -> list[str] | None:
    return list(cfg.tasks) or None


# --- tokenizer ------------------------------------------------------------------------------


def _tokenizer_setup(cfg: TrainConfig) -> Setup:
    model_config = dataclasses.asdict(cfg.experiment.tokenizer.model)

    def loss(m: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        out = m(batch["frames"][:, 0])  # (B, 3, S, S) uint8
        return out["loss"], {"l1": out["l1"]}

    return Setup(
        build_model("FrameTokenizer", model_config),
        model_config,
        ClipDataset(cfg.dataset, clip_len=1, tasks=_tasks(cfg), cache_dir=cfg.cache_dir),
        loss,
    )


# --- latent dynamics model ------------------------------------------------------------------


def _ldm_setup(cfg: TrainConfig) -> Setup:
    model_config = dataclasses.asdict(cfg.experiment.ldm.model)
    horizon = cfg.experiment.ldm.model.horizon

    def loss(m: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        out = m(batch["frames"])  # (B, H+1, 3, S, S) uint8
        # Distinct codes in the batch: 1 means the codes collapsed (they carry nothing).
        return out["loss"], {"distinct_codes": float(out["codes"].unique().numel())}

    return Setup(
        build_model("LatentDynamicsModel", model_config),
        model_config,
        ClipDataset(cfg.dataset, clip_len=horizon + 1, tasks=_tasks(cfg), cache_dir=cfg.cache_dir),
        loss,
    )


# --- transformer ----------------------------------------------------------------------------


def _transformer_setup(cfg: TrainConfig) -> Setup:
    stage_cfg = cfg.experiment.transformer
    key, tokenizer_info, ldm_info = export(
        cfg.dataset,
        cfg.out,
        tokenizer_checkpoint=cfg.tokenizer_checkpoint,
        ldm_checkpoint=cfg.ldm_checkpoint,
        use_codes=stage_cfg.use_codes,
        tasks=_tasks(cfg),
        device=stage_cfg.optim.device,
        cache_dir=cfg.cache_dir,
    )
    layout = sequence_layout(
        tokenizer_info.model_config,
        ldm_info.model_config if ldm_info else None,
        stage_cfg.hide_past_codes,
    )
    dataset = SequenceDataset(
        cfg.dataset,
        key,
        stage_cfg.model.train_timesteps or stage_cfg.model.max_timesteps,
        tasks=_tasks(cfg),
        cache_dir=cfg.cache_dir,
    )
    model_config = {
        **dataclasses.asdict(stage_cfg.model),
        "layout": dataclasses.asdict(layout),
        "num_tasks": len(dataset.task_ids),
        "task_ids": dataset.task_ids,
    }
    if model_config["train_timesteps"] is None:  # as checkpoints from before the key: they resume
        del model_config["train_timesteps"]
    parents = {"tokenizer": tokenizer_info.path}
    if ldm_info is not None:
        parents["ldm"] = ldm_info.path

    def loss(m: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        config = _unwrap(m).config
        layout = config.layout
        codes = batch.get("codes") if layout.horizon > 0 else None
        ids = layout.build(batch["tokens"], codes)  # (B, T * step_len)
        valid = batch.get("codes_valid") if codes is not None else None
        targets = layout.targets(ids, valid=valid)
        inputs, task = layout.model_inputs(ids), batch["task_index"]
        _, value = m(inputs, task, targets, window=config.training_window)
        return value, {}

    return Setup(
        build_model("VideoTransformer", model_config), model_config, dataset, loss, parents
    )


# --- heads: VideoWorld's action head, behaviour cloning, the no-LDM ablation ----------------


def _labelled_episodes(cfg: TrainConfig) -> tuple[list[str], list[fmt.EpisodeMeta]]:
    """The head's labelled episodes of the configured tasks, stratified by task."""
    stage_cfg = getattr(cfg.experiment, cfg.stage)
    manifest = fmt.read_manifest(cfg.dataset)
    tasks = _tasks(cfg)
    rows = [r for r in manifest["episodes"] if tasks is None or r["task_id"] in tasks]
    labelled_all = [r["episode_id"] for r in rows if r["has_actions"]]
    if stage_cfg.labelled_tasks is not None:
        # Tasks without labels: their episodes are video only for this head, whatever they hold.
        with_actions = {r["task_id"] for r in rows if r["has_actions"]}
        unknown = [t for t in stage_cfg.labelled_tasks if t not in with_actions]
        if unknown:
            raise fmt.DatasetError(
                f"{cfg.dataset}: experiment.{cfg.stage}.labelled_tasks names "
                f"{', '.join(unknown)}, which "
                + ("is" if len(unknown) == 1 else "are")
                + " not among its tasks with actions"
                + (f" of tasks={list(tasks)}" if tasks else "")
                + f" ({', '.join(sorted(with_actions)) or 'none'})"
            )
        keep = set(stage_cfg.labelled_tasks)
        labelled_all = [r["episode_id"] for r in rows if r["has_actions"] and r["task_id"] in keep]
    if not labelled_all:
        raise fmt.DatasetError(
            f"{cfg.dataset}: no episode"
            + (f" of {', '.join(tasks)}" if tasks else "")
            + " has actions; an action head needs some (collect demonstrations with "
            "`vw-robot collect`)."
        )
    task_of = {r["episode_id"]: r["task_id"] for r in rows}
    labelled = sorted(
        select_labelled(
            labelled_all,
            label_fraction=stage_cfg.label_fraction,
            labelled_episodes=stage_cfg.labelled_episodes,
            seed=stage_cfg.label_seed,
            task_of=task_of,
        )
    )
    if not labelled:
        raise fmt.DatasetError(f"{cfg.dataset}: the label settings select no episode.")
    log.info("%s: labelled episodes %s", cfg.stage, labelled_per_task(labelled, task_of))
    metas = [fmt.read_meta(cfg.dataset, e) for e in labelled]
    dims = {m.action_dim for m in metas}
    if len(dims) != 1:
        raise fmt.DatasetError(f"{cfg.dataset}: labelled episodes mix action sizes {sorted(dims)}")
    # A policy acts on one camera (recorded in its checkpoint); imported videos name none.
    cameras: dict[str, str] = {}  # camera -> an episode recorded with it
    for meta in metas:
        camera = (meta.env_spec or {}).get("camera")
        if camera is not None:
            cameras.setdefault(camera, meta.episode_id)
    if len(cameras) > 1:
        raise fmt.DatasetError(
            f"{cfg.dataset}: the labelled episodes come from {len(cameras)} cameras ("
            + ", ".join(f"{c!r}: e.g. {e}" for c, e in cameras.items())
            + "); a policy acts on one: keep one camera's episodes per dataset, or choose "
            "tasks= recorded with one."
        )
    return labelled, metas


def _generator(cfg: TrainConfig, use_codes: bool) -> tuple[torch.nn.Module, ckpt.CheckpointInfo]:
    """The transformer a head builds on: with codes (VideoWorld) or code-free (no-LDM)."""
    if use_codes:
        path = stage_checkpoint(cfg.transformer_checkpoint, cfg.out, "transformer")
        transformer, info = load_model(path, "transformer")
        if transformer.config.layout.horizon == 0:
            raise ckpt.CheckpointError(
                f"{info.path}: is the no-LDM ablation; the action head needs a transformer "
                "trained with codes."
            )
        return transformer, info
    given = cfg.transformer_nocodes_checkpoint
    path = Path(given) if given else Path(cfg.out) / "transformer_nocodes"
    try:
        transformer, info = load_model(ckpt.resolve_checkpoint(path), "transformer")
    except ckpt.CheckpointError as error:
        if Path(path).exists():
            raise
        raise ckpt.CheckpointError(
            f"{path}: no trained code-free transformer; produce it with `vw-robot train "
            f"stage=transformer experiment.transformer.use_codes=false dataset=... "
            f"out={cfg.out}` or pass transformer_nocodes_checkpoint=PATH."
        ) from error
    if transformer.config.layout.horizon != 0:
        raise ckpt.CheckpointError(
            f"{info.path}: is a transformer trained with codes; the no-LDM head needs one "
            "trained with experiment.transformer.use_codes=false."
        )
    return transformer, info


def _head_setup(cfg: TrainConfig) -> Setup:
    """Action head (codes from the LDM and the transformer), BC (frames only) or the no-LDM
    head (current frame + the frame the code-free transformer predicts)."""
    stage_cfg = getattr(cfg.experiment, cfg.stage)
    next_frame = stage_reads(cfg.stage) == "next_frame"
    labelled, metas = _labelled_episodes(cfg)
    training, held_out = _validation_split(cfg, labelled, metas)
    inputs = _generated_inputs(cfg, training, metas)
    dataset = ActionChunkDataset(
        cfg.dataset,
        inputs.key,
        stage_cfg.model.chunk,
        training,
        sampled=inputs.sampled,
        sampled_fraction=stage_cfg.sampled_fraction,
        seed=stage_cfg.label_seed,
        task_ids=inputs.task_ids,
        next_tokens=next_frame,
        cache_dir=cfg.cache_dir,
    )
    steps = [fmt.load_steps(cfg.dataset, meta) for meta in metas if meta.episode_id in training]
    state_dim = _state_dim(cfg, steps)
    trunk, encoder = _trunk(cfg, metas[0].image_size, inputs.parents)
    model_config = _head_model_config(
        cfg, metas, trunk, inputs, state_dim, encoder is not None, labelled, held_out
    )
    model = build_model("ActionHead", model_config)
    if encoder is not None:
        model.load_trunk(encoder.state_dict())
        if stage_cfg.freeze_trunk:
            model.trunk.requires_grad_(False)
    if stage_cfg.pretrained:
        _start_from_pretrained(cfg, model, model_config, inputs.parents)
    where = f"{cfg.dataset} ({len(steps)} labelled training episode(s))"
    _set_normalizers(model, steps, state_dim, where)
    loss = _head_loss(stage_cfg, inputs.decoder, state_dim)
    cached = None
    if stage_cfg.cache_features:  # the frozen trunk's outputs, computed once and on disk

        def cached(data: ActionChunkDataset, episodes: list[str]) -> Dataset:
            device = resolve_device(stage_cfg.optim.device)
            return cached_dataset(data, episodes, model, device=device, cache_dir=cfg.cache_dir)

        dataset = cached(dataset, training)
    validate = _head_validation(cfg, inputs, held_out, loss, cached) if held_out else None
    return Setup(model, model_config, dataset, loss, inputs.parents, validate)


def _start_from_pretrained(
    cfg: TrainConfig,
    model: torch.nn.Module,
    model_config: dict[str, Any],
    parents: dict[str, Path],
) -> None:
    """Load the latent-action pretrained network into the head (``pretrained=true``) and add
    it, with the checkpoints it was built on, to ``parents``."""
    stage_cfg = getattr(cfg.experiment, cfg.stage)
    path = stage_checkpoint(cfg.latent_pretrain_checkpoint, cfg.out, "latent_pretrain")
    info = load_pretrained(model, model_config, path, stage_cfg.finetune)
    log.info("%s: starts from %s (finetune=%s)", cfg.stage, info.path, stage_cfg.finetune)
    parents["latent_pretrain"] = info.path
    for stage, parent in info.parents.items():  # the LDM: the video the head learnt from
        parents.setdefault(stage, parent)


def _validation_split(
    cfg: TrainConfig, labelled: list[str], metas: list[fmt.EpisodeMeta]
) -> tuple[list[str], list[str]]:
    """The labelled episodes the head trains on and those it holds out (``val_fraction`` of
    each task's)."""
    stage_cfg = getattr(cfg.experiment, cfg.stage)
    task_of = {m.episode_id: m.task_id for m in metas}
    training, held_out = split_validation(
        labelled, task_of, stage_cfg.val_fraction, stage_cfg.label_seed
    )
    if held_out:
        log.info("%s: validation episodes %s", cfg.stage, labelled_per_task(held_out, task_of))
    return training, held_out


@dataclass
class _HeadInputs:
    """What a head reads besides frames and actions: for the action head and the no-LDM head,
    the export of the transformer's parents and the transformer's own samples; for BC, only
    its task ids."""

    task_ids: list[str]
    key: str | None = None  # the sequence export (tokens, codes); None: frames only
    sampled: dict[str, Any] | None = None  # episode -> the transformer's samples
    horizon: int = 1  # codes per timestep (the LDM's horizon)
    levels: list[int] = dataclasses.field(default_factory=lambda: [8, 5, 5, 5])  # code FSQ
    decoder: torch.nn.Module | None = None  # the no-LDM head decodes next-frame tokens
    parents: dict[str, Path] = dataclasses.field(default_factory=dict)  # stage -> checkpoint


def _bc_task_ids(cfg: TrainConfig, metas: list[fmt.EpisodeMeta]) -> list[str]:
    """The tasks a head without a generator can be told: those of its labelled episodes or,
    with ``labelled_tasks``, every task of the data (those without labels keep the task
    embedding's initial rows: the control a video-using head is compared with)."""
    if getattr(cfg.experiment, cfg.stage).labelled_tasks is None:
        return sorted({m.task_id for m in metas})
    tasks = _tasks(cfg)
    rows = fmt.read_manifest(cfg.dataset)["episodes"]
    return sorted({r["task_id"] for r in rows if tasks is None or r["task_id"] in tasks})


def _generated_inputs(
    cfg: TrainConfig, training: list[str], metas: list[fmt.EpisodeMeta]
) -> _HeadInputs:
    """Load the transformer a head builds on (none for BC), export its parents' tokens and
    codes, and sample its own codes (or next frames) on the training episodes."""
    stage_cfg = getattr(cfg.experiment, cfg.stage)
    use_codes = stage_reads(cfg.stage) == "codes"
    if not stage_reads(cfg.stage):
        return _HeadInputs(task_ids=_bc_task_ids(cfg, metas))
    transformer, trf_info = _generator(cfg, use_codes)
    transformer.to(resolve_device(stage_cfg.optim.device))  # only samples codes here
    tokenizer, tok_info = load_model(ckpt.parent_checkpoint(trf_info, "tokenizer"), "tokenizer")
    ldm, ldm_info = None, None
    inputs = _HeadInputs(task_ids=trf_info.model_config["task_ids"])
    if use_codes:
        ldm, ldm_info = load_model(ckpt.parent_checkpoint(trf_info, "ldm"), "ldm")
        inputs.horizon, inputs.levels = ldm.config.horizon, list(ldm.config.levels)
    else:
        # The no-LDM head reads next frames as the policy will see them: decoded tokens.
        inputs.decoder = tokenizer
    # With the models loaded above: loading them again would draw from the RNG that
    # initialises the head, and change every head trained before this refactor.
    key = sequence_key(tok_info.model_sha256, ldm_info.model_sha256 if ldm_info else None)
    export_sequences(cfg.dataset, tokenizer, ldm, key, tasks=_tasks(cfg), cache_dir=cfg.cache_dir)
    inputs.key = key
    if stage_cfg.sampled_fraction > 0:
        inputs.sampled = sample_codes(
            cfg.dataset, key, training, transformer, trf_info, inputs.task_ids, cfg.cache_dir
        )
    inputs.parents = {"transformer": trf_info.path, **trf_info.parents}
    image_size = metas[0].image_size
    if tok_info.model_config["image_size"] != image_size:
        raise ckpt.CheckpointError(
            f"{tok_info.path}: tokenizer image_size={tok_info.model_config['image_size']} "
            f"but the dataset's frames are {image_size} px."
        )
    return inputs


def _state_dim(cfg: TrainConfig, steps: list[dict[str, np.ndarray]]) -> int:
    """The proprio state's size when the head reads it (``use_state``), else 0."""
    if not getattr(cfg.experiment, cfg.stage).use_state:
        return 0
    dims = {step["state"].shape[1] for step in steps}
    if len(dims) != 1 or 0 in dims:
        raise fmt.DatasetError(
            f"{cfg.dataset}: use_state needs one proprio size in every labelled episode, "
            f"found {sorted(dims)}."
        )
    return dims.pop()


def _trunk(
    cfg: TrainConfig, image_size: int, parents: dict[str, Path]
) -> tuple[dict[str, Any], torch.nn.Module | None]:
    """The conv trunk's sizes, and the encoder it starts from: the LDM's frame encoder with
    ``trunk=ldm``, the tokenizer's with ``trunk=tokenizer`` (None: its own, trained from
    scratch); that model is added to ``parents``."""
    m = getattr(cfg.experiment, cfg.stage).model
    trunk = {"channels": list(m.channels), "num_res_blocks": m.num_res_blocks}
    trunk["feature_dim"] = m.feature_dim
    kind = getattr(cfg.experiment, cfg.stage).trunk
    if kind == "tokenizer":
        return _tokenizer_trunk(cfg, image_size, parents)
    if kind != "ldm":
        return trunk, None
    ldm_path = parents.get("ldm") or stage_checkpoint(cfg.ldm_checkpoint, cfg.out, "ldm")
    ldm_model, ldm_info = load_model(ldm_path, "ldm")
    if ldm_model.config.image_size != image_size:
        raise ckpt.CheckpointError(
            f"{ldm_info.path}: image_size={ldm_model.config.image_size} but the dataset's "
            f"frames are {image_size} px; trunk=ldm needs the same size."
        )
    lc = ldm_model.config
    trunk = {"channels": list(lc.channels), "num_res_blocks": lc.num_res_blocks}
    trunk["feature_dim"] = lc.dim
    parents.setdefault("ldm", ldm_info.path)
    return trunk, ldm_model.encoder


def _tokenizer_trunk(
    cfg: TrainConfig, image_size: int, parents: dict[str, Path]
) -> tuple[dict[str, Any], torch.nn.Module]:
    """``trunk=tokenizer``: the tokenizer's encoder (its latents before quantisation, one
    channel per FSQ level) and its sizes; the tokenizer is added to ``parents``."""
    given = parents.get("tokenizer")
    path = given or stage_checkpoint(cfg.tokenizer_checkpoint, cfg.out, "tokenizer")
    tokenizer, info = load_model(path, "tokenizer")
    tc = tokenizer.config
    if tc.image_size != image_size:
        raise ckpt.CheckpointError(
            f"{info.path}: image_size={tc.image_size} but the dataset's frames are "
            f"{image_size} px; trunk=tokenizer needs the same size."
        )
    trunk = {"channels": list(tc.channels), "num_res_blocks": tc.num_res_blocks}
    trunk["feature_dim"] = len(tc.levels)
    parents.setdefault("tokenizer", info.path)
    return trunk, tokenizer.encoder


def _head_model_config(
    cfg: TrainConfig,
    metas: list[fmt.EpisodeMeta],
    trunk: dict[str, Any],
    inputs: _HeadInputs,
    state_dim: int,
    unit_inputs: bool,
    labelled: list[str],
    held_out: list[str],
) -> dict[str, Any]:
    """The ActionHead's config, with what its checkpoint must say about the env it acts in."""
    stage_cfg = getattr(cfg.experiment, cfg.stage)
    m = stage_cfg.model
    image_size = metas[0].image_size
    model_config = {
        "image_size": image_size,
        "down_factor": 2 ** len(trunk["channels"]),
        **trunk,
        "unit_inputs": unit_inputs,
        "use_codes": stage_reads(cfg.stage) == "codes",
        "use_next_frame": stage_reads(cfg.stage) == "next_frame",
        "horizon": inputs.horizon,
        "code_levels": inputs.levels,
        "code_embed_dim": m.code_embed_dim,
        "hidden": m.hidden,
        "action_dim": metas[0].action_dim,
        "chunk": m.chunk,
        "state_dim": state_dim,
        "num_tasks": len(inputs.task_ids) if stage_cfg.task_conditioning else 0,
        "task_ids": inputs.task_ids,
        # What a checkpoint needs to say about the env it acts in.
        "env": {
            "image_size": image_size,
            "camera": metas[0].env_spec.get("camera") if metas[0].env_spec else None,
            "labelled_episodes": labelled,
            "validation_episodes": held_out,
        },
    }
    if stage_cfg.conditioning != "concat":  # only then: earlier checkpoints' configs resume
        model_config["conditioning"] = stage_cfg.conditioning
    model_config.update(_frame_reading(cfg, metas))
    return model_config


def _frame_reading(cfg: TrainConfig, metas: list[fmt.EpisodeMeta]) -> dict[str, Any]:
    """The head's ``view_trunks`` (with the number of views its frames stack, from their
    recorded camera) and ``pool``, only where they are on: earlier checkpoints' configs, which
    have neither, resume and rebuild as the flatten/shared-trunk head they are."""
    m = getattr(cfg.experiment, cfg.stage).model
    out: dict[str, Any] = {"pool": m.pool} if m.pool != "flatten" else {}
    if not m.view_trunks:
        return out
    key = f"experiment.{cfg.stage}.model.view_trunks"
    cameras = {(meta.env_spec or {}).get("camera") for meta in metas}
    if None in cameras:
        raise ConfigError(
            f"{key}: {cfg.dataset} has episodes with no recorded camera (imported video), so "
            "the views stacked in their frames are unknown; set it false for this data"
        )
    if len(cameras) > 1:
        raise ConfigError(
            f"{key}: {cfg.dataset}'s episodes come from cameras {sorted(cameras)}; per-view "
            "trunks need one layout of views (choose tasks= recorded with one camera)"
        )
    camera = cameras.pop()
    # "front+top": views stacked top to bottom (vw_robot.envs.rendering.ViewLayout, which the
    # training layer does not import).
    views = len(camera.split("+"))
    if views < 2:
        raise ConfigError(
            f"{key}: {cfg.dataset}'s frames are one view (camera={camera!r}); a trunk per view "
            "needs two or more stacked (collect with camera=front+top), or set it false"
        )
    return {**out, "view_trunks": True, "num_views": views}


def _set_normalizers(
    model: torch.nn.Module, steps: list[dict[str, np.ndarray]], state_dim: int, where: str
) -> None:
    """Store the training episodes' action (and state) statistics in the head."""
    actions = np.concatenate([step["actions"] for step in steps])  # (N, A) float32
    action_statistics(actions, where)  # refuses statistics that are not finite, naming them
    # float32 statistics, as every earlier run computed them: their checkpoints reproduce.
    model.set_normalizer(torch.from_numpy(actions.mean(0)), torch.from_numpy(actions.std(0)))
    if state_dim:
        states = np.concatenate([step["state"] for step in steps]).astype(np.float64)
        model.set_state_normalizer(torch.tensor(states.mean(0)), torch.tensor(states.std(0)))


def _head_loss(
    stage_cfg: ActionHeadStage, decoder: torch.nn.Module | None, state_dim: int
) -> LossFn:
    """The head's chunk loss on a batch; frames (and decoded next frames, kept aligned) are
    randomly shifted while training (``augment_shift``)."""
    shift = stage_cfg.augment_shift
    bf16 = stage_cfg.optim.precision == "bf16"

    def loss(m: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        head = _unwrap(m)
        if "trunk_output" in batch:  # a frozen trunk's cached output (cache_features)
            predicted = m(
                None,
                batch.get("codes"),
                state=batch["state"] if state_dim else None,
                task=batch["task_index"] if head.config.num_tasks else None,
                trunk_output=batch["trunk_output"],
            )
            return head.chunk_loss(predicted, batch["actions"], batch["action_mask"]), {}
        next_frames = None
        if decoder is not None:
            tokens = batch["next_tokens"]  # (B, N)
            grid = int(round(tokens.shape[1] ** 0.5))
            with torch.no_grad():
                next_frames = decoder.to(tokens.device).decode(tokens.view(-1, grid, grid))
        frames = batch["frames"]  # (B, 3, S, S) uint8
        if shift and head.training:
            if next_frames is None:
                frames = head.random_shift(frames, shift)
            else:  # the same shift for both frames: they must stay aligned
                both = head.random_shift(torch.cat([frames.float() / 255, next_frames], 1), shift)
                frames = (both[:, :3] * 255).round().to(torch.uint8)
                next_frames = both[:, 3:]
        if bf16:
            # The shift leaves frames channels-last in memory; oneDNN's bf16 convolutions run
            # their backward about twice as fast on contiguous ones (benchmarks/bench_head.py).
            frames = frames.contiguous()
            next_frames = None if next_frames is None else next_frames.contiguous()
        predicted = m(
            frames,
            batch.get("codes"),
            state=batch["state"] if state_dim else None,
            next_frames=next_frames,
            task=batch["task_index"] if head.config.num_tasks else None,
        )
        return head.chunk_loss(predicted, batch["actions"], batch["action_mask"]), {}

    return loss


def _head_validation(
    cfg: TrainConfig,
    inputs: _HeadInputs,
    held_out: list[str],
    loss: LossFn,
    cached: Callable[[ActionChunkDataset, list[str]], Dataset] | None = None,
) -> Callable[[torch.nn.Module], float]:
    """The mean loss over the held-out episodes' items (read through ``cached``: with their
    frozen trunk's cached outputs)."""
    stage_cfg = getattr(cfg.experiment, cfg.stage)
    # The real clips' codes (no sampled ones), no augmentation: a fixed yardstick.
    val_data = ActionChunkDataset(
        cfg.dataset,
        inputs.key,
        stage_cfg.model.chunk,
        held_out,
        task_ids=inputs.task_ids,
        next_tokens=stage_reads(cfg.stage) == "next_frame",
        cache_dir=cfg.cache_dir,
    )
    if cached is not None:
        val_data = cached(val_data, held_out)

    def validate(m: torch.nn.Module) -> float:
        device = next(m.parameters()).device
        total, count = 0.0, 0
        for start in range(0, len(val_data), 256):
            indices = list(range(start, min(start + 256, len(val_data))))
            batch = {k: v.to(device) for k, v in val_data.batch(indices).items()}
            total += float(loss(m, batch)[0]) * len(indices)
            count += len(indices)
        return total / count

    return validate


# --- latent-action pretraining: the head's network predicts the LDM's codes on all video ---


def _latent_pretrain_setup(cfg: TrainConfig) -> Setup:
    """The head's network with an output layer of code logits, on every episode of the tasks
    (with actions or not), its targets the LDM's codes of the next chunk steps."""
    stage_cfg = cfg.experiment.latent_pretrain
    key, tokenizer_info, ldm_info = export(
        cfg.dataset,
        cfg.out,
        tokenizer_checkpoint=cfg.tokenizer_checkpoint,
        ldm_checkpoint=cfg.ldm_checkpoint,
        tasks=_tasks(cfg),
        device=stage_cfg.optim.device,
        cache_dir=cfg.cache_dir,
    )
    tasks = _tasks(cfg)
    rows = fmt.read_manifest(cfg.dataset)["episodes"]
    rows = [r for r in rows if tasks is None or r["task_id"] in tasks]
    task_ids = sorted({r["task_id"] for r in rows})
    dataset = LatentActionDataset(
        cfg.dataset,
        key,
        stage_cfg.model.chunk,
        [r["episode_id"] for r in rows],
        task_ids=task_ids,
        cache_dir=cfg.cache_dir,
    )
    image_size = fmt.read_meta(cfg.dataset, rows[0]["episode_id"]).image_size
    if ldm_info.model_config["image_size"] != image_size:
        raise ckpt.CheckpointError(
            f"{ldm_info.path}: image_size={ldm_info.model_config['image_size']} but the "
            f"dataset's frames are {image_size} px."
        )
    parents = {"tokenizer": tokenizer_info.path, "ldm": ldm_info.path}
    trunk, encoder = _trunk(cfg, image_size, parents)
    m = stage_cfg.model
    model_config = {
        "image_size": image_size,
        "down_factor": 2 ** len(trunk["channels"]),
        **trunk,
        "unit_inputs": encoder is not None,
        "use_codes": False,
        "predict_codes": True,
        "horizon": ldm_info.model_config["horizon"],
        "code_levels": list(ldm_info.model_config["levels"]),
        "code_embed_dim": m.code_embed_dim,
        "hidden": m.hidden,
        "chunk": m.chunk,
        "num_tasks": len(task_ids) if stage_cfg.task_conditioning else 0,
        "task_ids": task_ids,
    }
    if stage_cfg.conditioning != "concat":
        model_config["conditioning"] = stage_cfg.conditioning
    if stage_cfg.model.view_trunks:  # every video's views, as the heads of this data see them
        metas = [fmt.read_meta(cfg.dataset, r["episode_id"]) for r in rows]
    else:
        metas = []
    model_config.update(_frame_reading(cfg, metas))
    model = build_model("ActionHead", model_config)
    if encoder is not None:
        model.load_trunk(encoder.state_dict())
    shift, bf16 = stage_cfg.augment_shift, stage_cfg.optim.precision == "bf16"

    def loss(m: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        head = _unwrap(m)
        frames = batch["frames"]  # (B, 3, S, S) uint8
        if shift and head.training:
            frames = head.random_shift(frames, shift)
        if bf16:
            frames = frames.contiguous()  # as the head's loss: faster bf16 convolutions
        task = batch["task_index"] if head.config.num_tasks else None
        logits = m(frames, task=task)  # (B, k, V)
        codes, mask = batch["codes"], batch["code_mask"]  # (B, k) each
        hits = ((logits.argmax(-1) == codes) & mask).sum() / mask.sum().clamp_min(1)
        return head.code_loss(logits, codes, mask), {"code_accuracy": float(hits)}

    return Setup(model, model_config, dataset, loss, parents)


_HEAD = "{} -> action chunk; its folder is a policy (`vw-robot eval policy=...`)"


def _head_folder(cfg: TrainConfig) -> str:
    """A head's run folder: its head name, labels and training seed (``videoworld-25pct_seed0``,
    :func:`vw_robot.heads.run_name`), the name ``vw-robot run`` and ``vw-robot study`` give it,
    so heads of one stage on other labels or seeds get folders of their own."""
    section = getattr(cfg.experiment, cfg.stage)
    return run_name(
        head_of_stage(cfg.stage, section.pretrained).name,
        section.label_fraction,
        section.optim.seed,
        section.labelled_episodes,
    )


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "tokenizer",
            "frame tokenizer: 64 px frame <-> grid of FSQ tokens",
            _tokenizer_setup,
            pictures.tokenizer_pictures,
        ),
        Stage(
            "ldm",
            "latent dynamics model: H discrete codes of x_t -> x_{t+1..t+H}",
            _ldm_setup,
            pictures.ldm_pictures,
        ),
        Stage(
            "transformer",
            "GPT over [frame tokens][SEP][codes] per timestep (code-free: the no-LDM ablation)",
            _transformer_setup,
            pictures.transformer_pictures,
            # The ablation's transformer gets its own folder beside the one with codes.
            lambda cfg: (
                "transformer" if cfg.experiment.transformer.use_codes else "transformer_nocodes"
            ),
        ),
        Stage(
            "action_head",
            _HEAD.format("frame + LDM/transformer codes"),
            _head_setup,
            run_folder=_head_folder,
        ),
        Stage("bc", _HEAD.format("behaviour cloning: frame"), _head_setup, run_folder=_head_folder),
        Stage(
            "noldm_head",
            _HEAD.format("frame + predicted next frame"),
            _head_setup,
            run_folder=_head_folder,
        ),
        Stage(
            "latent_pretrain",
            "the head's network on every video: frame (+ task) -> the LDM's codes of the next "
            "chunk steps; heads fine-tune from it (experiment.<head>.pretrained=true)",
            _latent_pretrain_setup,
        ),
    )
}


def run_stage(cfg: TrainConfig) -> dict[str, Any]:
    """Train ``cfg.stage``; returns the loop's result plus the run folder (and pictures)."""
    cfg.validate()
    manifest = fmt.read_manifest(cfg.dataset)  # a clear error for a missing dataset, first
    present = {row["task_id"] for row in manifest["episodes"]}
    absent = sorted(set(cfg.tasks) - present)
    if absent:
        raise fmt.DatasetError(
            f"{cfg.dataset}: no episodes of task(s) {', '.join(absent)} (tasks=); the dataset "
            f"has {', '.join(sorted(present))}."
        )
    stage = STAGES[cfg.stage]
    stage_cfg = getattr(cfg.experiment, cfg.stage)
    run_dir = Path(cfg.out) / stage.run_name(cfg)
    seed_everything(stage_cfg.optim.seed)
    setup = stage.setup(cfg)
    log.info("train %s: %d samples, run folder %s", cfg.stage, len(setup.dataset), run_dir)
    result = train(
        stage=cfg.stage,
        model=setup.model,
        dataset=setup.dataset,
        loss_fn=setup.loss,
        optim=stage_cfg.optim,
        run_dir=run_dir,
        model_config=setup.model_config,
        config_yaml=OmegaConf.to_yaml(OmegaConf.structured(cfg)),
        parents=setup.parents,
        validate=setup.validate,
        resume_changed=cfg.resume_changed,
    )
    result["run_dir"] = str(run_dir)
    if cfg.pictures and stage.pictures is not None:
        out = run_dir / pictures.PICTURES_DIR
        result["pictures"] = stage.pictures(
            setup.model, cfg.dataset, out, setup.parents, _tasks(cfg), cfg.cache_dir
        )
        log.info("%s pictures: %s", cfg.stage, result["pictures"])
    return result
