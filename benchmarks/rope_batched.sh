#!/usr/bin/env bash
# Issue #14: what a rope transformer trained banded buys evaluation. On a finished `vw-robot run`
# folder of the default experiment (tiny_cpu, the head recipe; its data, tokenizer, LDM,
# transformer and VideoWorld head, videoworld-100pct_seed0), train a rope transformer on
# sequences of 2 windows (banded: what the sliding control cache computes) and a head on it with
# the head recipe, then evaluate the run's head and the rope head on the selection seeds
# (episode_seed(5000, task, i)) per process (workers=2) and batched (batch=8 and 16, workers=2),
# timing each. Prints a Markdown table; asserts nothing. Resumable (trained stages are kept;
# each evaluation folder is rerun from scratch).
#
#   bash benchmarks/rope_batched.sh RUN [EPISODES (20)]
#   e.g. vw-robot run out=runs/demo && bash benchmarks/rope_batched.sh runs/demo
set -euo pipefail
run=${1:?a finished vw-robot run folder}
episodes=${2:-20}
export MUJOCO_GL=${MUJOCO_GL:-egl}
read -r tasks window < <(python - "$run" <<'PY'
import sys
from omegaconf import OmegaConf
from vw_robot import checkpoint as ckpt
info = ckpt.read_info(f"{sys.argv[1]}/transformer", stage="transformer")
tasks = OmegaConf.load(info.path / "config.yaml").tasks  # as trained (the resume check's order)
print("[" + ",".join(tasks) + "]", info.model_config["max_timesteps"])
PY
)
common=(experiment=tiny_cpu "dataset=$run/data" "out=$run" "tasks=$tasks")
vw-robot train stage=transformer "${common[@]}" run_name=transformer_rope \
  experiment.transformer.model.positions=rope \
  "experiment.transformer.model.train_timesteps=$((2 * window))"
vw-robot train stage=action_head "${common[@]}" run_name=action_head_rope \
  "transformer_checkpoint=$run/transformer_rope" experiment.action_head.task_conditioning=true \
  experiment.action_head.use_state=true experiment.action_head.augment_shift=4

echo "| head | transformer | mode | episodes | successes | env steps | wall s | env steps/s |"
echo "|---|---|---|---:|---:|---:|---:|---:|"
for head in videoworld-100pct_seed0 action_head_rope; do  # the run's head, the rope one
  for mode in "workers=2" "workers=2 batch=8" "workers=2 batch=16"; do
    out="$run/rope_batched/${head}_$(echo "$mode" | tr -d ' =')"
    rm -rf "$out"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086  # one key=value per word
    vw-robot eval "policy=$run/$head" "tasks=$tasks" "episodes_per_task=$episodes" \
      max_episode_steps=200 seed=5000 videos_per_task=0 $mode "out=$out" >/dev/null
    end=$(date +%s.%N)
    python - "$out" "$head" "$mode" "$start" "$end" <<'PY'
import json, sys
out, head, mode, start, end = sys.argv[1:]
rows = [json.loads(line) for line in open(f"{out}/episodes.jsonl")][1:]
steps, seconds = sum(r["steps"] for r in rows), float(end) - float(start)
kind = "rope, banded" if head.endswith("_rope") else "the run's"
print(f"| {head} | {kind} | `{mode}` | {len(rows)} | {sum(bool(r['success']) for r in rows)} "
      f"| {steps} | {seconds:.1f} | {steps / seconds:.1f} |", flush=True)
PY
  done
done
