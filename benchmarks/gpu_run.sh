#!/usr/bin/env bash
# The `gpu` experiment's stages on one GPU machine that has torch but no simulator packages and
# no network: the wheels and a dataset travel with the working tree.
#
# Here (with network), once:   bash benchmarks/gpu_run.sh prepare [DATASET]   # default data/mt10
#     -> .gpu/wheels (every non-torch dependency) and .gpu/data (a copy of the dataset)
# On the GPU machine:          bash benchmarks/gpu_run.sh run [STEPS]         # default 300
#     -> installs offline, trains tokenizer, ldm, transformer with experiment=gpu capped at STEPS
#        steps each (bf16), writes figures to ${OUT:-.gpu/out}; sized for < 8 minutes on an H100.
# .gpu/ is ignored by git; pass it to the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in
prepare)
  dataset=${2:-data/mt10}
  rm -rf .gpu && mkdir -p .gpu/wheels
  # Only what the GPU image lacks (it has torch, numpy, matplotlib, imageio, safetensors, tqdm,
  # PyYAML and OpenCV, which decodes the videos when imageio-ffmpeg's 68 MB wheel is absent):
  # the tree that travels is capped at 64 MiB.
  python3 -m pip wheel -q --no-deps -w .gpu/wheels "hydra-core>=1.3,<1.4" "omegaconf>=2.3,<2.4" \
    "antlr4-python3-runtime==4.9.*"
  python3 -m pip wheel -q --no-deps -w .gpu/wheels .
  cp -r "$dataset" .gpu/data && rm -rf .gpu/data/cache
  du -sh .gpu
  ;;
run)
  steps=${2:-300}
  out=${OUT:-.gpu/out}
  mkdir -p "$out"
  # Into a folder on PYTHONPATH, not a venv: the image's python3 is itself a venv holding torch.
  python3 -m pip install -q --no-index --no-deps --target .gpu/site .gpu/wheels/*.whl
  export PYTHONPATH="$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$out/gpu.txt"
  for stage in tokenizer ldm transformer; do
    start=$(date +%s)
    python3 -m vw_robot.cli train stage=$stage experiment=gpu dataset=.gpu/data out=.gpu/runs \
      experiment.$stage.optim.steps=$steps experiment.$stage.optim.checkpoint_every=$steps \
      2>&1 | grep -v "^\[.*step" | tail -4 | tee -a "$out/gpu.txt"
    echo "$stage: $(( $(date +%s) - start )) s for $steps steps" | tee -a "$out/gpu.txt"
  done
  for run in tokenizer ldm transformer; do
    cp .gpu/runs/$run/metrics.csv "$out/${run}_metrics.csv"
    cp .gpu/runs/$run/pictures/*.png "$out/" 2>/dev/null || true
  done
  ;;
*)
  sed -n 2,12p "$0"; exit 2 ;;
esac
