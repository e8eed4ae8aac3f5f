#!/usr/bin/env bash
# The main job: UPO on the shipped example pairs with SmolLM2-135M-Instruct (LoRA), on CPU, in a few minutes.
# Each run writes a new folder under runs/, so running it twice never overwrites anything.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
out="runs/example-$(date +%Y%m%d-%H%M%S)"
.venv/bin/upo train --config examples/train_example.yaml --output_dir "$out" "$@"
.venv/bin/python - "$out" <<'PY'
import sys
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1])
print(f"{sys.argv[1]} loads with from_pretrained: {type(model.get_base_model()).__name__}, adapter {list(model.peft_config)}")
PY
