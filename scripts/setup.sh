#!/usr/bin/env bash
# Creates .venv and installs the exact versions of requirements/lock-py3.X.txt (made by scripts/lock.sh),
# then vlcurate itself. Safe to rerun: it reinstalls only when the lock, pyproject.toml or the torch choice
# changed.
#   PYTHON=python3.11        the interpreter for .venv (3.10-3.12; default python3)
#   VLCURATE_TORCH=cpu       PyTorch's CPU wheels instead of PyPI's CUDA build (Linux x86_64: ~5.5 GB less)
#   VLCURATE_TORCH_INDEX=URL where the CPU wheels come from (default PyTorch's CPU index)
#   VENV=.venv-other         another environment folder (CI's smoke run uses one)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_KIND=${VLCURATE_TORCH:-default}
case "$TORCH_KIND" in default | cpu) ;; *)
  echo "setup: VLCURATE_TORCH must be 'cpu' or unset, not '$TORCH_KIND'" >&2
  exit 2
  ;;
esac

if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null || { echo "setup: $PYTHON not found; name one with PYTHON=python3.11" >&2; exit 2; }
  "$PYTHON" -m venv "$VENV"
fi
py_version=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
lock=requirements/lock-py$py_version.txt
if [ ! -f "$lock" ]; then
  echo "setup: no lock file for Python $py_version (supported: 3.10, 3.11, 3.12); remove $VENV and pick one with PYTHON=python3.11" >&2
  exit 2
fi

# The stamp holds what was installed; anything else means install again.
stamp="$VENV/.vlcurate-installed"
want=$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)-$TORCH_KIND
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the locked versions of $lock into $VENV (a first install takes a few minutes)" >&2
  pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  if [ "$TORCH_KIND" = cpu ]; then
    # The same torch/torchvision releases as the lock, as PyTorch's CPU builds; the lock's CUDA runtime
    # packages (nvidia-*, cuda-*, triton) are only needed by the CUDA build and are left out.
    index=${VLCURATE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
    torch_v=$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' "$lock" | head -1)
    vision_v=$(sed -n 's/^torchvision==\([^ ;]*\).*/\1/p' "$lock" | head -1)
    # No local label in the pin: the index's CPU build (2.14.1+cpu on Linux x86_64) matches it everywhere.
    "${pip[@]}" --index-url "$index" "torch==$torch_v" "torchvision==$vision_v" || {
      echo "setup: VLCURATE_TORCH=cpu could not install torch $torch_v from $index; set VLCURATE_TORCH_INDEX to a reachable mirror or unset VLCURATE_TORCH" >&2
      exit 2
    }
    grep -v -E '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==' "$lock" >"$VENV/lock-cpu.txt"
    "${pip[@]}" -r "$VENV/lock-cpu.txt"
  else
    "${pip[@]}" -r "$lock"
  fi
  # Everything vlcurate needs came from the lock (setuptools included), so nothing is resolved or
  # downloaded here and no newer setuptools changes the build.
  "${pip[@]}" --no-deps --no-build-isolation -e . 2>"$VENV/build.log" || {
    cat "$VENV/build.log" >&2
    exit 1
  }
  "$VENV/bin/python" -m pip check >/dev/null || {
    "$VENV/bin/python" -m pip check >&2
    echo "setup: the installed packages disagree; regenerate the lock with scripts/lock.sh" >&2
    exit 1
  }
  echo "$want" >"$stamp"
fi
# Byte-compiles the sources as a wheel install would: an editable install leaves that to the first import,
# which never writes them where PYTHONDONTWRITEBYTECODE is set, and then every command compiles them again
# (~0.3 s). Quick when nothing changed.
"$VENV/bin/python" -m compileall -q vlcurate schemas filters formatters model pipelines synth
