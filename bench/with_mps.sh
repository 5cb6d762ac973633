#!/usr/bin/env bash
# Runs a command with an NVIDIA MPS control daemon (the GPU's kernels of several processes share one
# context and can run side by side, as Dataflow's `use_nvidia_mps` service option does), then stops it:
#     bash bench/with_mps.sh python bench/clip_gpu.py e2e --models ViT-B-32 --workers 4
# Exits 3 without running the command when the daemon cannot be started.
set -uo pipefail
export CUDA_MPS_PIPE_DIRECTORY=${CUDA_MPS_PIPE_DIRECTORY:-/tmp/vlcurate-mps/pipe}
export CUDA_MPS_LOG_DIRECTORY=${CUDA_MPS_LOG_DIRECTORY:-/tmp/vlcurate-mps/log}
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
if ! command -v nvidia-cuda-mps-control >/dev/null || ! nvidia-cuda-mps-control -d; then
  echo "with_mps.sh: could not start nvidia-cuda-mps-control" >&2
  exit 3
fi
trap 'echo quit | nvidia-cuda-mps-control' EXIT
# The command runs in the background so that a TERM (e.g. from `timeout`) reaches it at once and the daemon
# is still stopped on the way out; a daemon left running makes the next with_mps.sh fail to start one.
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
status=$?
if kill -0 "$child" 2>/dev/null; then  # interrupted: let the command finish its own exit
  wait "$child"
fi
exit $status
