#!/usr/bin/env bash
# Installs what is needed (scripts/setup.sh), then runs lint, the import contracts and every test, slow ones
# included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# lint-imports: the layer rules (docs/architecture.md), on the installed layout.
.venv/bin/python scripts/lint_imports.py
.venv/bin/python -m pytest -q "$@"
