#!/usr/bin/env bash
# Regenerates the lock files (requirements/lock-py3.X.txt): the exact versions that scripts/setup.sh
# installs, one file per supported Python, each valid on every platform (uv's universal resolution keeps
# platform markers). Run it after changing a dependency in pyproject.toml, then run the whole suite and the
# benches that touch what moved before committing the new lock files. The locks hold the dev extra (test
# tools, the GCS emulator), the gcp extra (apache-beam[gcp]) and the semantic extra (faiss-cpu), so the
# gs:// and Dataflow tests and semantic dedup's tests run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null || { echo "lock.sh needs uv: pip install uv" >&2; exit 2; }
for version in 3.10 3.11 3.12; do
  uv pip compile pyproject.toml requirements/build.in --extra dev --extra gcp --extra semantic --universal --python-version "$version" \
    --no-header --quiet --output-file "requirements/lock-py$version.txt"
  # The header says where the file comes from; uv's own header would name this machine's paths.
  sed -i "1i # Locked for Python $version by scripts/lock.sh (uv pip compile --universal); do not edit." \
    "requirements/lock-py$version.txt"
done
