#!/usr/bin/env bash
# Training-seed spread of the 25%-label heads of the README's MT10 run: VideoWorld's action head
# and BC retrained with optim.seed 1 and 2 on the same labelled episodes and the same generator
# stages, each evaluated as the main job evaluates (20 episodes per task, 200 steps, episode seeds
# episode_seed(1000, task, i)). First it re-evaluates the run's own BC head with `vw-robot eval`,
# which must give the main job's figures episode for episode.
#
#   bash benchmarks/mt10_head_seeds.sh [RUN (runs/mt10)] [OUT (runs/mt10_seeds)] [SEEDS ("1 2")]
#
# About 45 min on 2 CPU cores; results in OUT/eval/<stage>_seed<k>/results.{md,json}.
set -euo pipefail
run=${1:-runs/mt10}
out=${2:-runs/mt10_seeds}
seeds=${3:-"1 2"}
for stage in transformer action_head bc; do
  if [ ! -d "$run/$stage" ]; then
    echo "$run/$stage: missing; run the README's MT10 command (out=$run) first" >&2
    exit 2
  fi
done
export MUJOCO_GL=${MUJOCO_GL:-egl}
eval_args=(suite=metaworld/mt10 episodes_per_task=20 max_episode_steps=200 seed=1000 workers=2
  image_size=64 videos_per_task=0)
vw-robot eval "policy=$run/bc" "${eval_args[@]}" "out=$out/eval/bc_seed0"
for seed in $seeds; do
  for stage in action_head bc; do
    vw-robot train "stage=$stage" experiment=mt10_cpu "dataset=$run/data" "out=$run" \
      "run_name=${stage}_seed$seed" "experiment.$stage.label_fraction=0.25" \
      "experiment.$stage.optim.seed=$seed"
    vw-robot eval "policy=$run/${stage}_seed$seed" "${eval_args[@]}" \
      "out=$out/eval/${stage}_seed$seed"
  done
done
