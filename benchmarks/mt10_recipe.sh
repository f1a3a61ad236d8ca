#!/usr/bin/env bash
# The head recipe, one change at a time (issue #11, item 1), on BC with every label on MT10:
# 20 expert demonstrations per task (collection seed 0, as the README's MT10 run), the mt10_cpu
# heads (600 steps), each variant evaluated closed-loop on 20 episodes per task, 200 steps.
#
# Recipe choices are made on SELECTION seeds episode_seed(5000, task, i) — unseen by training
# and distinct from the reporting seeds episode_seed(1000, task, i) of every README table — so
# no recipe is picked on the episodes it is reported on.
#
#   bash benchmarks/mt10_recipe.sh [OUT (runs/recipe)] [DATA (data/mt10)] [VARIANTS (all)]
#
# Resumable: a trained variant is not retrained; an evaluated one is not re-evaluated.
# Results: OUT/eval/<variant>/results.{md,json}; summary: python benchmarks/recipe_table.py OUT
set -euo pipefail
out=${1:-runs/recipe}
data=${2:-data/mt10}
only=${3:-}
export MUJOCO_GL=${MUJOCO_GL:-egl}

vw-robot collect suite=metaworld/mt10 episodes_per_task=20 image_size=64 workers=2 seed=0 \
  "out=$data"

# name | training switches (experiment.bc.*) | evaluation switches | camera (default corner2)
#   | image size (default 64)
# A variant with another camera or size trains on its own copy of the demonstrations,
# DATA_<camera>[_<size>px] (the same episodes: collection seed 0), and is evaluated on that
# camera and size (the policy's own).
# In order of what each run tells: the baseline, everything at once, then one switch at a time.
variants=(
  "base||"
  "base_execute1||execute=1"
  "task_shift_state|task_conditioning=true augment_shift=4 use_state=true|"
  "task_shift_state_execute1|task_conditioning=true augment_shift=4 use_state=true|execute=1"
  "task|task_conditioning=true|"
  "task_shift|task_conditioning=true augment_shift=4|"
  "task_state|task_conditioning=true use_state=true|"
  "base_ensemble||ensemble=0.1"
  "task_shift_state_ensemble|task_conditioning=true augment_shift=4 use_state=true|ensemble=0.1"
  # Longer training, the policy chosen by the loss on 10% of each task's labelled episodes
  # (held out of training), then the same with an exponential moving average of the weights.
  "task_shift_state_2k_val|task_conditioning=true augment_shift=4 use_state=true optim.steps=2000 val_fraction=0.1|"
  "task_shift_state_2k_val_ema|task_conditioning=true augment_shift=4 use_state=true optim.steps=2000 val_fraction=0.1 optim.ema=0.995|"
  # A wider, deeper trunk (channels 32-64-128, two residual blocks per stage): on the
  # training episodes themselves the 2000-step head's actions are off by 0.13-0.22 on
  # pick-place, push and peg-insert against 0.04-0.09 elsewhere (benchmarks/action_error.py).
  "task_shift_state_2k_val_big|task_conditioning=true augment_shift=4 use_state=true optim.steps=2000 val_fraction=0.1 model.channels=[32,64,128] model.num_res_blocks=2|"
  # What the policy sees: the free "workspace" camera frames the table top, where corner2
  # shows the reach goal as 1-2 pixels at 64 px and the workspace camera as 4-8.
  "task_shift_state_2k_val_workspace|task_conditioning=true augment_shift=4 use_state=true optim.steps=2000 val_fraction=0.1||workspace"
  # Two views in one image: the middle rows of the free cameras "front" (low, from the front)
  # and "top" (straight down), at right angles, so that a goal in the air is placed in 3-D
  # (benchmarks/goal_ambiguity.py: 1 cm apart at most for goals that look alike in both).
  "task_shift_state_2k_val_fronttop|task_conditioning=true augment_shift=4 use_state=true optim.steps=2000 val_fraction=0.1||front+top"
  # The wider, deeper trunk with the two views (the camera that paid).
  "task_shift_state_2k_val_fronttop_big|task_conditioning=true augment_shift=4 use_state=true optim.steps=2000 val_fraction=0.1 model.channels=[32,64,128] model.num_res_blocks=2||front+top"
  # The wrist view (Meta-World's gripperPOV) in place of the view from above.
  "task_shift_state_2k_val_frontgripper|task_conditioning=true augment_shift=4 use_state=true optim.steps=2000 val_fraction=0.1||front+gripperPOV"
  # The two views at 96 px (each view 48 rows instead of 32; 6 px shifts, the same share).
  "task_shift_state_2k_val_fronttop_96|task_conditioning=true augment_shift=6 use_state=true optim.steps=2000 val_fraction=0.1||front+top|96"
  # And at 128 px (each view 64 rows; 8 px shifts).
  "task_shift_state_2k_val_fronttop_128|task_conditioning=true augment_shift=8 use_state=true optim.steps=2000 val_fraction=0.1||front+top|128"
)
for row in "${variants[@]}"; do
  IFS='|' read -r name train_switches eval_switches camera size <<<"$row"
  size=${size:-64}
  if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then continue; fi
  variant_data=$data
  if [ -n "$camera" ] || [ "$size" != 64 ]; then
    variant_data=${data}_${camera:-corner2}
    if [ "$size" != 64 ]; then variant_data=${variant_data}_${size}px; fi
    vw-robot collect suite=metaworld/mt10 episodes_per_task=20 "image_size=$size" workers=2 \
      seed=0 "camera=${camera:-corner2}" "out=$variant_data"
  fi
  # Evaluation-only variants reuse the checkpoint of the variant they extend.
  run=${name%_execute1}
  run=${run%_ensemble}
  overrides=()
  for switch in $train_switches; do overrides+=("experiment.bc.$switch"); done
  vw-robot train stage=bc experiment=mt10_cpu "dataset=$variant_data" "out=$out" "run_name=bc_$run" \
    pictures=false "${overrides[@]}"
  if [ -f "$out/eval/$name/results.json" ]; then
    echo "$name: evaluated already ($out/eval/$name)"
    continue
  fi
  # shellcheck disable=SC2086  # the switches are separate key=value words
  vw-robot eval "policy=$out/bc_$run" suite=metaworld/mt10 episodes_per_task=20 \
    max_episode_steps=200 seed=5000 workers=2 "image_size=$size" videos_per_task=0 \
    "out=$out/eval/$name" $eval_switches
done
