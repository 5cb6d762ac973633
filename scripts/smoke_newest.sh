#!/usr/bin/env bash
# CI's early warning: installs the newest releases pyproject.toml's ranges allow (not the lock) into
# .venv-newest and runs the demo plus a handful of tests. It never fails CI (the gating run uses the lock);
# when something breaks it prints a loud warning naming the packages that are newer than the lock.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-newest
out=$(mktemp -d)
log="$out/smoke.log"
status=ok
{
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel &&
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager -e ".[dev]"
} >"$log" 2>&1 || status="install failed"
py_version=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$status" = ok ]; then
  export HF_HUB_OFFLINE=1
  "$VENV/bin/vlcurate" demo --out "$out/demo" --overwrite >>"$log" 2>&1 || status="vlcurate demo failed"
fi
if [ "$status" = ok ]; then
  "$VENV/bin/python" -m pytest -q -x -m "not slow" tests/schemas tests/pipelines/test_clean.py \
    tests/pipelines/test_format_job.py tests/pipelines/test_sft_job.py >>"$log" 2>&1 || status="tests failed"
fi
newer=$("$VENV/bin/python" scripts/newer_than_lock.py "requirements/lock-py$py_version.txt" 2>&1)
if [ "$status" = ok ]; then
  echo "smoke on the newest allowed releases: passed (demo + tests)"
  [ -n "$newer" ] && echo "newer than the lock, and working: $newer"
else
  bar=$(printf '#%.0s' {1..100})
  {
    echo "$bar"
    echo "WARNING: vlcurate breaks on the newest releases its dependency ranges allow ($status)."
    echo "Packages newer than requirements/lock-py$py_version.txt: ${newer:-none (the break is elsewhere)}"
    echo "Users who pip install vlcurate outside the lock get these. Fix the code, or cap the package in"
    echo "pyproject.toml, then rerun scripts/lock.sh. Last lines of $log:"
    # Prefixed, so CI never mistakes the smoke run's pytest summary for the gating run's.
    tail -n 40 "$log" | sed 's/^/  smoke> /'
    echo "$bar"
  } >&2
fi
exit 0
