#!/usr/bin/env bash
# The main job: set-up, then DPO and UPO on SmolLM2-135M-Instruct (LoRA) with the shipped chit-chat pairs, both
# evaluated on held-out prompts and printed side by side, with the plot. About 11 minutes on a 2-core CPU from a
# fresh clone, set-up included (docs/RESULTS.md, "The demo, at the defaults").
# Each run writes a new folder under runs/ (pass --output_dir DIR to resume one). Options: `upo demo --help`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/upo demo "$@"
