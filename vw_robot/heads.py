"""The policies a study compares, each declared once: its name in reports, run folders and
evaluation folders, the training stage (and experiment section) that makes it, and the
generator runs it reads. Everything else — the study runner, the results files, the main job —
reads these declarations instead of spelling the names out again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeadVariant:
    """A learned policy: a head trained by one stage on a share of the labelled episodes."""

    name: str  # in reports, run folders (<name>-<pct>pct_seed<k>) and eval folders
    stage: str  # the training stage, its experiment section and the checkpoint's stage
    generator: tuple[str, ...]  # the generator runs (folders) it is built on, in training order
    summary: str  # one line for tables and --help
    # What the head reads beside the frame: "codes" (the LDM's and the transformer's),
    # "next_frame" (the frame the code-free transformer predicts) or "" (nothing)
    reads: str = ""
    # Fine-tuned from the latent-action pretrained network (its stage's pretrained=true; the
    # generator names the latent_pretrain run it reads).
    pretrained: bool = False


HEADS: dict[str, HeadVariant] = {
    head.name: head
    for head in (
        HeadVariant(
            "videoworld",
            "action_head",
            ("tokenizer", "ldm", "transformer"),
            "VideoWorld: frame + the transformer's latent codes -> action chunk",
            reads="codes",
        ),
        HeadVariant("bc", "bc", (), "behaviour cloning: frame -> action chunk, the same trunk"),
        HeadVariant(
            "noldm",
            "noldm_head",
            ("tokenizer", "transformer_nocodes"),
            "no-LDM ablation: frame + the predicted next frame -> action chunk",
            reads="next_frame",
        ),
        HeadVariant(
            "lapa",
            "bc",
            ("tokenizer", "ldm", "latent_pretrain"),
            "latent-action pretraining: BC's network, first taught the LDM's codes on all video",
            pretrained=True,
        ),
    )
}
# Policies that need no training: the scripted expert (an upper bound) and random actions.
SCRIPTED = ("expert", "random")


def head_of_stage(stage: str, pretrained: bool = False) -> HeadVariant | None:
    """The head a checkpoint stage makes (``action_head`` -> videoworld; ``bc`` fine-tuned
    from the latent-action pretrained network -> lapa); None for other stages. A stage with no
    pretrained variant of its own names its plain one."""
    heads = [head for head in HEADS.values() if head.stage == stage]
    return next((h for h in heads if h.pretrained == pretrained), heads[0] if heads else None)


def stage_reads(stage: str) -> str:
    """What a head stage's network reads beside the frame (:attr:`HeadVariant.reads`)."""
    head = head_of_stage(stage)
    if head is None:
        stages = sorted({h.stage for h in HEADS.values()})
        raise ValueError(f"{stage!r} is not a head stage; head stages: {stages}")
    return head.reads


def run_name(
    head: str, label_fraction: float | None, seed: int, labelled_episodes: int | None = None
) -> str:
    """One name for a trained head's run folder and its evaluation folder, for ``vw-robot
    study``, ``vw-robot run`` and ``vw-robot train`` alike: the head, its labels and its
    training seed (``optim.seed``).

    ``videoworld-25pct_seed1`` is a quarter of each task's labelled episodes; ``bc-100pct_seed0``
    every label (``label_fraction`` None or 1.0). A head given a count of labelled episodes
    (``labelled_episodes``, dealt out one task at a time) instead of a share names the count:
    ``videoworld-8ep_seed0`` is 8 labelled episodes in all.
    """
    if labelled_episodes is not None:
        return f"{head}-{labelled_episodes}ep_seed{seed}"
    share = 1.0 if label_fraction is None else label_fraction
    return f"{head}-{round(share * 100)}pct_seed{seed}"
