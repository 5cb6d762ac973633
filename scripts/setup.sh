#!/usr/bin/env bash
# Creates .venv (Python 3.10-3.12) and installs vlcurate with its test tools. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Installing is quick when everything is already there; a stamp skips it when pyproject.toml is unchanged.
stamp=.venv/.vlcurate-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch/torchvision pinned to the builds this project is tested with (see README, "Install").
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
# Byte-compiles the sources as a wheel install would: an editable install leaves that to the first import,
# which never happens where PYTHONDONTWRITEBYTECODE is set, and then every command compiles them again
# (~0.3 s). Quick when nothing changed.
.venv/bin/python -m compileall -q vlcurate schemas filters formatters model pipelines
