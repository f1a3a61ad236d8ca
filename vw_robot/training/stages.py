"""The pipeline's training stages: tokenizer -> latent dynamics model -> transformer.

Each stage trains in its own run folder ``<out>/<stage>/`` through the shared loop, records
the checkpoints it was built on, and writes its pictures at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from vw_robot.data import format as fmt
from vw_robot.training import checkpoint as ckpt
from vw_robot.training.config import HEAD_STAGES, ExportCodesConfig, TrainConfig
from vw_robot.training.loop import resolve_device, train

log = logging.getLogger(__name__)


def build_model(stage: str, model_config: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a stage's model from the plain-dict config stored in its checkpoints."""
    if stage == "tokenizer":
        from vw_robot.models.tokenizer import FrameTokenizer, TokenizerConfig

        return FrameTokenizer(TokenizerConfig(**model_config))
    if stage == "ldm":
        from vw_robot.models.latent_dynamics import LatentDynamicsConfig, LatentDynamicsModel

        return LatentDynamicsModel(LatentDynamicsConfig(**model_config))
    if stage == "transformer":
        from vw_robot.models.transformer import SequenceLayout, TransformerConfig, VideoTransformer

        config = dict(model_config)
        layout = SequenceLayout(**config.pop("layout"))
        config.pop("task_ids", None)
        return VideoTransformer(TransformerConfig(layout=layout, **config))
    if stage in HEAD_STAGES:
        from vw_robot.models.action_head import ActionHead, ActionHeadConfig

        config = {k: v for k, v in model_config.items() if k not in ("env", "task_ids")}
        return ActionHead(ActionHeadConfig(**config))
    raise ValueError(
        f"stage={stage!r} has no model; known: tokenizer, ldm, transformer, "
        f"{', '.join(HEAD_STAGES)}."
    )


def load_stage(path: str | Path, stage: str) -> tuple[torch.nn.Module, ckpt.CheckpointInfo]:
    """Load a trained stage's model from a checkpoint or run folder (eval mode).

    Raises:
        CheckpointError: missing, tampered, or a checkpoint of another stage.
    """
    info = ckpt.read_info(path, stage=stage)
    model = build_model(stage, info.model_config)
    weights = ckpt.load_weights(info.path)
    model.load_state_dict({k: v for k, v in weights.items() if k in model.state_dict()})
    return model.eval(), info


def _stage_checkpoint(cfg: TrainConfig | ExportCodesConfig, stage: str) -> Path:
    given = getattr(cfg, f"{stage}_checkpoint", None)
    path = Path(given) if given else Path(cfg.out) / stage
    try:
        return ckpt.resolve_checkpoint(path)
    except ckpt.CheckpointError:
        raise ckpt.CheckpointError(
            f"{path}: no trained {stage} checkpoint; produce it with `vw-robot train "
            f"stage={stage} dataset=... out={cfg.out}` or pass {stage}_checkpoint=PATH."
        ) from None


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def run_stage(cfg: TrainConfig) -> dict[str, Any]:
    """Train ``cfg.stage``; returns the loop's result plus the run folder."""
    from vw_robot.data.dataset import ClipDataset

    cfg.validate()
    fmt.read_manifest(cfg.dataset)  # a clear error for a missing dataset, before any work
    exp = cfg.experiment
    stage_cfg = getattr(exp, cfg.stage)
    run_name = cfg.run_name or (
        "transformer_nocodes"
        if cfg.stage == "transformer" and not stage_cfg.use_codes
        else cfg.stage
    )
    run_dir = Path(cfg.out) / run_name
    config_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    _seeded(stage_cfg.optim.seed)
    parents: dict[str, str] = {}
    if cfg.stage == "tokenizer":
        model_config = dataclasses.asdict(exp.tokenizer.model)
        model = build_model("tokenizer", model_config)
        dataset = ClipDataset(cfg.dataset, clip_len=1)

        def loss_fn(m: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
            out = m(batch["frames"][:, 0])  # (B, 3, S, S) uint8
            return out["loss"], {"l1": out["l1"]}

    elif cfg.stage == "ldm":
        model_config = dataclasses.asdict(exp.ldm.model)
        model = build_model("ldm", model_config)
        dataset = ClipDataset(cfg.dataset, clip_len=exp.ldm.model.horizon + 1)

        def loss_fn(m: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
            out = m(batch["frames"])  # (B, H+1, 3, S, S) uint8
            # Distinct codes in the batch: 1 means the codes collapsed (they carry nothing).
            return out["loss"], {"distinct_codes": float(out["codes"].unique().numel())}

    elif cfg.stage in HEAD_STAGES:
        model, model_config, dataset, parents = _action_head_setup(cfg)
        # The no-LDM head reads next frames as the policy will see them: decoded tokens.
        decoder = None
        if cfg.stage == "noldm_head":
            decoder = load_stage(parents["tokenizer"], "tokenizer")[0]

        def loss_fn(m: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
            head = m.module if hasattr(m, "module") else m
            next_frames = None
            if decoder is not None:
                tokens = batch["next_tokens"]  # (B, N)
                grid = int(round(tokens.shape[1] ** 0.5))
                with torch.no_grad():
                    next_frames = decoder.to(tokens.device).decode(tokens.view(-1, grid, grid))
            # Through DDP when wrapped.
            predicted = m(batch["frames"], batch.get("codes"), next_frames=next_frames)
            return head.chunk_loss(predicted, batch["actions"], batch["action_mask"]), {}

    else:
        model, model_config, dataset, parents = _transformer_setup(cfg)

        def loss_fn(m: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
            layout = (m.module if hasattr(m, "module") else m).config.layout
            codes = batch.get("codes") if layout.horizon > 0 else None
            ids = layout.build(batch["tokens"], codes)  # (B, T * step_len)
            valid = batch.get("codes_valid") if codes is not None else None
            targets = layout.targets(ids, valid=valid)
            _, loss = m(ids, batch["task_index"], targets)
            return loss, {}

    log.info("train %s: %d samples, run folder %s", cfg.stage, len(dataset), run_dir)
    result = train(
        stage=cfg.stage,
        model=model,
        dataset=dataset,
        loss_fn=loss_fn,
        optim=stage_cfg.optim,
        run_dir=run_dir,
        model_config=model_config,
        config_yaml=config_yaml,
        parents=parents,
    )
    result["run_dir"] = str(run_dir)
    if cfg.pictures:
        from vw_robot.training import pictures

        if cfg.stage in ("tokenizer", "ldm", "transformer"):
            result["pictures"] = pictures.for_stage(cfg.stage, run_dir, cfg.dataset, model, parents)
    return result


def _transformer_setup(cfg: TrainConfig) -> tuple[torch.nn.Module, dict, Any, dict[str, str]]:
    from vw_robot.data.sequences import SequenceDataset

    stage_cfg = cfg.experiment.transformer
    key, tokenizer_info, ldm_info = export(cfg, use_codes=stage_cfg.use_codes)
    layout = sequence_layout(
        tokenizer_info.model_config, ldm_info.model_config if ldm_info else None
    )
    dataset = SequenceDataset(cfg.dataset, key, stage_cfg.model.max_timesteps)
    model_config = {
        **dataclasses.asdict(stage_cfg.model),
        "layout": dataclasses.asdict(layout),
        "num_tasks": len(dataset.task_ids),
        "task_ids": dataset.task_ids,
    }
    model = build_model("transformer", model_config)
    parents = {"tokenizer": str(tokenizer_info.path)}
    if ldm_info is not None:
        parents["ldm"] = str(ldm_info.path)
    return model, model_config, dataset, parents


def sequence_layout(tokenizer_config: dict[str, Any], ldm_config: dict[str, Any] | None) -> Any:
    """The transformer's vocabulary and per-timestep layout implied by the tokenizer's and the
    latent dynamics model's configs (no LDM: the no-code ablation)."""
    from vw_robot.models.transformer import SequenceLayout

    grid = tokenizer_config["image_size"] // tokenizer_config["down_factor"]
    return SequenceLayout(
        num_frame_tokens=grid * grid,
        frame_vocab=math.prod(tokenizer_config["levels"]),
        horizon=ldm_config["horizon"] if ldm_config else 0,
        code_vocab=math.prod(ldm_config["levels"]) if ldm_config else 1,
    )


def export(
    cfg: TrainConfig | ExportCodesConfig, *, use_codes: bool = True
) -> tuple[str, ckpt.CheckpointInfo, ckpt.CheckpointInfo | None]:
    """Export tokens (and codes) for ``cfg.dataset`` with the pipeline's checkpoints."""
    from vw_robot.data.sequences import export_sequences, sequence_key

    tokenizer, tokenizer_info = load_stage(_stage_checkpoint(cfg, "tokenizer"), "tokenizer")
    ldm, ldm_info = (None, None)
    if use_codes:
        ldm, ldm_info = load_stage(_stage_checkpoint(cfg, "ldm"), "ldm")
    key = sequence_key(tokenizer_info.model_sha256, ldm_info.model_sha256 if ldm_info else None)
    device = resolve_device(getattr(cfg, "device", "auto"))
    export_sequences(cfg.dataset, tokenizer, ldm, key, device=device)
    return key, tokenizer_info, ldm_info


def _action_head_setup(cfg: TrainConfig) -> tuple[torch.nn.Module, dict, Any, dict[str, str]]:
    """Action head (codes from the LDM and the transformer) or BC (frames only)."""
    import numpy as np

    from vw_robot.data.dataset import labelled_per_task, select_labelled
    from vw_robot.data.sequences import ActionChunkDataset, export_sequences, sequence_key

    stage_cfg = getattr(cfg.experiment, cfg.stage)
    use_codes = cfg.stage == "action_head"
    next_frame = cfg.stage == "noldm_head"
    manifest = fmt.read_manifest(cfg.dataset)
    labelled_all = [r["episode_id"] for r in manifest["episodes"] if r["has_actions"]]
    if not labelled_all:
        raise fmt.DatasetError(
            f"{cfg.dataset}: no episode has actions; an action head needs "
            "some (collect demonstrations with `vw-robot collect`)."
        )
    task_of = {r["episode_id"]: r["task_id"] for r in manifest["episodes"]}
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
    image_size = metas[0].image_size
    parents: dict[str, str] = {}
    key, sampled, horizon, levels = None, None, 1, [8, 5, 5, 5]
    if use_codes:
        transformer, trf_info = load_stage(_stage_checkpoint(cfg, "transformer"), "transformer")
        transformer.to(resolve_device(stage_cfg.optim.device))  # only samples codes here
        if transformer.config.layout.horizon == 0:
            raise ckpt.CheckpointError(
                f"{trf_info.path}: is the no-LDM ablation; the action "
                "head needs a transformer trained with codes."
            )
        tokenizer, tok_info = load_stage(trf_info.parents["tokenizer"], "tokenizer")
        ldm, ldm_info = load_stage(trf_info.parents["ldm"], "ldm")
        key = sequence_key(tok_info.model_sha256, ldm_info.model_sha256)
        export_sequences(cfg.dataset, tokenizer, ldm, key)
        task_ids = trf_info.model_config["task_ids"]
        if stage_cfg.sampled_fraction > 0:
            sampled = sample_codes(cfg.dataset, key, labelled, transformer, trf_info, task_ids)
        horizon, levels = ldm.config.horizon, list(ldm.config.levels)
        parents = {"transformer": str(trf_info.path), **trf_info.parents}
    elif next_frame:
        transformer, trf_info = _nocodes_transformer(cfg)
        transformer.to(resolve_device(stage_cfg.optim.device))
        tokenizer, tok_info = load_stage(trf_info.parents["tokenizer"], "tokenizer")
        key = sequence_key(tok_info.model_sha256, None)
        export_sequences(cfg.dataset, tokenizer, None, key)
        task_ids = trf_info.model_config["task_ids"]
        if stage_cfg.sampled_fraction > 0:
            sampled = sample_codes(cfg.dataset, key, labelled, transformer, trf_info, task_ids)
        parents = {"transformer": str(trf_info.path), **trf_info.parents}
    else:
        task_ids = sorted({row["task_id"] for row in manifest["episodes"]})
    if parents and tok_info.model_config["image_size"] != image_size:
        raise ckpt.CheckpointError(
            f"{tok_info.path}: tokenizer image_size={tok_info.model_config['image_size']} "
            f"but the dataset's frames are {image_size} px."
        )
    dataset = ActionChunkDataset(
        cfg.dataset,
        key,
        stage_cfg.model.chunk,
        labelled,
        sampled=sampled,
        sampled_fraction=stage_cfg.sampled_fraction,
        seed=stage_cfg.label_seed,
        task_ids=task_ids,
        next_tokens=next_frame,
    )
    m = stage_cfg.model
    model_config = {
        "image_size": image_size,
        "down_factor": 2 ** len(m.channels),
        "channels": list(m.channels),
        "num_res_blocks": m.num_res_blocks,
        "feature_dim": m.feature_dim,
        "use_codes": use_codes,
        "use_next_frame": next_frame,
        "horizon": horizon,
        "code_levels": levels,
        "code_embed_dim": m.code_embed_dim,
        "hidden": m.hidden,
        "action_dim": dims.pop(),
        "chunk": m.chunk,
        "state_dim": 0,
        "task_ids": task_ids,
        # What a checkpoint needs to say about the env it acts in.
        "env": {
            "image_size": image_size,
            "camera": metas[0].env_spec.get("camera") if metas[0].env_spec else None,
            "labelled_episodes": labelled,
        },
    }
    model = build_model(cfg.stage, model_config)
    actions = np.concatenate([fmt.load_steps(cfg.dataset, meta)["actions"] for meta in metas])
    model.set_normalizer(torch.from_numpy(actions.mean(0)), torch.from_numpy(actions.std(0)))
    return model, model_config, dataset, parents


def _nocodes_transformer(cfg: TrainConfig) -> tuple[torch.nn.Module, ckpt.CheckpointInfo]:
    """The code-free transformer the no-LDM head builds on (``<out>/transformer_nocodes``)."""
    given = cfg.transformer_nocodes_checkpoint
    path = Path(given) if given else Path(cfg.out) / "transformer_nocodes"
    try:
        transformer, info = load_stage(ckpt.resolve_checkpoint(path), "transformer")
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


@torch.no_grad()
def sample_codes(
    root: str,
    key: str,
    episode_ids: list[str],
    transformer: torch.nn.Module,
    info: ckpt.CheckpointInfo,
    task_ids: list[str],
) -> dict[str, Any]:
    """The codes the transformer samples (greedy) at every timestep of the given episodes,
    with the episode's real past as context; cached under the transformer's checksum.

    For the code-free transformer (the no-LDM ablation) it is the next frame's tokens that are
    sampled, from a context one timestep shorter (the predicted frame fills the window).
    Returns episode id -> (F, H) codes, or (F, N) next-frame tokens.
    """
    import numpy as np

    from vw_robot.data.sequences import SEQUENCES_DIR
    from vw_robot.io import atomic_write

    layout, window = transformer.config.layout, transformer.config.max_timesteps
    frames_mode = layout.horizon == 0
    if frames_mode:
        window -= 1  # the predicted frame takes the last timestep of the window
        if window < 1:
            raise ckpt.CheckpointError(
                f"{info.path}: max_timesteps={transformer.config.max_timesteps} leaves no room "
                "for a context before the predicted frame; train with max_timesteps >= 2."
            )
    kind = "sampled_next_tokens" if frames_mode else "sampled_codes"
    folder = Path(root) / fmt.CACHE_DIR / kind / info.model_sha256[:16]
    device = transformer.head.weight.device
    out: dict[str, Any] = {}
    todo: dict[str, tuple[torch.Tensor, torch.Tensor | None, int]] = {}
    for episode_id in episode_ids:
        path = folder / f"{episode_id}.npy"
        if path.exists():
            out[episode_id] = np.load(path, allow_pickle=False)
            continue
        meta = fmt.read_meta(root, episode_id)
        with np.load(
            Path(root) / fmt.CACHE_DIR / SEQUENCES_DIR / key / f"{episode_id}.npz",
            allow_pickle=False,
        ) as npz:
            tokens = torch.from_numpy(npz["tokens"].astype(np.int64))  # (F, N)
            codes = None if frames_mode else torch.from_numpy(npz["codes"].astype(np.int64))
        todo[episode_id] = (tokens, codes, task_ids.index(meta.task_id))
    # Every (episode, t) with the same history length shares batched calls, across episodes:
    # one autoregressive decode per batch of 64 instead of one per early timestep.
    by_history: dict[int, list[tuple[str, int]]] = {}
    for episode_id, (tokens, _, _) in todo.items():
        for t in range(len(tokens)):
            by_history.setdefault(min(t, window - 1), []).append((episode_id, t))
    sampled = {
        e: torch.zeros_like(tokens if frames_mode else codes)  # (F, N) or (F, H)
        for e, (tokens, codes, _) in todo.items()
    }
    for history, rows in by_history.items():
        for i in range(0, len(rows), 64):
            group = rows[i : i + 64]
            tok = torch.stack([todo[e][0][t - history : t + 1] for e, t in group]).to(device)
            tasks = torch.tensor([todo[e][2] for e, _ in group], device=device)
            if frames_mode:
                context = layout.build_context(tok, None)  # (b, L), whole timesteps
                result = transformer.generate_frame_tokens(context, tasks)
            else:
                cod = torch.stack([todo[e][1][t - history : t] for e, t in group]).to(device)
                context = layout.build_context(tok, cod)  # (b, L)
                result = transformer.generate_codes(context, tasks)
            for (e, t), row in zip(group, result.cpu(), strict=True):
                sampled[e][t] = row
    for episode_id, values in sampled.items():
        array = values.numpy().astype(np.int16)
        path = folder / f"{episode_id}.npy"
        atomic_write(path, lambda f, a=array: np.save(f, a))
        out[episode_id] = array
    return out
