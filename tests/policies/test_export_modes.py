"""An exported policy folder's files follow the umask, whatever mode the run's files have."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.training.toy_train import make_model
from vw_robot import checkpoint as ckpt
from vw_robot.policies import export


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["022", "027"])
def test_exported_weights_follow_the_umask(tmp_path: Path, umask: int) -> None:
    folder = ckpt.save_checkpoint(
        tmp_path / "run", stage="toy", step=1, model=make_model(), model_config={}, config_yaml=""
    )
    for path in folder.iterdir():  # as an older vw_robot wrote the weights
        path.chmod(0o600)
    old = os.umask(umask)
    try:
        export._copy_checkpoint(ckpt.read_info(folder), tmp_path / "policy", {})
    finally:
        os.umask(old)
    copied = sorted((tmp_path / "policy").iterdir())
    assert ckpt.MODEL_FILE in {p.name for p in copied}
    for path in copied:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert ckpt.verify_checkpoint(tmp_path / "policy") is None
