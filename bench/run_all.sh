#!/usr/bin/env bash
# Every measurement of docs/BENCHMARKS.md, in one go (about 40 minutes on a 2-core CPU). Run it on a quiet machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
py=.venv/bin/python
mkdir -p bench/results
$py bench/step_time.py --model tiny --reps 5 --steps 6 \
    --candidates trl_dpo upo_dpo upo_upo upo_dpo_separate upo_dpo_padding_free upo_dpo_chunked | tee bench/results/tiny.md
$py bench/step_time.py --model smollm2 --lora --reps 3 --steps 4 --warmup 1 --prompt_words 60 --response_words 30 \
    | tee bench/results/smollm2_lora.md
$py bench/padding.py | tee bench/results/padding.md
$py bench/scaling.py --model tiny | tee bench/results/scaling.md
$py bench/reward_throughput.py | tee bench/results/reward_throughput.md
$py bench/online_vs_offline.py --steps 60 --eval_every 10 | tee bench/results/online_vs_offline.md
