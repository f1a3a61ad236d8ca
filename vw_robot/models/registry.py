"""Build and load any of the pipeline's models from what a checkpoint records.

A checkpoint's ``info.json`` names its model class and the plain-dict config that rebuilds it;
this registry maps the class name to a builder, so loading a model needs only
:mod:`vw_robot.models` and the checkpoint reader (:mod:`vw_robot.checkpoint`), never the
training recipes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from vw_robot import checkpoint as ckpt
from vw_robot.models.action_head import ActionHead, ActionHeadConfig
from vw_robot.models.latent_dynamics import LatentDynamicsConfig, LatentDynamicsModel
from vw_robot.models.sequence_layout import SequenceLayout
from vw_robot.models.tokenizer import FrameTokenizer, TokenizerConfig
from vw_robot.models.transformer import TransformerConfig, VideoTransformer


def _tokenizer(config: dict[str, Any]) -> torch.nn.Module:
    return FrameTokenizer(TokenizerConfig(**config))


def _latent_dynamics(config: dict[str, Any]) -> torch.nn.Module:
    return LatentDynamicsModel(LatentDynamicsConfig(**config))


def _transformer(config: dict[str, Any]) -> torch.nn.Module:
    config = dict(config)
    layout = SequenceLayout(**config.pop("layout"))
    config.pop("task_ids", None)  # recorded for the policy, not a model setting
    return VideoTransformer(TransformerConfig(layout=layout, **config))


def _action_head(config: dict[str, Any]) -> torch.nn.Module:
    # ``env`` and ``task_ids`` describe what the head acts in, for the policy.
    kept = {k: v for k, v in config.items() if k not in ("env", "task_ids")}
    return ActionHead(ActionHeadConfig(**kept))


# Model class name (as recorded in info.json) -> builder from the recorded config.
MODELS: dict[str, Callable[[dict[str, Any]], torch.nn.Module]] = {
    "FrameTokenizer": _tokenizer,
    "LatentDynamicsModel": _latent_dynamics,
    "VideoTransformer": _transformer,
    "ActionHead": _action_head,
}


def build_model(model_class: str, model_config: dict[str, Any]) -> torch.nn.Module:
    """A freshly initialised model of ``model_class`` from its recorded config.

    Raises:
        CheckpointError: an unknown class, or a config the class does not accept.
    """
    if model_class not in MODELS:
        raise ckpt.CheckpointError(
            f"model_class={model_class!r} is unknown; known: {', '.join(MODELS)}."
        )
    try:
        return MODELS[model_class](model_config)
    except TypeError as exc:  # an unexpected or missing config key
        raise ckpt.CheckpointError(f"{model_class} config does not fit: {exc}") from None


def load_model(
    path: str | os.PathLike[str], stage: str | None = None
) -> tuple[torch.nn.Module, ckpt.CheckpointInfo]:
    """Load a trained model (eval mode) from a checkpoint or run folder.

    Every tensor in the file must match the model and every parameter must be present: a
    checkpoint with extra or missing tensors is refused rather than loaded partially.

    Args:
        path: checkpoint folder, run folder (its last checkpoint) or ``.../last``.
        stage: when given, refuse a checkpoint of another stage.

    Raises:
        CheckpointError: missing, tampered, of another stage, or tensors that do not fit.
    """
    info = ckpt.read_info(path, stage=stage)
    model = build_model(info.model_class, info.model_config)
    weights = ckpt.load_weights(info.path)
    expected = model.state_dict()
    extra = sorted(set(weights) - set(expected))
    missing = sorted(set(expected) - set(weights))
    if extra or missing:
        raise ckpt.CheckpointError(
            f"{info.path}: its tensors do not fit {info.model_class}"
            + (f"; unexpected: {', '.join(extra[:5])}" if extra else "")
            + (f"; missing: {', '.join(missing[:5])}" if missing else "")
            + " (written by another version of vw_robot?)."
        )
    model.load_state_dict(weights)
    return model.eval(), info
