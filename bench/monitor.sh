#!/usr/bin/env bash
# Runs a command while sampling the GPU's engine use (`nvidia-smi dmon`: SM, memory, JPEG engines) and
# the busiest processes' CPU use (`top`) every second, to find which resource a run is bound by:
#     bash bench/monitor.sh OUT_DIR python bench/clip_gpu.py e2e --models ViT-B-32 --workers 4
# Writes OUT_DIR/dmon.log and OUT_DIR/top.log; exits with the command's status.
set -uo pipefail
out=$1
shift
mkdir -p "$out"
samplers=()
if command -v nvidia-smi >/dev/null; then
  nvidia-smi dmon -s u -d 1 >"$out/dmon.log" 2>&1 &
  samplers+=($!)
fi
# Only processes above 5% of a core, with their full command line, so each worker can be told apart.
top -b -c -d 1 -w 250 | awk '/^top -/ || /^%Cpu/ || $9 + 0 > 5 { print; fflush() }' >"$out/top.log" 2>&1 &
samplers+=($!)
"$@"
status=$?
kill "${samplers[@]}" 2>/dev/null
pkill -P $$ top 2>/dev/null
exit $status
