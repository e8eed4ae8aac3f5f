#!/usr/bin/env bash
# Every measurement of docs/BENCHMARKS.md, in one go (about 90 minutes on a 2-core CPU). Run it on a quiet machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
py=.venv/bin/python
mkdir -p bench/results
$py bench/step_time.py --model tiny --reps 5 --steps 6 \
    --candidates trl_dpo upo_dpo upo_upo upo_dpo_separate upo_dpo_padding_free upo_dpo_chunked | tee bench/results/tiny.md
$py bench/step_time.py --model smollm2 --lora --reps 3 --steps 4 --warmup 1 --prompt_words 60 --response_words 30 \
    | tee bench/results/smollm2_lora.md
$py bench/step_time.py --model smollm2 --lora --roofline --reps 3 --steps 4 --warmup 1 --prompt_words 60 --response_words 30 \
    --candidates trl_dpo trl_dpo_best upo_dpo upo_dpo_precomputed upo_upo upo_dpo_head_on_all_tokens \
    | tee bench/results/smollm2_lora_roofline.md
$py bench/step_time.py --model smollm2 --roofline --reps 3 --steps 3 --warmup 1 --prompt_words 60 --response_words 30 \
    --candidates trl_dpo_best upo_dpo upo_upo | tee bench/results/smollm2_full_roofline.md
$py bench/sharding_memory.py --steps 3 | tee bench/results/sharding_memory.md
$py bench/padding.py | tee bench/results/padding.md
$py bench/scaling.py --model tiny | tee bench/results/scaling.md
$py bench/reward_throughput.py | tee bench/results/reward_throughput.md
$py bench/online_vs_offline.py --steps 60 --eval_every 10 | tee bench/results/online_vs_offline.md
