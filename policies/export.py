"""A policy folder that moves: every checkpoint the policy needs, in one folder, with a card.

Layout of ``vw-robot export-policy RUN/videoworld-100pct_seed0 out=DIR``::

    DIR/model.safetensors, info.json, config.yaml   the policy head (DIR is a checkpoint)
    DIR/parents/<stage>/...                         each checkpoint it was built on
    DIR/README.md                                   the card: tasks, sizes, labels, provenance

Every ``info.json`` names its parents relative to itself, so ``load_policy(DIR)`` works from
any directory and on another machine. Optimizer state is not copied (a policy is for acting;
resume training from the run folder).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vw_robot import checkpoint as ckpt
from vw_robot.errors import UserError
from vw_robot.io import atomic_write, atomic_write_json, atomic_write_text, sha256_file
from vw_robot.policies.videoworld import policy_info
from vw_robot.provenance import provenance

PARENTS_DIR = "parents"
CARD_FILE = "README.md"
_COPIED = (ckpt.MODEL_FILE, ckpt.CONFIG_FILE)


def _ancestors(info: ckpt.CheckpointInfo) -> dict[str, ckpt.CheckpointInfo]:
    """Every checkpoint ``info`` depends on, by stage (parents of parents included).

    Raises:
        CheckpointError: two different checkpoints of the same stage in the tree.
    """
    found: dict[str, ckpt.CheckpointInfo] = {}
    todo = [info]
    while todo:
        current = todo.pop()
        for stage in current.parents:
            parent = ckpt.read_info(ckpt.parent_checkpoint(current, stage), stage=stage)
            if stage in found:
                if found[stage].model_sha256 != parent.model_sha256:
                    raise ckpt.CheckpointError(
                        f"{info.path}: builds on two different {stage} checkpoints "
                        f"({found[stage].path} and {parent.path}); cannot export one folder."
                    )
                continue
            found[stage] = parent
            todo.append(parent)
    return found


def _copy_checkpoint(info: ckpt.CheckpointInfo, dst: Path, parents: dict[str, Path]) -> None:
    """Copy weights and config of one checkpoint into ``dst``; its info.json names
    ``parents`` (stage -> their new folders) relative to ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in _COPIED:
        # Not shutil.copy2: it would keep the mode of weights an older vw_robot wrote 0600;
        # copies follow the umask, like every file written here.
        with open(info.path / name, "rb") as source:
            atomic_write(dst / name, lambda f, source=source: shutil.copyfileobj(source, f))
    if sha256_file(dst / ckpt.MODEL_FILE) != info.model_sha256:
        raise ckpt.CheckpointError(
            f"{info.path / ckpt.MODEL_FILE}: checksum differs from its info.json (the file "
            "changed after it was written); not exported."
        )
    payload = json.loads((info.path / ckpt.INFO_FILE).read_text())
    payload["format"] = ckpt.FORMAT
    payload["parents"] = {
        stage: Path(os.path.relpath(path, dst)).as_posix() for stage, path in parents.items()
    }
    atomic_write_json(dst / ckpt.INFO_FILE, payload)


def _label_share(info: ckpt.CheckpointInfo) -> Any:
    """The head's label settings from its config.yaml (None when not recorded)."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(info.path / ckpt.CONFIG_FILE))
        stage = config["experiment"][info.stage]
    except Exception:  # noqa: BLE001 - an old or hand-made config: the card says "unknown"
        return None
    return {k: stage.get(k) for k in ("label_fraction", "labelled_episodes", "label_seed")}


def policy_card(info: ckpt.CheckpointInfo, ancestors: dict[str, ckpt.CheckpointInfo]) -> str:
    """A README for the exported folder: what the policy acts in and how it was made."""
    config = info.model_config
    env = config.get("env", {})
    labelled = env.get("labelled_episodes") or []
    prov = provenance()
    lines = [
        f"# vw_robot policy: {info.stage}",
        "",
        "```python",
        "from vw_robot.policies import make_policy",
        'policy = make_policy("path/to/this/folder")',
        "```",
        "",
        f"- tasks: {', '.join(config.get('task_ids', []))}",
        f"- observation: `pixels`, {env.get('image_size', config.get('image_size'))} px RGB"
        f" (camera: {env.get('camera') or 'the suite default'})",
        f"- action: {config.get('action_dim')}-D, chunks of {config.get('chunk')}",
        f"- labelled episodes: {len(labelled)}; label settings: {_label_share(info)}",
        f"- head step {info.step}, model sha256 {info.model_sha256[:16]}",
        "- built on: "
        + (
            ", ".join(f"{s} (step {a.step}, {a.model_sha256[:12]})" for s, a in ancestors.items())
            or "nothing (pixels only)"
        ),
        f"- exported with vw_robot {prov['packages'].get('vw_robot')}, git {prov['git_revision']}",
        "",
    ]
    return "\n".join(lines)


def export_policy(
    path: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write the policy at ``path`` and every checkpoint it needs into one folder ``out``.

    The folder is assembled under a temporary name beside ``out`` and renamed into place, so
    an interrupted export leaves nothing half-written.

    Raises:
        CheckpointError: not a policy, a missing or changed parent.
        UserError: ``out`` exists and is not empty (unless ``overwrite``).
    """
    info = policy_info(path)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"out={out}: exists and is not empty; pass overwrite=true to replace it.")
    ancestors = _ancestors(info)
    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        new_place = {stage: tmp / PARENTS_DIR / stage for stage in ancestors}
        for stage, parent in ancestors.items():
            _copy_checkpoint(parent, new_place[stage], {s: new_place[s] for s in parent.parents})
        _copy_checkpoint(info, tmp, {s: new_place[s] for s in info.parents})
        atomic_write_text(tmp / CARD_FILE, policy_card(info, ancestors))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
