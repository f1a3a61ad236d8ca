"""Typed configs of the training stages (``vw-robot train``, ``vw-robot export-codes``).

An *experiment* (``configs/experiment/*.yaml``) sizes every stage at once: ``tiny_cpu`` runs
in minutes on 2 CPU cores (tests, the default demo), ``gpu`` is the larger bf16 setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional  # noqa: UP035 - OmegaConf needs typing.Optional on Python 3.10

from vw_robot.models.latent_dynamics import LatentDynamicsConfig
from vw_robot.models.tokenizer import TokenizerConfig
from vw_robot.training.loop import OptimConfig

STAGES = ("tokenizer", "ldm", "transformer")


@dataclass
class TransformerModelConfig:
    """Transformer size; its vocabulary and layout come from the tokenizer and LDM."""

    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads
    dim: int = 128  # residual width
    mlp_ratio: int = 4  # MLP width as a multiple of dim
    dropout: float = 0.0  # attention and residual dropout
    max_timesteps: int = 4  # T: timesteps per training window and control context


@dataclass
class TokenizerStage:
    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class LatentDynamicsStage:
    model: LatentDynamicsConfig = field(default_factory=LatentDynamicsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class TransformerStage:
    model: TransformerModelConfig = field(default_factory=TransformerModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    use_codes: bool = True  # False: the no-LDM ablation (predict next-frame tokens instead)


@dataclass
class ExperimentConfig:
    name: str = "tiny_cpu"  # recorded in checkpoints
    tokenizer: TokenizerStage = field(default_factory=TokenizerStage)
    ldm: LatentDynamicsStage = field(default_factory=LatentDynamicsStage)
    transformer: TransformerStage = field(default_factory=TransformerStage)


@dataclass
class TrainConfig:
    """``vw-robot train stage=...``: one stage of the pipeline on a dataset."""

    stage: str = "tokenizer"  # tokenizer | ldm | transformer
    dataset: str = "data/demo"  # dataset folder made by `vw-robot collect` / `data import`
    out: str = "runs/train"  # pipeline folder: <out>/<stage>/ holds each stage's run
    tokenizer_checkpoint: Optional[str] = None  # default: <out>/tokenizer
    ldm_checkpoint: Optional[str] = None  # default: <out>/ldm
    run_name: Optional[str] = None  # default: the stage name (transformer_nocodes for ablation)
    pictures: bool = True  # write the stage's pictures at the end
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def validate(self) -> None:
        from vw_robot.config import ConfigError

        if self.stage not in STAGES:
            raise ConfigError(f"stage: {self.stage!r} is unknown; use one of {', '.join(STAGES)}")
        for name in STAGES:
            getattr(self.experiment, name).optim.validate(f"experiment.{name}.optim")
        ldm, tok = self.experiment.ldm.model, self.experiment.tokenizer.model
        if ldm.image_size != tok.image_size:
            raise ConfigError(
                f"experiment.ldm.model.image_size: {ldm.image_size} differs from "
                f"experiment.tokenizer.model.image_size={tok.image_size}"
            )


@dataclass
class ExportCodesConfig:
    """``vw-robot export-codes``: label every timestep of a dataset with tokens and codes."""

    dataset: str = "data/demo"  # dataset folder
    out: str = "runs/train"  # pipeline folder holding tokenizer/ and ldm/ runs
    tokenizer_checkpoint: Optional[str] = None  # default: <out>/tokenizer
    ldm_checkpoint: Optional[str] = None  # default: <out>/ldm
    device: str = "auto"  # auto | cpu | cuda
