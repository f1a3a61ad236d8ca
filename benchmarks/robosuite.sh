#!/usr/bin/env bash
# Learned policies on robosuite (issue #12): Lift, Stack, PickPlaceCan and Door with the Panda's
# 7-D actions (OSC pose + gripper), at CPU scale:
#   data       20 expert demonstrations of each task (collection seed 0; the experts succeed on
#              every recorded episode, failed ones are dropped)
#   generator  tokenizer, LDM and transformer (experiment robosuite_cpu) on every video
#   heads      VideoWorld, BC and no-LDM on the same LABELS share of each task's episodes (drawn
#              by label seed 0, stratified by task), BC on every label
#   evaluation `vw-robot eval` per policy: 20 episodes per task (seeds episode_seed(1000, task,
#              i), each task's default time limit: 200/300/400/300 steps), for VideoWorld,
#              no-LDM, BC, BC on all labels, expert and random
#
#   bash benchmarks/robosuite.sh [OUT (runs/robosuite)] [LABELS (0.25)] [POLICIES (all)]
#   TRAIN_SEED=0 (default) WORKERS=2 (default; collection and evaluation)
#   Smoke test only (not the study): DEMOS=3 EVAL_EPISODES=2 WORKERS=1 \
#     TRAIN_ARGS="pictures=false experiment.tokenizer.optim.steps=10 ..." \
#     EVAL_ARGS="max_episode_steps=30"
#
# Resumable: collection skips recorded episodes, a trained stage is not retrained (a stopped one
# resumes from its last checkpoint), an evaluation resumes its unfinished episodes.
# Results as data: python benchmarks/results_json.py suite OUT --json docs/results/robosuite.json
set -euo pipefail
out=${1:-runs/robosuite}
labels=${2:-0.25}
only=${3:-}
seed=${TRAIN_SEED:-0}
demos=${DEMOS:-20}
episodes=${EVAL_EPISODES:-20}
workers=${WORKERS:-2}
read -r -a train_args <<<"${TRAIN_ARGS:-}"
read -r -a eval_args <<<"${EVAL_ARGS:-}"
data=$out/data
export MUJOCO_GL=${MUJOCO_GL:-egl}

vw-robot collect suite=robosuite/all "episodes_per_task=$demos" image_size=64 "workers=$workers" \
  seed=0 "out=$data"

# Every task has labels, so the generator and the heads read the same tasks: the whole dataset.
common=(experiment=robosuite_cpu "dataset=$data" "out=$out")
share=(label_fraction="$labels" label_seed=0)
suffix=$([ "$seed" = 0 ] && echo "" || echo "_seed$seed")

wanted() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }
train() { vw-robot train "${common[@]}" "$@" ${train_args[@]+"${train_args[@]}"}; }
head_args() {  # stage section, then its label settings and training seed
  local section=$1
  shift
  for kv in "$@"; do echo "experiment.$section.$kv"; done
}

# The generator stages only for the policies that read them (BC, expert and random need none).
if wanted videoworld || wanted noldm; then
  train stage=tokenizer
  train stage=ldm
  train stage=transformer
fi
if wanted videoworld; then
  # shellcheck disable=SC2046  # one key=value per word
  train stage=action_head "run_name=action_head$suffix" \
    $(head_args action_head "${share[@]}" "optim.seed=$seed")
fi
if wanted bc; then
  # shellcheck disable=SC2046
  train stage=bc "run_name=bc$suffix" $(head_args bc "${share[@]}" "optim.seed=$seed")
fi
if wanted bc_all; then
  train stage=bc "run_name=bc_all$suffix" "experiment.bc.optim.seed=$seed"
fi
if wanted noldm; then
  train stage=transformer run_name=transformer_nocodes experiment.transformer.use_codes=false
  # shellcheck disable=SC2046
  train stage=noldm_head "run_name=noldm_head$suffix" \
    $(head_args noldm_head "${share[@]}" "optim.seed=$seed")
fi

declare -A spec=(
  [expert]=expert [random]=random [videoworld]="$out/action_head$suffix" [bc]="$out/bc$suffix"
  [bc_all]="$out/bc_all$suffix" [noldm]="$out/noldm_head$suffix"
)
for name in expert random videoworld bc bc_all noldm; do
  wanted "$name" || continue
  case $name in expert | random) folder=$name ;; *) folder=$name$suffix ;; esac
  vw-robot eval "policy=${spec[$name]}" suite=robosuite/all "episodes_per_task=$episodes" \
    seed=1000 "workers=$workers" image_size=64 videos_per_task=1 "out=$out/eval/$folder" \
    ${eval_args[@]+"${eval_args[@]}"}
done
