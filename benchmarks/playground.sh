#!/usr/bin/env bash
# Learned policies in the playground (issue #12), CALVIN's protocol at CPU scale:
#   data       EPISODES (20) expert demonstrations of each of the 21 subtasks (collection seed
#              0) and 20 long play episodes (8 subtasks each); the play video goes to the
#              generator only (EPISODES=100 LABELS=0.25: 100 videos, 25 labelled per subtask)
#   generator  tokenizer, LDM and transformer (experiment playground_cpu) on every video
#   heads      VideoWorld, BC and no-LDM on the same LABELS share of each subtask's episodes
#              (drawn by label seed 0, stratified by subtask), BC on every label
#   evaluation `vw-robot eval-chains` per policy: CHAINS chains of 5 (360 steps per subtask,
#              chain seeds episode_seed(1000, "playground/chain", i)), then the 12 VideoWorld
#              subtasks one at a time (20 episodes each, seeds episode_seed(1000, task, i),
#              360 steps), for VideoWorld, no-LDM, BC, BC on all labels, expert and random
#
#   bash benchmarks/playground.sh [OUT (runs/playground)] [LABELS (0.25)] [POLICIES (all)]
#   DATA=OUT/data  EPISODES=20  CAMERA=front (e.g. front+top: two views stacked in one image)  CHAINS=200
#   TRAIN_SEED=0  HEAD_ARGS="" (e.g. "optim.steps=2000", given to every
#   head as experiment.<head>.KEY=VALUE after the preset's recipe, recorded in its checkpoint)
#   GEN_ARGS="" (e.g. "hide_past_codes=true": experiment.transformer.KEY=VALUE for the
#   transformer with codes)
#
# Resumable: collection skips recorded episodes, a trained stage is not retrained (a stopped one
# resumes from its last checkpoint), an evaluated policy is not re-evaluated (its subtasks resume).
# Results as data: python benchmarks/results_json.py playground OUT --json docs/results/playground.json
set -euo pipefail
out=${1:-runs/playground}
labels=${2:-0.25}
only=${3:-}
chains=${CHAINS:-200}
seed=${TRAIN_SEED:-0}
read -r -a head_switches <<<"${HEAD_ARGS:-}"
read -r -a gen_switches <<<"${GEN_ARGS:-}"
data=${DATA:-$out/data}
camera=${CAMERA:-front}
episodes=${EPISODES:-20}
export MUJOCO_GL=${MUJOCO_GL:-egl}

vw-robot collect suite=playground/all "episodes_per_task=$episodes" image_size=64 workers=2 seed=0 \
  "camera=$camera" "out=$data"
vw-robot collect "tasks=[playground/play]" episodes_per_task=20 image_size=64 workers=2 seed=0 \
  "camera=$camera" "out=$data"

subtasks=$(python -c "from vw_robot.envs import list_tasks; print(','.join(list_tasks('playground/all')))")
video="tasks=[$subtasks,playground/play]"  # the generator stages: every video
heads="tasks=[$subtasks]"                   # the heads: the subtasks' labelled share
common=(experiment=playground_cpu "dataset=$data" "out=$out")
share=(label_fraction="$labels" label_seed=0)
suffix=$([ "$seed" = 0 ] && echo "" || echo "_seed$seed")

gen_args=()  # GEN_ARGS, one experiment.transformer.KEY=VALUE each
for kv in "${gen_switches[@]}"; do gen_args+=("experiment.transformer.$kv"); done
wanted() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }
train() { vw-robot train "${common[@]}" "$@"; }
head_args() {  # stage section, then its label settings and training seed (after HEAD_ARGS)
  local section=$1
  shift
  for kv in "${head_switches[@]}" "$@"; do echo "experiment.$section.$kv"; done
}

if wanted videoworld || wanted noldm; then  # BC reads pixels and actions only
  train stage=tokenizer "$video"
  train stage=ldm "$video"
  train stage=transformer "$video" "${gen_args[@]}"
fi
if wanted videoworld; then
  # shellcheck disable=SC2046  # one key=value per word
  train stage=action_head "$heads" "run_name=action_head$suffix" \
    $(head_args action_head "${share[@]}" "optim.seed=$seed")
fi
if wanted bc; then
  # shellcheck disable=SC2046
  train stage=bc "$heads" "run_name=bc$suffix" $(head_args bc "${share[@]}" "optim.seed=$seed")
fi
if wanted bc_all; then
  # shellcheck disable=SC2046
  train stage=bc "$heads" "run_name=bc_all$suffix" $(head_args bc "optim.seed=$seed")
fi
if wanted noldm; then
  train stage=transformer "$video" run_name=transformer_nocodes \
    experiment.transformer.use_codes=false
  # shellcheck disable=SC2046
  train stage=noldm_head "$heads" "run_name=noldm_head$suffix" \
    $(head_args noldm_head "${share[@]}" "optim.seed=$seed")
fi

declare -A spec=(
  [expert]=expert [random]=random [videoworld]="$out/action_head$suffix" [bc]="$out/bc$suffix"
  [bc_all]="$out/bc_all$suffix" [noldm]="$out/noldm_head$suffix"
)
for name in expert random videoworld bc bc_all noldm; do
  wanted "$name" || continue
  case $name in expert | random) folder=$name ;; *) folder=$name$suffix ;; esac
  vw-robot eval-chains "policy=${spec[$name]}" "chains=$chains" single_episodes=20 seed=1000 \
    workers=2 image_size=64 videos=2 "out=$out/eval/$folder"
done
