#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU: DPO and UPO trained a few steps in bf16 on SmolLM2-135M-Instruct,
# full fine-tune and LoRA (the LoRA runs with activation checkpointing and the reference precomputed on the GPU), UPO
# in fp16 (its loss scaler), a QLoRA run where bitsandbytes is installed, evaluated on held-out prompts on the GPU,
# then the step benchmark against TRL's DPOTrainer. Offline: the model is the shipped one unless MODEL names another (a Hub ID, online).
#
#   bash scripts/gpu_check.sh                        # set-up (.venv, keeping a CUDA torch put there first), then all
#   UPO_PYTHON=/path/to/python bash scripts/gpu_check.sh   # an environment that already has upo and a CUDA torch
#   STEPS=40 MODEL=HuggingFaceTB/SmolLM2-360M-Instruct bash scripts/gpu_check.sh
#
# Writes runs/gpu_check/<date-time>/ (each step's log, the runs, eval.md, step_time_*.json) and ends with a summary;
# exit status 0 only if every step passed. A few minutes on one GPU.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${UPO_PYTHON:-}" ]; then
  py="$UPO_PYTHON"
else
  export UPO_KEEP_TORCH=1  # keeps the CUDA torch in .venv (put it there first)
  source scripts/setup.sh
  set +e  # setup.sh sets -e: here a failing step is recorded, and the others still run
  py=.venv/bin/python
fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
model=${MODEL:-smollm2-135m-instruct}
steps=${STEPS:-20}
out=runs/gpu_check/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "No CUDA GPU visible to $py (torch.cuda.is_available() is False): this check needs one." >&2
  exit 2
fi

declare -a summary
failed=0
step() {  # step NAME COMMAND...: runs it with its output in $out/NAME.log, records pass/fail and the time
  local name=$1
  shift
  local start=$SECONDS
  echo "== $name: $*"
  if "$@" >"$out/$name.log" 2>&1; then
    summary+=("PASS $name ($((SECONDS - start)) s)")
  else
    summary+=("FAIL $name ($((SECONDS - start)) s, exit $?): see $out/$name.log")
    failed=1
    tail -n 20 "$out/$name.log"
  fi
}

step env "$py" -m upo.cli env
cat "$out/env.log"

data=(--dataset examples/data/chitchat_train.jsonl --max_length 256 --per_device_train_batch_size 8 --max_steps "$steps"
      --logging_steps 5 --save_strategy no --report_to none --bf16 true --seed 0)
designer=(--reward_funcs readability non_offensive --reward_weights 1.0 0.5 --alpha 1.0)
lora=(--use_peft true --lora_r 16 --lora_alpha 32 --learning_rate 5e-5 --activation_checkpointing true
      --precompute_ref_log_probs true)
for method in dpo upo; do
  extra=(--alpha 0)
  [ "$method" = upo ] && extra=("${designer[@]}")
  step "train_${method}_full" "$py" -m upo.cli train --model_name_or_path "$model" "${data[@]}" "${extra[@]}" \
    --learning_rate 5e-6 --output_dir "$out/${method}_full"
  step "train_${method}_lora" "$py" -m upo.cli train --model_name_or_path "$model" "${data[@]}" "${extra[@]}" \
    "${lora[@]}" --output_dir "$out/${method}_lora"
done
# fp16, the mixed precision of V100 / T4: a loss-scale overflow is a skipped step (amp/skipped_steps), not an error
step train_upo_fp16 "$py" -m upo.cli train --model_name_or_path "$model" "${data[@]}" "${designer[@]}" \
  --learning_rate 5e-6 --bf16 false --fp16 true --output_dir "$out/upo_fp16"
if "$py" -c "import bitsandbytes" 2>/dev/null; then
  step train_upo_qlora "$py" -m upo.cli train --model_name_or_path "$model" "${data[@]}" "${designer[@]}" \
    "${lora[@]}" --load_in_4bit true --dtype bfloat16 --output_dir "$out/upo_qlora"
else
  summary+=("SKIP train_upo_qlora (bitsandbytes is not installed)")
fi

# Every training ran on the GPU, in bf16 (or fp16, through its loss scaler), with finite losses, and wrote its model.
step check_runs "$py" - "$out" <<'EOF'
import json, math, sys
from pathlib import Path

for run in sorted(p for p in Path(sys.argv[1]).iterdir() if (p / "upo_config.json").is_file()):
    config = json.loads((run / "upo_config.json").read_text())
    logs = [e for e in json.loads((run / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert config["bf16"] is True or config["fp16"] is True, f"{run.name}: no mixed precision"
    assert logs and all(math.isfinite(e["loss"]) for e in logs), f"{run.name}: no or non-finite losses"
    amp = ""
    if config["fp16"]:  # the scaler's state is logged; it must have let most steps through
        last = logs[-1]
        assert last["amp/skipped_steps"] < last["step"] / 2, f"{run.name}: the loss scaler skipped most steps"
        amp = f", loss scale {last['amp/loss_scale']:g} ({last['amp/skipped_steps']:g} steps skipped)"
    speed = [e["perf/tokens_per_second"] for e in logs if "perf/tokens_per_second" in e]
    print(f"{run.name}: {len(logs)} logs, last loss {logs[-1]['loss']:.4f}, margin "
          f"{logs[-1].get('rewards/margins', float('nan')):.4f}, {max(speed, default=0):.0f} tokens/s{amp}")
EOF
cat "$out/check_runs.log"

runs=()
for name in dpo_full upo_full dpo_lora upo_lora upo_qlora; do
  [ -f "$out/$name/upo_config.json" ] && runs+=("$out/$name")
done
if [ ${#runs[@]} -gt 0 ]; then
  step eval "$py" -m upo.cli eval --model "${runs[@]}" --eval_data examples/data/chitchat_eval.jsonl \
    --train_data examples/data/chitchat_train.jsonl --reward_funcs readability non_offensive --reward_weights 1.0 0.5 \
    --max_prompts 64 --device cuda --dtype bfloat16 --out "$out/eval"
fi

# The step benchmark against TRL, on the GPU in bf16 (bench/step_time.py's --device / --dtype mode).
for variant in full lora; do
  flags=()
  [ "$variant" = lora ] && flags=(--lora)
  step "step_time_$variant" "$py" bench/step_time.py --model smollm2 "${flags[@]}" --device cuda --dtype bfloat16 \
    --reps 2 --steps 6 --out "$out/step_time_$variant.json"
done

echo
echo "GPU check in $out:"
printf '  %s\n' "${summary[@]}"
[ -f "$out/eval/eval.md" ] && cat "$out/eval/eval.md"
for variant in full lora; do
  [ -f "$out/step_time_$variant.log" ] && tail -n 12 "$out/step_time_$variant.log"
done
exit $failed
