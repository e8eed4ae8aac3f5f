#!/usr/bin/env bash
# The test suite, offline, on tiny models. Extra arguments go to pytest (e.g. `-m slow` for end-to-end runs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/python -m pytest -q "$@"
