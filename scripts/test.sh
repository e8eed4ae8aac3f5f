#!/usr/bin/env bash
# ruff, then the test suite, offline, on tiny models. Extra arguments go to pytest (e.g. `-m slow` for end-to-end runs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# Lint first (settings in pyproject.toml's [tool.ruff]): a finding fails the test command, as a failing test does.
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
