"""Every stage of the pipeline trains for a few steps on a tiny real dataset, chained through
its checkpoints; codes are exported; pictures are written; bad wiring is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vw_robot import checkpoint as ckpt
from vw_robot.cli import load_config, main
from vw_robot.eval.collect import collect

SIZE = 32
TINY = [
    "experiment.tokenizer.model.image_size=32",
    "experiment.ldm.model.image_size=32",
    "experiment.ldm.model.horizon=2",
    "experiment.transformer.model.max_timesteps=2",
    "experiment.tokenizer.optim.steps=4",
    "experiment.ldm.optim.steps=4",
    "experiment.transformer.optim.steps=4",
    "experiment.tokenizer.optim.batch_size=4",
    "experiment.ldm.optim.batch_size=4",
    "experiment.transformer.optim.batch_size=4",
    "experiment.tokenizer.optim.warmup_steps=1",
    "experiment.ldm.optim.warmup_steps=1",
    "experiment.transformer.optim.warmup_steps=1",
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    data = root / "data"
    collect(
        data,
        ["metaworld/reach-v3", "metaworld/drawer-close-v3"],
        episodes_per_task=1,
        image_size=SIZE,
    )
    out = root / "runs"
    common = [f"dataset={data}", f"out={out}", *TINY]
    for stage in ("tokenizer", "ldm", "transformer"):
        assert main(["train", f"stage={stage}", *common]) == 0, stage
    return data, out, common


def test_every_stage_checkpoints_and_records_its_parents(pipeline):
    data, out, _ = pipeline
    tok = ckpt.read_info(out / "tokenizer", stage="tokenizer")
    ldm = ckpt.read_info(out / "ldm", stage="ldm")
    trf = ckpt.read_info(out / "transformer", stage="transformer")
    assert tok.step == ldm.step == trf.step == 4
    assert trf.parents == {"tokenizer": tok.path, "ldm": ldm.path}
    # Stored relative to the checkpoint itself, so the run folder can move.
    stored = json.loads((trf.path / ckpt.INFO_FILE).read_text())["parents"]
    assert stored == {
        "tokenizer": "../../../tokenizer/checkpoints/step_00000004",
        "ldm": "../../../ldm/checkpoints/step_00000004",
    }
    assert trf.model_config["task_ids"] == ["metaworld/drawer-close-v3", "metaworld/reach-v3"]
    assert trf.model_config["layout"]["horizon"] == 2
    # Unset, a newer key stays out of the model config, so runs from before it still resume.
    assert "train_timesteps" not in trf.model_config
    for run in ("tokenizer", "ldm", "transformer"):
        rows = (out / run / "metrics.csv").read_text().splitlines()
        assert rows[0].startswith("step,loss") and len(rows) >= 2


def test_pictures_are_written(pipeline):
    _, out, _ = pipeline
    for path in [
        "tokenizer/pictures/reconstructions.png",
        "ldm/pictures/future_frames.png",
        "ldm/pictures/code_map.png",
        "transformer/pictures/predictions.png",
    ]:
        assert (out / path).stat().st_size > 0, path


def test_exported_codes_cover_every_frame_and_respect_episode_ends(pipeline):
    data, _, _ = pipeline
    folders = list((data / "cache" / "sequences").iterdir())
    assert len(folders) == 1
    for npz_path in folders[0].glob("*.npz"):
        with np.load(npz_path) as npz:
            tokens, codes, valid = npz["tokens"], npz["codes"], npz["codes_valid"]
        frames = json.loads((data / "episodes" / npz_path.stem / "meta.json").read_text())[
            "num_frames"
        ]
        assert tokens.shape == (frames, (SIZE // 8) ** 2) and codes.shape == (frames, 2)
        assert valid[:-2].all() and not valid[-2:].any()  # the last H clips are padded
        assert codes.min() >= 0 and codes.max() < 1000


def test_no_ldm_ablation_trains_beside_the_codes_model(pipeline):
    data, out, common = pipeline
    assert (
        main(["train", "stage=transformer", "experiment.transformer.use_codes=false", *common]) == 0
    )
    info = ckpt.read_info(out / "transformer_nocodes", stage="transformer")
    assert info.model_config["layout"]["horizon"] == 0 and "ldm" not in info.parents
    assert (out / "transformer_nocodes" / "pictures" / "predictions.png").exists()


def test_transformer_without_a_tokenizer_names_the_command(tmp_path, pipeline, capsys):
    data, _, _ = pipeline
    code = main(["train", "stage=transformer", f"dataset={data}", f"out={tmp_path}", *TINY])
    assert code == 2
    assert "vw-robot train stage=tokenizer" in capsys.readouterr().err


def test_a_checkpoint_of_another_stage_is_refused(pipeline, capsys):
    data, out, common = pipeline
    code = main(
        [
            "train",
            "stage=transformer",
            f"tokenizer_checkpoint={out / 'ldm'}",
            f"dataset={data}",
            f"out={out}",
            "run_name=wrong",
            *TINY,
        ]
    )
    assert code == 2
    assert "is a 'ldm' checkpoint" in capsys.readouterr().err


def test_a_rope_transformer_trains_banded_on_sequences_longer_than_its_window(
    pipeline, monkeypatch
):
    # What the sliding control cache computes (each timestep sees its own and the
    # max_timesteps - 1 before it at every layer) is what training computes.
    from vw_robot.models.transformer import VideoTransformer

    data, out, common = pipeline
    seen = []
    forward = VideoTransformer.forward

    def spy(self, ids, task, targets=None, *, window=None):
        seen.append((ids.shape[1] // self.config.layout.step_len, window))
        return forward(self, ids, task, targets, window=window)

    monkeypatch.setattr(VideoTransformer, "forward", spy)
    banded = [
        "experiment.transformer.model.positions=rope",
        "experiment.transformer.model.train_timesteps=4",
        "run_name=transformer_banded",
        "pictures=false",
    ]
    assert main(["train", "stage=transformer", *common, *banded]) == 0
    info = ckpt.read_info(out / "transformer_banded", stage="transformer")
    assert info.model_config["train_timesteps"] == 4
    assert info.model_config["positions"] == "rope" and info.model_config["max_timesteps"] == 2
    assert seen and set(seen) == {(4, 2)}  # 4-timestep sequences, a band of 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment.transformer.model.train_timesteps=1"], "shorter than max_timesteps=2"),
        (["experiment.transformer.model.train_timesteps=4"], "need positions=rope"),
    ],
)
def test_training_sequences_shorter_than_the_window_or_long_absolute_ones_are_refused(
    overrides, message
):
    cfg = load_config("train", ["experiment.transformer.model.max_timesteps=2", *overrides])
    with pytest.raises(
        ValueError, match=rf"^experiment.transformer.model.train_timesteps: .*{message}"
    ):
        cfg.validate()


def test_bad_stage_and_mismatched_sizes_fail_at_start(capsys):
    assert main(["train", "stage=actor"]) == 2
    assert "stage" in capsys.readouterr().err
    cfg = load_config("train", ["experiment.ldm.model.image_size=32"])
    with pytest.raises(ValueError, match="experiment.ldm.model.image_size"):
        cfg.validate()
    cfg = load_config(
        "train",
        ["experiment.transformer.use_codes=false", "experiment.transformer.hide_past_codes=true"],
    )
    with pytest.raises(ValueError, match="experiment.transformer.hide_past_codes"):
        cfg.validate()


def test_a_real_stage_trains_under_torchrun_with_two_gloo_processes(pipeline, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    data, _, _ = pipeline
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "vw_robot.cli",
            "train",
            "stage=tokenizer",
            f"dataset={data}",
            f"out={tmp_path}",
            "pictures=false",
            *TINY,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    info = ckpt.read_info(tmp_path / "tokenizer", stage="tokenizer")
    assert info.step == 4
    assert len((tmp_path / "tokenizer" / "metrics.csv").read_text().splitlines()) >= 2
