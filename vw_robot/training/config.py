"""Typed configs of the training stages (``vw-robot train``, ``vw-robot export-codes``).

An *experiment* (``configs/experiment/*.yaml``) sizes every stage at once: ``tiny_cpu`` runs
in minutes on 2 CPU cores (tests, the default demo), ``gpu`` is the larger bf16 setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional  # noqa: UP035 - OmegaConf needs typing.Optional on Python 3.10

from vw_robot.errors import ConfigError
from vw_robot.models.action_head import POOLS
from vw_robot.models.latent_dynamics import LatentDynamicsConfig
from vw_robot.models.tokenizer import TokenizerConfig
from vw_robot.training.loop import OptimConfig


@dataclass
class TransformerModelConfig:
    """Transformer size; its vocabulary and layout come from the tokenizer and LDM."""

    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads
    dim: int = 128  # residual width
    mlp_ratio: int = 4  # MLP width as a multiple of dim
    dropout: float = 0.0  # attention and residual dropout
    max_timesteps: int = 4  # T: timesteps per training window and control context
    # absolute: learned table, the control cache refills when the window slides. rope: the cache
    # slides, computing banded attention (each timestep sees max_timesteps), which matches
    # training only for one layer or when trained banded on longer sequences (docs/models.md).
    positions: str = "absolute"
    # Timesteps per training sequence; None: max_timesteps. Longer (rope only) trains banded:
    # every timestep attends to itself and the max_timesteps - 1 before it at every layer, which
    # is exactly what the sliding control cache computes (docs/models.md).
    train_timesteps: Optional[int] = None


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
    # True: earlier timesteps' codes are hidden from the model (SequenceLayout.hide_past_codes),
    # so what it samples acting is what it learned from real frames, not from leaked futures.
    hide_past_codes: bool = False


@dataclass
class ActionHeadModelConfig:
    """Action head / BC trunk size; image size, horizon and action size come from the data."""

    channels: list[int] = field(default_factory=lambda: [16, 32, 64])  # conv trunk widths
    num_res_blocks: int = 1  # residual blocks per trunk stage
    feature_dim: int = 64  # trunk output channels
    code_embed_dim: int = 32  # embedding per (query, code)
    hidden: int = 256  # MLP width
    chunk: int = 4  # k: actions per prediction
    # One trunk per camera view of the frame (camera=front+top: its horizontal bands, as many
    # as the training data's recorded camera has views), each with its own weights, so none
    # reads across the seam; recorded in the checkpoint.
    view_trunks: bool = False
    # How the trunk's feature map reaches the MLP: flatten (every cell) or spatial_softmax
    # (each channel's expected (x, y) position, learned temperature; per view with
    # view_trunks); recorded in the checkpoint.
    pool: str = "flatten"

    def validate(self, prefix: str = "model") -> None:
        """Raise ConfigError naming the key (``prefix``: the section, e.g. experiment.bc.model)."""
        if self.pool not in POOLS:
            raise ConfigError(f"{prefix}.pool: {self.pool!r}; use {' or '.join(POOLS)}")


@dataclass
class ActionHeadStage:
    model: ActionHeadModelConfig = field(default_factory=ActionHeadModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Share of each task's labelled episodes whose actions it uses (stratified by task), or a
    # count dealt out one task at a time (not both); which ones: a deterministic subset by seed.
    label_fraction: Optional[float] = None
    labelled_episodes: Optional[int] = None
    label_seed: int = 0
    # Only these tasks' labels (None: every task's); the other tasks of the data are video
    # only for this head (their actions never reach it), and it can still be told them: its
    # task ids are every task of the data, so one learned from video alone can be acted on.
    labelled_tasks: Optional[list[str]] = None
    sampled_fraction: float = 0.5  # share of items with transformer-sampled instead of LDM codes
    # The head recipe, each a switch recorded in the checkpoint:
    task_conditioning: bool = False  # a learned task embedding as an input (multi-task heads)
    use_state: bool = False  # the proprio state as an input (the env must provide it)
    augment_shift: int = 0  # random shifts of up to this many pixels while training (0: off)
    # Share of each task's labelled episodes held out; the checkpoint with the lowest loss on
    # them is the run's policy (0: none held out, the last checkpoint is the policy).
    val_fraction: float = 0.0
    # The conv trunk that reads the frame: "own" (trained on the labelled episodes only),
    # "ldm" (a copy of the latent dynamics model's frame encoder, trained on all the video;
    # its sizes replace model.channels/num_res_blocks/feature_dim) or "tokenizer" (a copy of
    # the tokenizer's encoder: its pre-quantisation latents), frozen or fine-tuned.
    trunk: str = "own"
    freeze_trunk: bool = False
    # A frozen trunk's output for every labelled frame computed once and cached on disk
    # (<cache>/features/), training then reads it instead of running the trunk: the same
    # head, minutes instead of hours. Needs freeze_trunk, no augment_shift, one frame (not
    # noldm_head) and no pretrained network (its trunk is not the cached one).
    cache_features: bool = False
    # How the task (task_conditioning) and a VideoWorld head's codes condition it: concat (MLP
    # inputs) or film (also a per-channel scale and shift of the trunk's features, zero at
    # the start so the head begins as the concat one); recorded in the checkpoint.
    conditioning: str = "concat"
    # Start from the latent-action pretrained network (latent_pretrain_checkpoint, default
    # <out>/latent_pretrain): every weight but its output layer; recorded in the checkpoint
    # (its parents name the pretrained one). finetune: all (every weight trains) or last (the
    # trunk, FiLM layer and task embedding stay as pretrained; the MLP trains).
    pretrained: bool = False
    finetune: str = "all"


@dataclass
class LatentPretrainStage:
    """Latent-action pretraining: the head's network (trunk + MLP, an output layer of code
    logits) learns the LDM's codes of the next model.chunk steps from the frame (and task), on
    every video of the tasks, labelled or not; heads fine-tune from it (``pretrained``)."""

    model: ActionHeadModelConfig = field(default_factory=ActionHeadModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # As the head's that fine-tunes from it (the two must agree on the network's shape):
    task_conditioning: bool = False
    augment_shift: int = 0
    trunk: str = "own"  # own | ldm | tokenizer (start from that model's frame encoder)
    conditioning: str = "concat"


@dataclass
class ExperimentConfig:
    name: str = "tiny_cpu"  # recorded in checkpoints
    tokenizer: TokenizerStage = field(default_factory=TokenizerStage)
    ldm: LatentDynamicsStage = field(default_factory=LatentDynamicsStage)
    transformer: TransformerStage = field(default_factory=TransformerStage)
    action_head: ActionHeadStage = field(default_factory=ActionHeadStage)
    bc: ActionHeadStage = field(default_factory=ActionHeadStage)
    # The no-LDM ablation's head: current frame + the frame the code-free transformer
    # predicts (decoded by the tokenizer) -> action chunk.
    noldm_head: ActionHeadStage = field(default_factory=ActionHeadStage)
    # The head network pretrained on every video to predict the LDM's codes (latent actions).
    latent_pretrain: LatentPretrainStage = field(default_factory=LatentPretrainStage)


# Every stage has its section of the experiment; the heads are those with an ActionHeadStage.
STAGES = tuple(f.name for f in fields(ExperimentConfig) if f.name != "name")
HEAD_STAGES = tuple(
    f.name for f in fields(ExperimentConfig) if f.default_factory is ActionHeadStage
)


@dataclass
class TrainConfig:
    """``vw-robot train stage=...``: one stage of the pipeline on a dataset."""

    # tokenizer | ldm | transformer | action_head | bc | noldm_head | latent_pretrain
    stage: str = "tokenizer"
    dataset: str = "data/demo"  # dataset folder made by `vw-robot collect` / `data import`
    out: str = "runs/train"  # pipeline folder: <out>/<run folder>/ holds each stage's run
    tasks: list[str] = field(default_factory=list)  # train on these tasks' episodes; []: all
    # Derived files (frame cache, exported codes); None: <dataset>/cache when it is writable,
    # else the per-user ~/.cache/vw_robot/<dataset name>-<hash>.
    cache_dir: Optional[str] = None
    tokenizer_checkpoint: Optional[str] = None  # default: <out>/tokenizer
    ldm_checkpoint: Optional[str] = None  # default: <out>/ldm
    transformer_checkpoint: Optional[str] = None  # default: <out>/transformer
    # noldm_head only; default: <out>/transformer_nocodes
    transformer_nocodes_checkpoint: Optional[str] = None
    # A head with pretrained=true; default: <out>/latent_pretrain
    latent_pretrain_checkpoint: Optional[str] = None
    # Default: the stage name (transformer_nocodes for the ablation); a head's names its labels
    # and training seed, e.g. videoworld-25pct_seed0 (vw_robot.heads.run_name).
    run_name: Optional[str] = None
    pictures: bool = True  # write the stage's pictures at the end
    # Resume a run whose checkpoint was trained with other settings (lr, dataset, tasks,
    # labels...); without it such a resume is refused, naming the keys that differ.
    resume_changed: bool = False
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage: {self.stage!r} is unknown; use one of {', '.join(STAGES)}")
        for name in STAGES:
            getattr(self.experiment, name).optim.validate(f"experiment.{name}.optim")
        for name in (*HEAD_STAGES, "latent_pretrain"):
            getattr(self.experiment, name).model.validate(f"experiment.{name}.model")
        for name in HEAD_STAGES:
            stage = getattr(self.experiment, name)
            if stage.label_fraction is not None and stage.labelled_episodes is not None:
                raise ConfigError(
                    f"experiment.{name}: give label_fraction or labelled_episodes, not both"
                )
            if stage.label_fraction is not None and not 0 < stage.label_fraction <= 1:
                raise ConfigError(
                    f"experiment.{name}.label_fraction: {stage.label_fraction} must be in (0, 1]"
                )
            if stage.labelled_tasks is not None:
                _check_labelled_tasks(f"experiment.{name}.labelled_tasks", stage.labelled_tasks)
            if not 0 <= stage.sampled_fraction <= 1:
                raise ConfigError(f"experiment.{name}.sampled_fraction: must be in [0, 1]")
            _check_trunk_and_conditioning(name, stage)
            if (
                stage.conditioning == "film"
                and name != "action_head"
                and not (stage.task_conditioning)
            ):
                raise ConfigError(
                    f"experiment.{name}.conditioning: film needs a condition; set "
                    f"experiment.{name}.task_conditioning=true"
                )
            if stage.freeze_trunk and stage.trunk == "own":
                raise ConfigError(
                    f"experiment.{name}.freeze_trunk: a trunk of its own must train; "
                    "freeze only trunk=ldm or trunk=tokenizer"
                )
            self._validate_cached_features(name, stage)
            if stage.finetune not in ("all", "last"):
                raise ConfigError(
                    f"experiment.{name}.finetune: {stage.finetune!r}; use all or last"
                )
            if stage.finetune != "all" and not stage.pretrained:
                raise ConfigError(
                    f"experiment.{name}.finetune: {stage.finetune} fine-tunes a pretrained "
                    f"head; set experiment.{name}.pretrained=true"
                )
            if not 0 <= stage.val_fraction < 1:
                raise ConfigError(
                    f"experiment.{name}.val_fraction: {stage.val_fraction} must be in [0, 1)"
                )
            if not 0 <= stage.augment_shift <= 16:
                raise ConfigError(
                    f"experiment.{name}.augment_shift: {stage.augment_shift} must be in [0, 16]"
                )
        self._validate_latent_pretrain()
        transformer = self.experiment.transformer
        model = transformer.model
        if model.train_timesteps is not None and model.train_timesteps < model.max_timesteps:
            raise ConfigError(
                f"experiment.transformer.model.train_timesteps: {model.train_timesteps} is "
                f"shorter than max_timesteps={model.max_timesteps}; give at least that (or null)"
            )
        if (model.train_timesteps or model.max_timesteps) > model.max_timesteps and (
            model.positions != "rope"
        ):
            raise ConfigError(
                f"experiment.transformer.model.train_timesteps: {model.train_timesteps} "
                f"timesteps need positions=rope (absolute positions hold max_timesteps="
                f"{model.max_timesteps}); set experiment.transformer.model.positions=rope"
            )
        if transformer.hide_past_codes and not transformer.use_codes:
            raise ConfigError(
                "experiment.transformer.hide_past_codes: the no-LDM transformer "
                "(use_codes=false) has no codes to hide"
            )
        ldm, tok = self.experiment.ldm.model, self.experiment.tokenizer.model
        if ldm.image_size != tok.image_size:
            raise ConfigError(
                f"experiment.ldm.model.image_size: {ldm.image_size} differs from "
                f"experiment.tokenizer.model.image_size={tok.image_size}"
            )

    def _validate_cached_features(self, name: str, stage: ActionHeadStage) -> None:
        if not stage.cache_features:
            return
        key = f"experiment.{name}.cache_features"
        if not stage.freeze_trunk:
            raise ConfigError(
                f"{key}: caches a frozen trunk's features; set experiment.{name}.trunk=ldm (or "
                f"tokenizer) and experiment.{name}.freeze_trunk=true"
            )
        if stage.augment_shift:
            raise ConfigError(
                f"{key}: cached features are of the frames as recorded; set "
                f"experiment.{name}.augment_shift=0"
            )
        if name == "noldm_head":
            raise ConfigError(f"{key}: the no-LDM head's trunk also reads predicted frames")
        if stage.pretrained:
            raise ConfigError(
                f"{key}: a pretrained head's trunk is the pretrained network's, not the "
                f"cached one; drop experiment.{name}.pretrained or cache_features"
            )

    def _validate_latent_pretrain(self) -> None:
        stage = self.experiment.latent_pretrain
        _check_trunk_and_conditioning("latent_pretrain", stage)
        if stage.conditioning == "film" and not stage.task_conditioning:
            raise ConfigError(
                "experiment.latent_pretrain.conditioning: film needs a condition; set "
                "experiment.latent_pretrain.task_conditioning=true"
            )
        if not 0 <= stage.augment_shift <= 16:
            raise ConfigError(
                f"experiment.latent_pretrain.augment_shift: {stage.augment_shift} must be in "
                "[0, 16]"
            )


@dataclass
class ExportCodesConfig:
    """``vw-robot export-codes``: label every timestep of a dataset with tokens and codes."""

    dataset: str = "data/demo"  # dataset folder
    out: str = "runs/train"  # pipeline folder holding tokenizer/ and ldm/ runs
    tasks: list[str] = field(default_factory=list)  # export these tasks' episodes; []: all
    cache_dir: Optional[str] = None  # as in TrainConfig
    tokenizer_checkpoint: Optional[str] = None  # default: <out>/tokenizer
    ldm_checkpoint: Optional[str] = None  # default: <out>/ldm
    device: str = "auto"  # auto | cpu | cuda


def _check_trunk_and_conditioning(name: str, stage: ActionHeadStage | LatentPretrainStage) -> None:
    """A head's (or the latent-action pretraining's) trunk and task conditioning are known."""
    if stage.trunk not in ("own", "ldm", "tokenizer"):
        raise ConfigError(f"experiment.{name}.trunk: {stage.trunk!r}; use own, ldm or tokenizer")
    if stage.conditioning not in ("concat", "film"):
        raise ConfigError(
            f"experiment.{name}.conditioning: {stage.conditioning!r}; use concat or film"
        )


def _check_labelled_tasks(key: str, tasks: list[str]) -> None:
    """A non-empty list of distinct task ids."""
    if not tasks:
        raise ConfigError(f"{key}: empty; give the task ids whose labels a head may use")
    repeated = sorted({t for t in tasks if list(tasks).count(t) > 1})
    if repeated:
        raise ConfigError(f"{key}: {', '.join(repeated)} given more than once")
