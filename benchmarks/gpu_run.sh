#!/usr/bin/env bash
# The `gpu` experiment end to end on one GPU machine that has torch but no simulator packages
# and no network: wheels (Python 3.12), the EGL loader and an MT10 dataset travel with the tree.
#
# Here (with network), once:   bash benchmarks/gpu_run.sh prepare [DATASET]   # default data/mt10
#     -> .gpu/wheels (every non-torch dependency, incl. mujoco + metaworld for evaluation),
#        .gpu/gl (libEGL/glvnd .debs) and .gpu/data (the dataset without its frame cache)
# On the GPU machine:   bash benchmarks/gpu_run.sh run [STEPS] [HEAD_STEPS] [EPISODES] [BUDGET_S]
#     -> installs offline, runs `vw-robot run experiment=gpu suite=metaworld/mt10` on the
#        carried dataset (its collection step finds every episode done) with each generator
#        stage capped at STEPS (default 800) and each policy head at HEAD_STEPS (400), evaluates
#        VideoWorld, no-LDM, BC (same labels) and BC (all labels) on EPISODES (10) per task with
#        the policies on the GPU, and leaves the report, metrics and pictures in
#        ${OUT:-.gpu/out}/gpu_results.tar.gz plus a log. Sized for < 9 minutes on an H100.
# BASELINES (default noldm,bc,bc_all) picks the learned baselines evaluated beside VideoWorld.
# .gpu/ is ignored by git; pass it to the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in
prepare)
  dataset=${2:-data/mt10}
  rm -rf .gpu && mkdir -p .gpu/wheels .gpu/gl
  # The GPU image has torch, numpy, scipy, matplotlib, imageio, safetensors, tqdm, PyYAML, h5py,
  # absl-py and OpenCV (which decodes the videos when imageio-ffmpeg's 68 MB wheel is absent).
  # The tree that travels is capped at 64 MiB; metaworld's wheel alone is 37 MB.
  platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp $platforms -d .gpu/wheels mujoco==3.3.0 metaworld==3.1.1 \
    gymnasium==1.4.0 farama-notifications pyopengl glfw etils "hydra-core>=1.3,<1.4" \
    "omegaconf>=2.3,<2.4"
  python3 -m pip wheel -q --no-deps -w .gpu/wheels "antlr4-python3-runtime==4.9.*" .
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64"
  mkdir -p /tmp/amd64/partial && apt-get $o update -qq
  (cd .gpu/gl && apt-get $o download -qq libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  cp -r "$dataset" .gpu/data && rm -rf .gpu/data/cache
  du -sh .gpu
  ;;
run)
  steps=${2:-800}
  head_steps=${3:-400}
  episodes=${4:-10}
  budget=${5:-460}  # seconds for the pipeline; what finished is packed even when it runs out
  out=${OUT:-.gpu/out}
  mkdir -p "$out" && out=$(cd "$out" && pwd)
  log="$out/gpu_log.txt"
  for f in .gpu/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
  # Into a folder on PYTHONPATH, not a venv: the image's python3 is itself a venv holding torch.
  # `python3 -P` below: the repo root must not shadow the installed package (its source tree
  # lacks vw_robot.envs, which the wheel maps in from envs/).
  python3 -m pip install -q --no-index --no-deps --no-compile --target .gpu/site .gpu/wheels/*.whl
  export PYTHONPATH="$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}" MUJOCO_GL=egl PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$log"
  python3 -P - <<'EOF' 2>&1 | tee -a "$log"
import numpy, torch, mujoco, metaworld
from vw_robot.envs import make_env
env = make_env("metaworld/reach-v3", image_size=64)
obs, _ = env.reset(seed=0)
env.close()
print("torch", torch.__version__, "cuda", torch.cuda.get_device_name(0), "numpy",
      numpy.__version__, "mujoco", mujoco.__version__, "frame", obs["pixels"].shape,
      "mean", float(obs["pixels"].mean()))
EOF
  run=.gpu/runs/mt10
  mkdir -p "$run" && rm -rf "$run/data" && cp -r .gpu/data "$run/data"
  overrides=()
  for s in tokenizer ldm transformer; do
    overrides+=("experiment.$s.optim.steps=$steps" "experiment.$s.optim.checkpoint_every=$steps")
  done
  for s in action_head bc noldm_head; do
    overrides+=("experiment.$s.optim.steps=$head_steps" "experiment.$s.optim.checkpoint_every=$head_steps")
  done
  start=$(date +%s)
  set +e
  timeout --signal=INT "$budget" python3 -P -m vw_robot.cli run experiment=gpu suite=metaworld/mt10 out=$run \
    eval_episodes="$episodes" eval_max_steps=200 "baselines=[${BASELINES:-noldm,bc,bc_all}]" \
    experiment.action_head.label_fraction=0.25 workers=14 videos_per_task=0 \
    "${overrides[@]}" 2>&1 | grep -v -E "it/s\]|ep/s\]|s/ep\]|step [0-9]+/[0-9]+ loss" | tee -a "$log"
  code=${PIPESTATUS[0]}
  set -e
  echo "pipeline exit $code after $(( $(date +%s) - start )) s" | tee -a "$log"
  (cd "$run" && find . -maxdepth 3 \( -name "*.md" -o -name "*.json" -o -name "*.csv" \
     -o -name "*.png" \) -not -path "./data/*" -not -path "*/checkpoints/*" -print0 \
   | tar -czf "$out/gpu_results.tar.gz" --null -T -)
  ls -la "$out"
  exit "$code"
  ;;
*)
  sed -n 2,16p "$0"; exit 2 ;;
esac
