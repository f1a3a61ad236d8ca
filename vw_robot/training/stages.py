"""The pipeline's training stages: tokenizer -> latent dynamics model -> transformer.

Each stage trains in its own run folder ``<out>/<stage>/`` through the shared loop, records
the checkpoints it was built on, and writes its pictures at the end.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from vw_robot.data import format as fmt
from vw_robot.training import checkpoint as ckpt
from vw_robot.training.config import ExportCodesConfig, TrainConfig
from vw_robot.training.loop import train

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
    raise ValueError(f"stage={stage!r} has no model; known: tokenizer, ldm, transformer.")


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
    given = cfg.tokenizer_checkpoint if stage == "tokenizer" else cfg.ldm_checkpoint
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
            return out["loss"], {}

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

        result["pictures"] = pictures.for_stage(cfg.stage, run_dir, cfg.dataset, model, parents)
    return result


def _transformer_setup(cfg: TrainConfig) -> tuple[torch.nn.Module, dict, Any, dict[str, str]]:
    from vw_robot.data.sequences import SequenceDataset
    from vw_robot.models.transformer import SequenceLayout

    stage_cfg = cfg.experiment.transformer
    key, tokenizer_info, ldm_info = export(cfg, use_codes=stage_cfg.use_codes)
    tok_cfg = tokenizer_info.model_config
    grid = tok_cfg["image_size"] // tok_cfg["down_factor"]
    tokenizer_vocab = _prod(tok_cfg["levels"])
    horizon = ldm_info.model_config["horizon"] if ldm_info else 0
    code_vocab = _prod(ldm_info.model_config["levels"]) if ldm_info else 1
    layout = SequenceLayout(
        num_frame_tokens=grid * grid,
        frame_vocab=tokenizer_vocab,
        horizon=horizon,
        code_vocab=code_vocab,
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


def _prod(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


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
    device = getattr(cfg, "device", "auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    export_sequences(cfg.dataset, tokenizer, ldm, key, device=device)
    return key, tokenizer_info, ldm_info
