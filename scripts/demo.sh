#!/usr/bin/env bash
# Installs what is needed, then runs every stage end to end on bundled synthetic data (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/vlcurate demo --out "${1:-demo-out}" --overwrite
