#!/usr/bin/env bash
# The MT10 comparison of issue #11 (item 5), at CPU scale, with one head recipe for every
# learned policy:
#   data       EPISODES (20) expert demonstrations per MT10 task (collection seed 0) in DATA;
#              every video goes to the generator, each head sees its share of them labelled
#              (issue #11 item 3: EPISODES=100 LABELS=0.1 is 100 videos and 10 labels per task)
#   generator  tokenizer, LDM and transformer (experiment mt10_cpu) on every video
#   heads      VideoWorld and BC on each share in LABELS of each task's episodes (label seed 0,
#              stratified by task), one head per training seed in SEEDS; then BC on every
#              label, the no-LDM head and VideoWorld on every label (training seed 0)
#   evaluation `vw-robot eval` per policy on the REPORTING seeds episode_seed(1000, task, i):
#              20 episodes per task, 200 steps, 64 px
# Each policy is evaluated as soon as it is trained, in the order above, so a stopped study
# leaves finished rows; rerun the same command to go on.
#
#   bash benchmarks/mt10_compare.sh [OUT (runs/mt10_compare)] [POLICIES (all)]
#   DATA=OUT/data  EPISODES=20  CAMERA=corner2 (e.g. front+top: two views stacked in one
#   image; every policy is evaluated on its own camera)  LABELS="0.1 0.25"  SEEDS="0 1 2"
#   HEAD_ARGS=""  (e.g. "use_state=true", given to every head as experiment.<head>.KEY=VALUE and recorded in its checkpoint)
#   GEN_ARGS=""  (e.g. "hide_past_codes=true": experiment.transformer.KEY=VALUE for the
#   transformer with codes)
#   POLICIES: any of generator videoworld bc bc_all noldm videoworld_all expert random (the
#   default: all of these), and videoworld_ldm bc_ldm: the same heads with the trunk that reads
#   the frame started from the LDM's frame encoder (trained on every video) and fine-tuned
#   (trunk=ldm, issue #11 item 2), asked for by name only
#
# Eval folders OUT/eval/<policy>-<pct>pct_seed<k> (expert, random, bc_all: plain names); results
# as data: python benchmarks/results_json.py suite OUT --json docs/results/mt10.json \
#   --command "bash benchmarks/mt10_compare.sh"
set -euo pipefail
out=${1:-runs/mt10_compare}
only=${2:-}
data=${DATA:-$out/data}
episodes=${EPISODES:-20}
camera=${CAMERA:-corner2}
labels=${LABELS:-0.1 0.25}
seeds=${SEEDS:-0 1 2}
read -r -a head_switches <<<"${HEAD_ARGS:-}"
read -r -a gen_switches <<<"${GEN_ARGS:-}"
export MUJOCO_GL=${MUJOCO_GL:-egl}

default="generator videoworld bc bc_all noldm videoworld_all expert random"
gen_args=()  # GEN_ARGS, one experiment.transformer.KEY=VALUE each
for kv in "${gen_switches[@]}"; do gen_args+=("experiment.transformer.$kv"); done
wanted() { [[ " ${only:-$default} " == *" $1 "* ]]; }
train() { vw-robot train experiment=mt10_cpu "dataset=$data" "out=$out" pictures=false "$@"; }
head_args() {  # a head's section, then its own settings: the common recipe comes first
  local section=$1
  shift
  for kv in "${head_switches[@]}" "$@"; do echo "experiment.$section.$kv"; done
}
evaluate() {  # eval folder name, policy
  vw-robot eval "policy=$2" suite=metaworld/mt10 episodes_per_task=20 max_episode_steps=200 \
    seed=1000 workers=2 image_size=64 videos_per_task=0 "out=$out/eval/$1"
}
pct() { python -c "print(round(float('$1') * 100))"; }

vw-robot collect suite=metaworld/mt10 "episodes_per_task=$episodes" image_size=64 workers=2 seed=0 \
  "camera=$camera" "out=$data"
train stage=tokenizer
train stage=ldm
train stage=transformer "${gen_args[@]}"

for share in $labels; do
  p=$(pct "$share")
  for seed in $seeds; do
    if wanted videoworld; then
      # shellcheck disable=SC2046  # one key=value per word
      train stage=action_head "run_name=action_head-${p}pct_seed$seed" $(head_args action_head \
        "label_fraction=$share" label_seed=0 "optim.seed=$seed")
      evaluate "videoworld-${p}pct_seed$seed" "$out/action_head-${p}pct_seed$seed"
    fi
    if wanted bc; then
      # shellcheck disable=SC2046
      train stage=bc "run_name=bc-${p}pct_seed$seed" $(head_args bc \
        "label_fraction=$share" label_seed=0 "optim.seed=$seed")
      evaluate "bc-${p}pct_seed$seed" "$out/bc-${p}pct_seed$seed"
    fi
    if wanted videoworld_ldm; then
      # shellcheck disable=SC2046
      train stage=action_head "run_name=action_head_ldm-${p}pct_seed$seed" $(head_args \
        action_head trunk=ldm "label_fraction=$share" label_seed=0 "optim.seed=$seed")
      evaluate "videoworld_ldm-${p}pct_seed$seed" "$out/action_head_ldm-${p}pct_seed$seed"
    fi
    if wanted bc_ldm; then
      # shellcheck disable=SC2046
      train stage=bc "run_name=bc_ldm-${p}pct_seed$seed" $(head_args bc trunk=ldm \
        "label_fraction=$share" label_seed=0 "optim.seed=$seed")
      evaluate "bc_ldm-${p}pct_seed$seed" "$out/bc_ldm-${p}pct_seed$seed"
    fi
  done
done
if wanted bc_all; then
  # shellcheck disable=SC2046
  train stage=bc run_name=bc_all $(head_args bc optim.seed=0)
  evaluate bc_all "$out/bc_all"
fi
for name in expert random; do
  if wanted "$name"; then evaluate "$name" "$name"; fi
done
if wanted noldm; then
  train stage=transformer run_name=transformer_nocodes experiment.transformer.use_codes=false
  share=$(echo "$labels" | awk '{print $NF}')  # the largest share listed last
  p=$(pct "$share")
  # shellcheck disable=SC2046
  train stage=noldm_head "run_name=noldm_head-${p}pct_seed0" $(head_args noldm_head \
    "label_fraction=$share" label_seed=0 optim.seed=0)
  evaluate "noldm-${p}pct_seed0" "$out/noldm_head-${p}pct_seed0"
fi
if wanted videoworld_all; then
  # shellcheck disable=SC2046
  train stage=action_head run_name=action_head-100pct_seed0 $(head_args action_head optim.seed=0)
  evaluate videoworld-100pct_seed0 "$out/action_head-100pct_seed0"
fi
