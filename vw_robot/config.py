"""Typed configs for the command-line jobs, registered in Hydra's ConfigStore.

The YAML files in ``vw_robot.configs`` name one of these schemas in their defaults list, so
Hydra type-checks every value (``episodes_per_task=abc`` fails naming the key) and the
``validate`` methods check ranges and names before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional  # noqa: UP035 - OmegaConf needs typing.Optional on Python 3.10

from hydra.core.config_store import ConfigStore

from vw_robot.data.video import CODECS
from vw_robot.envs import get_spec, policy_camera, resolve_tasks
from vw_robot.envs import playground_suite as pg
from vw_robot.envs import playground_tasks as pt
from vw_robot.envs.playground_experts import START_MODES
from vw_robot.envs.rendering import camera_problem, validate_image_size
from vw_robot.errors import ConfigError, UserError
from vw_robot.heads import HEADS, SCRIPTED, run_name
from vw_robot.policies import check_policy_spec
from vw_robot.training.config import ExperimentConfig, ExportCodesConfig, TrainConfig


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _check_device(device: str, key: str) -> None:
    _check(
        device in ("auto", "cpu") or device.startswith("cuda"),
        key,
        f"{device!r} is not a device; use auto, cpu or cuda[:k]",
    )


def _validate_env_choice(
    suite: str | None,
    tasks: list[str] | None,
    image_size: int,
    camera: str | None,
    max_episode_steps: int | None,
    policy: str,
) -> list[str]:
    """Check the keys that pick tasks, envs and the acting policy (its checkpoint's info is
    read, no weights are loaded); return the task ids.

    ``tasks`` None (unset) means the suite's tasks. A given list must name each task once:
    ``tasks=[]`` is refused rather than read as "the suite" (eval, collect and run alike), and a
    repeated task is refused rather than run twice (``episodes_per_task`` sets the count).
    """
    if tasks is not None:
        _check(
            len(tasks) > 0,
            "tasks",
            "[] names no task; give task ids, or leave tasks unset (tasks=null) to use the suite",
        )
        repeated = list(dict.fromkeys(t for i, t in enumerate(tasks) if t in tasks[:i]))
        _check(
            not repeated,
            "tasks",
            f"{', '.join(repeated)} listed more than once; list each task once "
            "(episodes_per_task sets how many episodes each gets)",
        )
    _check(
        max_episode_steps is None or max_episode_steps >= 1,
        "max_episode_steps",
        f"{max_episode_steps} < 1",
    )
    try:
        validate_image_size(image_size)
    except ValueError as exc:
        raise ConfigError(f"image_size: {exc}") from None
    try:
        check_policy_spec(policy)
    except UserError as exc:
        raise ConfigError(f"policy: {exc}") from None
    try:
        task_ids = resolve_tasks(suite, tasks or ())
    except ValueError as exc:
        raise ConfigError(f"{'tasks' if tasks else 'suite'}: {exc}") from None
    _check_camera(camera, task_ids, image_size)
    return task_ids


def _check_camera(camera: str | None, task_ids: list[str], image_size: int) -> None:
    """Refuse a camera (or stacked views) that a task's scene lacks, naming the task."""
    if camera is None:
        return
    for task_id in task_ids:
        problem = camera_problem(camera, get_spec(task_id).cameras, image_size)
        _check(problem is None, "camera", f"{camera!r} for {task_id}: {problem}")


@dataclass
class EvalConfig:
    """`vw-robot eval`: roll out a policy on tasks; per-task table, report, videos."""

    policy: str = "expert"  # expert | random | a policy checkpoint (runs/x/bc-25pct_seed0)
    suite: Optional[str] = "metaworld/mt10"  # a suite from `vw-robot tasks`; ignored if tasks set
    tasks: Optional[list[str]] = None  # explicit task ids, each once; None: the suite's
    episodes_per_task: int = 5  # evaluation episodes per task
    seed: int = 0  # base seed; episode i of task t uses episode_seed(seed, t, i)
    workers: int = 1  # rollout processes (spawn); results do not depend on it
    # Envs stepped at once by one policy acting for all of them in one batched forward per
    # step (in `workers` processes); None: each worker runs its own policy, one env at a time.
    batch: Optional[int] = None
    image_size: int = 64  # square camera image side in pixels
    # None: a learned policy's own camera (recorded in its checkpoint; another is refused),
    # else the suite's default camera
    camera: Optional[str] = None
    max_episode_steps: Optional[int] = None  # None: the task's default time limit
    videos_per_task: int = 1  # first N episodes of each task are saved as mp4
    stop_on_success: bool = True  # end an episode at its first success
    device: str = "auto"  # where learned policies run: auto (CUDA if available) | cpu | cuda
    fps: int = 20  # frame rate of saved videos
    execute: Optional[int] = None  # learned policies: actions run per plan (None: whole chunk)
    ensemble: Optional[float] = None  # learned policies: ACT temporal ensembling weight m
    # Single playground subtasks: home, or random (a random arm pose and gripper, or where
    # another subtask's expert leaves the scene: the states chains start from); None: default
    start: Optional[str] = None
    out: str = "runs/eval"  # output folder (results.json, results.md, videos/)
    # Replace the results of another config in out (without it they are refused; the same
    # config resumes, keeping the episodes already recorded).
    overwrite: bool = False

    def validate(self) -> list[str]:
        """Check values; return the resolved task ids."""
        _check(self.episodes_per_task >= 1, "episodes_per_task", f"{self.episodes_per_task} < 1")
        _check(self.workers >= 1, "workers", f"{self.workers} < 1")
        _check(self.batch is None or self.batch >= 1, "batch", f"{self.batch} < 1")
        _check(self.seed >= 0, "seed", f"{self.seed} is negative")
        _check(self.videos_per_task >= 0, "videos_per_task", f"{self.videos_per_task} < 0")
        _check(self.fps >= 1, "fps", f"{self.fps} < 1")
        _check_device(self.device, "device")
        _check(self.execute is None or self.execute >= 1, "execute", f"{self.execute} < 1")
        _check(self.ensemble is None or self.ensemble >= 0, "ensemble", f"{self.ensemble} < 0")
        tasks = _validate_env_choice(
            self.suite,
            self.tasks,
            self.image_size,
            self.camera,
            self.max_episode_steps,
            self.policy,
        )
        if self.start is not None:
            _check(self.start in START_MODES, "start", f"{self.start!r}; use {START_MODES}")
            other = [t for t in tasks if not _single_subtask(t)]
            _check(not other, "start", f"only single playground subtasks choose it, not {other}")
        return tasks


def _single_subtask(task_id: str) -> bool:
    """Whether ``task_id`` is one playground subtask (``playground/open-drawer``)."""
    suite, _, name = task_id.partition("/")
    return suite == "playground" and name in pg.SUBTASK_TASKS


# What `vw-robot eval-chains` may evaluate one subtask at a time.
SINGLE_SUITES = ("playground/videoworld12", "playground/all")


def _check_single_suite(suite: str) -> None:
    _check(suite in SINGLE_SUITES, "single_suite", f"{suite!r}; use {' or '.join(SINGLE_SUITES)}")


@dataclass
class EvalChainsConfig:
    """`vw-robot eval-chains`: CALVIN-style chains on the playground, then the 12 VideoWorld
    subtasks one at a time."""

    policy: str = "expert"  # expert | random | a policy checkpoint (runs/x/bc-25pct_seed0)
    chains: int = 1000  # chains to run (CALVIN's protocol: 1000)
    chain_length: int = 5  # subtasks per chain
    steps_per_subtask: int = 360  # step budget of each subtask
    single_episodes: int = 20  # episodes per subtask, one at a time (0: skip)
    # The subtasks evaluated one at a time: VideoWorld's 12 (playground/videoworld12) or all 21
    # (playground/all, the 12 among them)
    single_suite: str = "playground/videoworld12"
    seed: int = 0  # base seed; chain i uses episode_seed(seed, "playground/chain", i)
    workers: int = 1  # rollout processes (spawn); results do not depend on it
    batch: Optional[int] = None  # envs stepped at once by one batched policy (None: per worker)
    image_size: int = 64  # square camera image side in pixels
    # None: a learned policy's own camera (its checkpoint), else the playground's default (front)
    camera: Optional[str] = None
    videos: int = 1  # first N chains are saved as mp4
    device: str = "auto"  # where learned policies run: auto (CUDA if available) | cpu | cuda
    fps: int = 20  # frame rate of saved videos
    execute: Optional[int] = None  # learned policies: actions run per plan (None: whole chunk)
    ensemble: Optional[float] = None  # learned policies: ACT temporal ensembling weight m
    out: str = "runs/eval_chains"  # output folder (chains.json, chains.md, single/, videos/)
    overwrite: bool = False  # replace the results of another config in out (as eval's)

    def validate(self) -> None:
        """Check values (the message names the key)."""
        _check(self.chains >= 1, "chains", f"{self.chains} < 1")
        try:
            pt.check_chain_args(self.chain_length, self.steps_per_subtask)
        except ValueError as exc:
            key = "chain_length" if "chain_length" in str(exc) else "steps_per_subtask"
            raise ConfigError(f"{key}: {exc}") from None
        _check(self.single_episodes >= 0, "single_episodes", f"{self.single_episodes} < 0")
        _check_single_suite(self.single_suite)
        _check(self.workers >= 1, "workers", f"{self.workers} < 1")
        _check(self.batch is None or self.batch >= 1, "batch", f"{self.batch} < 1")
        _check(self.seed >= 0, "seed", f"{self.seed} is negative")
        _check(self.videos >= 0, "videos", f"{self.videos} < 0")
        _check_device(self.device, "device")
        _check(self.fps >= 1, "fps", f"{self.fps} < 1")
        _check(self.execute is None or self.execute >= 1, "execute", f"{self.execute} < 1")
        _validate_env_choice(
            None, [pg.task_id("open_drawer")], self.image_size, self.camera, None, self.policy
        )


@dataclass
class CollectConfig:
    """Record scripted-expert demonstrations into a dataset folder (resumable)."""

    suite: Optional[str] = None  # a suite from `vw-robot tasks`; ignored if tasks is set
    tasks: Optional[list[str]] = None  # explicit task ids, each once; None: the suite's
    episodes_per_task: int = 20  # attempts per task; failed ones are dropped unless keep_failed
    image_size: int = 64  # square camera image side in pixels
    # None: the task's default camera, the view learned policies train on (the one `vw-robot run`
    # records with camera=auto: front+top on Meta-World)
    camera: Optional[str] = None
    max_episode_steps: Optional[int] = None  # None: the task's default time limit
    workers: int = 1  # processes, each with its own simulators (spawn)
    seed: int = 0  # base seed: episode i of task t uses episode_seed(seed, t, i)
    out: str = "data/demo"  # dataset folder; a rerun resumes it
    keep_failed: bool = False  # keep demonstrations whose expert failed (flagged in meta)
    steps_after_success: int = 5  # frames recorded after the first success
    codec: str = "lossless"  # lossless | high | standard (vw_robot.data.video.CODECS)
    fps: int = 20  # frame rate written into the videos
    policy: str = "expert"  # who acts: expert (or random, for failure data)
    # Single playground subtasks: home (the arm at HOME, gripper open) or random (a random arm
    # pose and gripper, or the state another subtask's expert leaves)
    start: str = "home"
    # DART: std of Gaussian noise added to the executed actions (clipped to the action box);
    # the stored labels are the expert's clean actions. 0: none
    action_noise: float = 0.0
    # playground/chain and playground/play: also write every subtask an episode completed as an
    # episode of that subtask (labelled play, as CALVIN annotates its play data)
    segments: bool = False

    def validate(self) -> list[str]:
        """Check values; return the resolved task ids."""
        _check(self.episodes_per_task >= 1, "episodes_per_task", f"{self.episodes_per_task} < 1")
        _check(self.workers >= 1, "workers", f"{self.workers} < 1")
        _check(self.seed >= 0, "seed", f"{self.seed} is negative")
        _check(
            self.steps_after_success >= 0, "steps_after_success", f"{self.steps_after_success} < 0"
        )
        _check(self.fps >= 1, "fps", f"{self.fps} < 1")
        _check(
            self.codec in CODECS,
            "codec",
            f"{self.codec!r} is unknown; use one of {', '.join(CODECS)}",
        )
        _check(
            self.suite is not None or self.tasks is not None,
            "suite",
            "give a suite (e.g. suite=metaworld/mt10) or tasks=[...]",
        )
        # start, action_noise and segments are checked against the tasks by the collection,
        # before it writes anything (vw_robot.eval.collect.check_switches)
        return _validate_env_choice(
            self.suite,
            self.tasks,
            self.image_size,
            self.camera,
            self.max_episode_steps,
            self.policy,
        )


@dataclass
class DataCheckConfig:
    """Validate every episode of a dataset; nothing is modified."""

    root: str = "???"  # dataset folder (`vw-robot data check DIR`)


@dataclass
class DataImportConfig:
    """Turn a folder of plain videos into a dataset of episodes without actions."""

    src: str = "???"  # folder of video files (`vw-robot data import SRC out=DIR`)
    out: str = "???"  # dataset folder to create or extend
    task_id: Optional[str] = None  # label for every video; None: each video's subfolder name
    image_size: int = 64  # frames are centre-cropped to a square and resized to this
    fps: Optional[int] = None  # None: the first video's frame rate
    codec: str = "lossless"  # lossless | high | standard

    def validate(self) -> None:
        try:
            validate_image_size(self.image_size)
        except ValueError as exc:
            raise ConfigError(f"image_size: {exc}") from None
        _check(self.fps is None or self.fps >= 1, "fps", f"{self.fps} < 1")
        _check(
            self.codec in CODECS,
            "codec",
            f"{self.codec!r} is unknown; use one of {', '.join(CODECS)}",
        )


@dataclass
class LeRobotImportConfig:
    """A LeRobotDataset (v3.0, v2.1, v2.0) -> a dataset of ours, one camera."""

    src: str = "???"  # LeRobot dataset folder (`vw-robot data import-lerobot SRC out=DIR`)
    out: str = "???"  # dataset folder to create or extend (resumable)
    camera_key: Optional[str] = None  # e.g. observation.images.top; None: the only camera
    image_size: int = 64  # frames are centre-cropped to a square and resized to this
    codec: str = "lossless"  # lossless | high | standard
    version: Optional[str] = None  # v3.0 | v2.1 | v2.0; None: read from meta/info.json

    def validate(self) -> None:
        try:
            validate_image_size(self.image_size)
        except ValueError as exc:
            raise ConfigError(f"image_size: {exc}") from None
        _check(self.codec in CODECS, "codec", f"{self.codec!r}; use one of {', '.join(CODECS)}")
        _check(
            self.version in (None, "v3.0", "v2.1", "v2.0"),
            "version",
            f"{self.version!r}; use v3.0, v2.1, v2.0 or leave it unset",
        )


@dataclass
class LeRobotExportConfig:
    """A dataset of ours -> LeRobotDataset v3.0 (parquet + mp4 + stats), checked after."""

    root: str = "???"  # our dataset folder (`vw-robot data export-lerobot DIR out=DST`)
    out: str = "???"  # the LeRobot folder to write (refused when not empty, unless overwrite)
    fps: Optional[int] = None  # None: the dataset's own frame rate
    codec: str = "lossless"  # lossless | high | standard
    overwrite: bool = False  # replace a non-empty out
    robot_type: Optional[str] = None  # recorded in meta/info.json

    def validate(self) -> None:
        _check(self.fps is None or self.fps >= 1, "fps", f"{self.fps} < 1")
        _check(self.codec in CODECS, "codec", f"{self.codec!r}; use one of {', '.join(CODECS)}")


@dataclass
class LeRobotCheckConfig:
    """Validate a LeRobotDataset v3.0 folder against the format's schema."""

    root: str = "???"  # LeRobot dataset folder (`vw-robot data check-lerobot DIR`)


BASELINES = ("bc", "bc_all", "noldm", "expert", "random")
AUTO_CAMERA = "auto"  # RunConfig.camera: each task family's view for learned policies


@dataclass
class RunConfig:
    """The main job: demonstrations -> every stage -> closed-loop evaluation -> a report."""

    suite: Optional[str] = None  # a suite (e.g. metaworld/mt10); when set it replaces tasks
    tasks: list[str] = field(
        default_factory=lambda: [
            "metaworld/reach-v3",
            "metaworld/drawer-close-v3",
            "metaworld/button-press-topdown-v3",
        ]
    )  # the built-in default: three Meta-World tasks
    episodes_per_task: int = 20  # demonstrations collected per task
    # Action-free video: these tasks' expert episodes go to the generator stages (tokenizer,
    # LDM, transformer) only, never to a head or the evaluation (e.g. [playground/play]).
    video_tasks: list[str] = field(default_factory=list)
    video_episodes_per_task: Optional[int] = None  # None: episodes_per_task
    eval_episodes: int = 10  # evaluation episodes per task and policy
    # The tasks evaluated one at a time (each must be a training task); unset: every training
    # task. eval_tasks wins over eval_suite (e.g. eval_suite=playground/videoworld12).
    eval_suite: Optional[str] = None
    eval_tasks: Optional[list[str]] = None
    # Playground: chains of 5 subtasks per policy (CALVIN's protocol, `vw-robot eval-chains`);
    # 0: none. Needs every playground subtask among the training tasks (a chain may draw any).
    chains: int = 0
    chain_steps_per_subtask: int = 360
    # bc: behaviour cloning on the action head's labelled episodes; bc_all: on every labelled
    # episode; noldm: the no-LDM ablation (next-frame transformer + head, same labels).
    baselines: list[str] = field(default_factory=lambda: ["bc", "expert", "random"])
    # Extra VideoWorld heads trained on these shares of the labelled episodes (e.g. [1.0,
    # 0.25, 0.1]); the generator stages are shared.
    label_sweep: list[float] = field(default_factory=list)
    image_size: int = 64  # camera image side (must match the experiment's models)
    # What the policies see, recorded with the demonstrations and in every checkpoint: "auto"
    # for the view the tasks' learned policies train on by default (Meta-World: front+top, two
    # views stacked in one frame; elsewhere the suite's default camera), None for each suite's
    # default camera, or a camera of the scene, or up to 4 joined by "+" and stacked in one
    # frame (e.g. front+top for Meta-World and the playground).
    camera: Optional[str] = AUTO_CAMERA
    workers: int = 2  # processes for collection and evaluation
    seed: int = 0  # collection seed; evaluation uses seed + 1000 (unseen episodes)
    videos_per_task: int = 1  # evaluation videos per task and policy
    eval_max_steps: Optional[int] = None  # evaluation time limit; None: the task's default
    eval_device: str = "auto"  # where learned policies run: auto (CUDA if available) | cpu | cuda
    out: str = "runs/demo"  # everything goes here: data/, the stage runs, eval/, report.md
    # Resume stages whose saved training settings differ from these (named in a warning).
    resume_changed: bool = False
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)  # model sizes, steps

    def validate(self) -> list[str]:
        _check(self.episodes_per_task >= 1, "episodes_per_task", f"{self.episodes_per_task} < 1")
        _check(self.eval_episodes >= 1, "eval_episodes", f"{self.eval_episodes} < 1")
        _check(self.workers >= 1, "workers", f"{self.workers} < 1")
        _check(self.seed >= 0, "seed", f"{self.seed} is negative")
        _check_device(self.eval_device, "eval_device")
        for name in self.baselines:
            _check(
                name in BASELINES,
                "baselines",
                f"{name!r} is unknown; choose from {', '.join(BASELINES)}",
            )
        for fraction in self.label_sweep:
            _check(0 < fraction <= 1, "label_sweep", f"{fraction} is not a share in (0, 1]")
        tok = self.experiment.tokenizer.model
        _check(
            tok.image_size == self.image_size,
            "image_size",
            f"{self.image_size} differs from experiment.tokenizer.model.image_size="
            f"{tok.image_size}",
        )
        # A given suite replaces the built-in task list (tasks always has a value).
        tasks = None if self.suite else self.tasks
        task_ids = _validate_env_choice(self.suite, tasks, self.image_size, None, None, "expert")
        self._check_video_tasks(task_ids)
        _check_camera(self.run_camera(task_ids), [*task_ids, *self.video_tasks], self.image_size)
        self.eval_task_ids(task_ids)
        _check(self.chains >= 0, "chains", f"{self.chains} < 0")
        if self.chains:
            try:
                pt.check_chain_args(pg.CHAIN_LENGTH, self.chain_steps_per_subtask)
            except ValueError as exc:
                raise ConfigError(f"chain_steps_per_subtask: {exc}") from None
            missing = [pg.task_id(n) for n in pt.SUBTASK_NAMES if pg.task_id(n) not in task_ids]
            _check(
                not missing,
                "chains",
                f"a chain may draw any playground subtask, but the policies would not be trained "
                f"on {', '.join(missing)}; train on suite=playground/all or set chains=0",
            )
        return task_ids

    def _check_video_tasks(self, task_ids: list[str]) -> None:
        if not self.video_tasks:
            return
        try:
            videos = _validate_env_choice(
                None, self.video_tasks, self.image_size, None, None, "expert"
            )
        except ConfigError as exc:
            raise ConfigError(f"video_{exc}") from None
        both = [t for t in videos if t in task_ids]
        _check(
            not both,
            "video_tasks",
            f"{', '.join(both)} also in the training tasks; list a task in one of them "
            "(label_fraction sets how many of a training task's episodes the heads see)",
        )
        count = self.video_episodes_per_task
        _check(count is None or count >= 1, "video_episodes_per_task", f"{count} < 1")

    def run_camera(self, task_ids: list[str]) -> str | None:
        """The camera the run records its demonstrations and video with and evaluates on:
        ``camera``, or for ``auto`` the view these tasks' learned policies train on by default
        (:func:`vw_robot.envs.policy_camera`, with the video tasks; None: each suite's own)."""
        if self.camera != AUTO_CAMERA:
            return self.camera
        return policy_camera([*task_ids, *self.video_tasks])

    def eval_task_ids(self, task_ids: list[str]) -> list[str]:
        """The tasks evaluated one at a time, checked against the training ``task_ids``."""
        if self.eval_tasks is None and self.eval_suite is None:
            return task_ids
        key = "eval_tasks" if self.eval_tasks is not None else "eval_suite"
        try:
            chosen = _validate_env_choice(
                self.eval_suite, self.eval_tasks, self.image_size, None, None, "expert"
            )
        except ConfigError as exc:
            raise ConfigError(f"eval_{exc}") from None
        unknown = [t for t in chosen if t not in task_ids]
        _check(
            not unknown,
            key,
            f"{', '.join(unknown)} not among the training tasks: a policy acts only on tasks it "
            "was trained on",
        )
        return chosen


@dataclass
class StudyHeadConfig:
    """One row group of a study: a policy, the label shares and training seeds it gets."""

    policy: str = "???"  # a head (videoworld | bc | noldm, vw_robot.heads) or expert | random
    # Its name in the study's run and eval folders and results (<name>-<pct>pct_seed<k>); None:
    # the policy's. A variant of a head (other switches) needs its own, e.g. videoworld_ldm.
    name: Optional[str] = None
    label_fractions: list[float] = field(default_factory=lambda: [1.0])  # shares of the labels
    seeds: list[int] = field(default_factory=lambda: [0])  # training seeds, one head each
    # KEY=VALUE settings of the head's experiment section (recorded in its checkpoint), after
    # the study's experiment, e.g. [trunk=ldm] or [optim.steps=4000]
    switches: list[str] = field(default_factory=list)
    # KEY=VALUE settings of its evaluation: how it acts, execute=1 (replan every step) or
    # ensemble=0.1 (ACT's temporal ensembling); in a study of chains also how many (chains=50)
    acting: list[str] = field(default_factory=list)
    # KEY=VALUE settings of the transformer it reads (a head with a generator), after the
    # study's experiment, e.g. [hide_past_codes=true]: a transformer of its own, trained once
    # beside the study's into transformer-<name> (on the study's tokenizer and LDM)
    transformer: list[str] = field(default_factory=list)
    # Its row's name in the results in place of <name>-<pct>pct_seed<k> (one label share and
    # one seed), e.g. the name an earlier results file gives the row, so that a rerun replaces it
    variant: Optional[str] = None
    # What it sees, when not the study's: a head that reads no generator (bc) may train and act
    # on another camera or image size (its own copy of the demonstrations: the same episodes)
    camera: Optional[str] = None
    image_size: Optional[int] = None


def _generator_of(head: StudyHeadConfig) -> tuple[str, ...]:
    """The generator runs a study head's policy reads (none for BC and scripted policies)."""
    return HEADS[head.policy].generator if head.policy in HEADS else ()


def _row_names(head: StudyHeadConfig, name: str) -> list[str]:
    """The names a head's rows have in the results (as vw_robot.study.study_runs gives them)."""
    if head.variant is not None:
        return [head.variant]
    if head.policy in SCRIPTED:
        return [name]
    return [run_name(name, share, seed) for share in head.label_fractions for seed in head.seeds]


@dataclass
class StudyConfig:
    """A study: data, one generator, heads x label shares x training seeds, one evaluation
    protocol; run resumably by `vw-robot study NAME`, results as data (JSON)."""

    study: str = "???"  # its name: configs/study/<study>.yaml
    description: str = ""  # one line: what it compares
    suite: Optional[str] = None  # a suite (e.g. metaworld/mt10); when set it replaces tasks
    tasks: Optional[list[str]] = None  # explicit task ids (the suite's when None)
    episodes_per_task: int = 20  # expert demonstrations (videos) collected per task
    video_tasks: list[str] = field(default_factory=list)  # action-free video, generator only
    video_episodes_per_task: Optional[int] = None  # None: episodes_per_task
    # How the demonstrations are collected (as vw-robot collect's keys): start (single
    # playground subtasks: home | random) and action_noise (DART: noisy execution, clean
    # labels) for the training tasks' demonstrations; play_segments: every subtask a
    # video_tasks episode (playground/play, chain) completed is also written as a labelled
    # episode of that subtask, so the heads see the states chains start from
    start: str = "home"
    action_noise: float = 0.0
    play_segments: bool = False
    image_size: int = 64  # camera image side (must match the experiment's models)
    camera: Optional[str] = AUTO_CAMERA  # as `vw-robot run`'s camera
    seed: int = 0  # collection seed
    label_seed: int = 0  # which episodes are labelled (stratified by task), for every head
    # Tasks without labels: only these training tasks' labels reach the learned heads (None:
    # every task's); the others are video only for them, and evaluated like the rest
    labelled_tasks: Optional[list[str]] = None
    heads: list[StudyHeadConfig] = field(default_factory=list)  # what is compared
    eval_episodes: int = 20  # evaluation episodes per task and policy
    # Reporting seeds: episode i of task t uses episode_seed(eval_seed, t, i); never used to
    # choose anything (heads choose checkpoints on their own held-out labelled episodes).
    eval_seed: int = 1000
    eval_max_steps: Optional[int] = None  # None: each task's default time limit
    eval_suite: Optional[str] = None  # evaluate these training tasks only
    eval_tasks: Optional[list[str]] = None  # these instead of eval_suite
    videos_per_task: int = 0  # evaluation videos per task and policy
    # Playground: each policy is evaluated in CALVIN's chains of 5 (this many chains), then on
    # the VideoWorld subtasks one at a time (eval_episodes each), as `vw-robot eval-chains`;
    # 0: the tasks one at a time only, as `vw-robot eval`
    chains: int = 0
    chain_steps_per_subtask: int = 360
    # With chains: the subtasks evaluated one at a time after them (eval-chains' single_suite)
    single_suite: str = "playground/videoworld12"
    # Multi-subtask episodes each policy is also evaluated on (eval_episodes each, their own
    # time limit), scored by the subtasks completed, e.g. [kitchen/d4rl-4] (D4RL's kitchen
    # episode); a learned policy is told each subtask in turn, so they must be training tasks
    sequence_tasks: list[str] = field(default_factory=list)
    sequence_max_steps: Optional[int] = None  # None: each episode's own limit (d4rl-4: 360)
    workers: int = 2  # processes for collection and evaluation
    eval_device: str = "auto"  # where learned policies run: auto | cpu | cuda
    only: list[str] = field(default_factory=list)  # run only these head names ([]: all)
    out: Optional[str] = None  # the study folder; None: runs/<study>
    # The results file its entries are merged into (entries of runs it does not hold are kept);
    # None: <out>/results.json only
    results: Optional[str] = None
    resume_changed: bool = False  # as `vw-robot train`'s
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    @property
    def folder(self) -> str:
        return self.out or f"runs/{self.study}"

    def as_run(self) -> RunConfig:
        """The main job's config for the same data and evaluation (its checks are reused)."""
        return RunConfig(
            suite=self.suite,
            tasks=list(self.tasks or []),
            episodes_per_task=self.episodes_per_task,
            video_tasks=list(self.video_tasks),
            video_episodes_per_task=self.video_episodes_per_task,
            eval_episodes=self.eval_episodes,
            eval_suite=self.eval_suite,
            eval_tasks=self.eval_tasks,
            chains=self.chains,
            chain_steps_per_subtask=self.chain_steps_per_subtask,
            baselines=[],
            image_size=self.image_size,
            camera=self.camera,
            workers=self.workers,
            seed=self.seed,
            eval_max_steps=self.eval_max_steps,
            eval_device=self.eval_device,
            out=self.folder,
            resume_changed=self.resume_changed,
            experiment=self.experiment,
        )

    def validate(self) -> list[str]:
        """Check values; return the training task ids."""
        _check(self.study != "???", "study", "name a study: vw-robot study NAME")
        _check(self.suite is not None or bool(self.tasks), "suite", "give a suite or tasks")
        _check(self.heads, "heads", "a study needs at least one head")
        names = [head.name or head.policy for head in self.heads]
        for head, name in zip(self.heads, names, strict=True):
            known = (*HEADS, *SCRIPTED)
            _check(head.policy in known, "heads", f"{head.policy!r}: use one of {known}")
            _check(names.count(name) == 1, "heads", f"{name!r} named twice; give name=")
            _check(bool(head.seeds), "heads", f"{name}: seeds is empty")
            for share in head.label_fractions:
                _check(0 < share <= 1, "heads", f"{name}: label share {share} not in (0, 1]")
            for switch in [*head.switches, *head.acting, *head.transformer]:
                _check("=" in switch, "heads", f"{name}: switch {switch!r} is not KEY=VALUE")
            _check(
                not head.transformer
                or any(s.startswith("transformer") for s in _generator_of(head)),
                "heads",
                f"{name}: transformer settings of its own need a head that reads a transformer",
            )
            _check(
                head.variant is None or len(head.label_fractions) * len(head.seeds) == 1,
                "heads",
                f"{name}: a variant name is one row's: give one label share and one seed",
            )
            own_view = head.camera is not None or head.image_size is not None
            _check(
                not own_view or head.policy not in HEADS or not HEADS[head.policy].generator,
                "heads",
                f"{name}: camera/image_size of its own needs a head that reads no generator "
                "(the generator is trained once, on the study's view)",
            )
        rows = [
            row
            for head, name in zip(self.heads, names, strict=True)
            for row in _row_names(head, name)
        ]
        twice = sorted({row for row in rows if rows.count(row) > 1})
        _check(not twice, "heads", f"results rows {twice} named twice; give variant=")
        unknown = [name for name in self.only if name not in names]
        _check(not unknown, "only", f"{', '.join(unknown)} not among the heads {names}")
        _check(self.eval_episodes >= 1, "eval_episodes", f"{self.eval_episodes} < 1")
        _check(self.videos_per_task >= 0, "videos_per_task", f"{self.videos_per_task} < 0")
        _check(self.chains >= 0, "chains", f"{self.chains} < 0")
        _check_single_suite(self.single_suite)
        _check(
            not self.play_segments or bool(self.video_tasks),
            "play_segments",
            "needs video_tasks of several subtasks (e.g. [playground/play]) to cut",
        )
        run = self.as_run()
        task_ids = run.validate()
        if self.labelled_tasks is not None:
            _check(bool(self.labelled_tasks), "labelled_tasks", "empty; give task ids or null")
            missing = [t for t in self.labelled_tasks if t not in task_ids]
            _check(not missing, "labelled_tasks", f"{missing} are not training tasks")
            twice = sorted({t for t in self.labelled_tasks if self.labelled_tasks.count(t) > 1})
            _check(not twice, "labelled_tasks", f"{twice} given more than once")
        for task in self.sequence_tasks:
            try:
                subtasks = get_spec(task).subtasks
            except UserError as exc:
                raise ConfigError(f"sequence_tasks: {exc}") from None
            _check(subtasks, "sequence_tasks", f"{task} is not a multi-subtask episode")
            missing = [t for t in subtasks if t not in task_ids]
            _check(not missing, "sequence_tasks", f"{task}: {missing} are not training tasks")
        for head, name in zip(self.heads, names, strict=True):
            if head.camera is not None or head.image_size is not None:
                size = head.image_size or self.image_size
                try:
                    _check_camera(head.camera or run.run_camera(task_ids), task_ids, size)
                except ConfigError as exc:
                    raise ConfigError(f"heads: {name}: {exc}") from None
        return task_ids


@dataclass
class ExportPolicyConfig:
    """Write a policy and every checkpoint it needs into one folder that can be moved."""

    policy: str = "???"  # policy checkpoint or run folder (RUN/videoworld-25pct_seed0)
    out: str = "???"  # the folder to write (refused when it exists and is not empty)
    overwrite: bool = False  # replace an existing non-empty out


@dataclass
class ServeConfig:
    """Serve a policy over a websocket for a benchmark that runs in its own environment."""

    policy: str = "expert"  # expert | random | a policy checkpoint or exported policy folder
    host: str = "127.0.0.1"  # listen address; the default accepts local clients only
    port: int = 8765  # TCP port; 0 picks a free one (logged)
    device: str = "cpu"  # where a learned policy's networks run: auto | cpu | cuda
    execute: Optional[int] = None  # learned policies: actions run per plan (None: whole chunk)
    max_message_bytes: int = 16 * 2**20  # the largest request accepted (16 MiB)
    max_connections: int = 4  # clients served at once, each with its own policy state
    threads: Optional[int] = None  # torch threads per policy call; None: CPUs / connections

    def validate(self) -> None:
        _check(0 <= self.port <= 65535, "port", f"{self.port} is not a TCP port")
        _check_device(self.device, "device")
        _check(self.execute is None or self.execute >= 1, "execute", f"{self.execute} < 1")
        _check(self.max_message_bytes >= 1024, "max_message_bytes", "must be >= 1024")
        _check(self.max_connections >= 1, "max_connections", f"{self.max_connections} < 1")
        _check(self.threads is None or self.threads >= 1, "threads", f"{self.threads} < 1")
        try:
            check_policy_spec(self.policy)
        except UserError as exc:
            raise ConfigError(f"policy: {exc}") from None


@dataclass
class TasksConfig:
    """List suites and their task ids."""

    suite: Optional[str] = None  # None: every suite


def register_configs() -> None:
    """Register the schemas the YAML files extend (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="eval_schema", node=EvalConfig)
    store.store(name="eval_chains_schema", node=EvalChainsConfig)
    store.store(name="run_schema", node=RunConfig)
    store.store(name="study_schema", node=StudyConfig)
    store.store(name="tasks_schema", node=TasksConfig)
    store.store(name="collect_schema", node=CollectConfig)
    store.store(name="data_check_schema", node=DataCheckConfig)
    store.store(name="data_import_schema", node=DataImportConfig)
    store.store(name="export_policy_schema", node=ExportPolicyConfig)
    store.store(name="serve_schema", node=ServeConfig)
    store.store(name="lerobot_import_schema", node=LeRobotImportConfig)
    store.store(name="lerobot_export_schema", node=LeRobotExportConfig)
    store.store(name="lerobot_check_schema", node=LeRobotCheckConfig)
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="export_codes_schema", node=ExportCodesConfig)
