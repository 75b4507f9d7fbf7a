#!/usr/bin/env bash
# The GPU check of docs/speed.md, one command on a GPU machine (<= 8 minutes on an H100/H200):
#   bash benchmarks/device_wheels.sh   # here, once: the wheels the GPU image lacks, into .whl/
#   bash benchmarks/device_check.sh    # there, from the repository's root (the device tool
#                                      # carries .whl); the tables go to stdout and $OUT
# 1. updates/s of one run, eager, for IQL and TD3+BC with 1, 3, 5 actors (chain_overhead.py);
# 2. K runs of POGO-IQL (3 actors) side by side on the one GPU, K in 1 4 8 16 (throughput.py):
#    what --runs_per_gpu K buys;
# 3. the JAX chains (ReBRAC, FQL, 3 actors), one run; ReBRAC also with 8 seeds vmapped in it
#    (pogo_multi_jax --seeds): updates/s per seed and summed, against one seed.
# Each step has its own time limit (together 480 s), so one slow step cannot eat the others'.
# DEVICE=cpu QUICK=1 bash benchmarks/device_check.sh: the same steps, tiny, to try the script.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
export MUJOCO_GL=egl PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT_DIR="${OUT:-/tmp/device_check}"
mkdir -p "$OUT_DIR"
step() {  # step <seconds> <name> <command...>: run it, keep its output, never stop the check
  local limit="$1" name="$2"; shift 2
  echo "## $name ($(date -u +%FT%TZ), limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.txt" | grep -v '^\s*$' | grep -E '^\||^[a-z]' \
    || echo "(step $name ended without its table: see $OUT_DIR/$name.txt)"
}
DEVICE="${DEVICE:-cuda}"
PY="${PYTHON:-python3}"
if [ "${QUICK:-0}" = 1 ]; then n=20; runs="1 2"; else n=1; runs="1 4 8 16"; fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
"$PY" -c "import torch, jax; print('torch', torch.__version__, 'jax', jax.__version__, jax.devices())"
step 140 one_run "$PY" benchmarks/chain_overhead.py --device "$DEVICE" --algorithms iql td3_bc \
  --actors 1 3 5 --steps $((200 / n)) --repeats 2 --warmup $((50 / n)) --n_episodes 2
step 165 side_by_side "$PY" benchmarks/throughput.py --device "$DEVICE" --algorithm iql \
  --actors 3 --runs $runs --steps $((600 / n)) --warmup $((100 / n))
step 105 rebrac "$PY" benchmarks/throughput.py --device "$DEVICE" --algorithm rebrac \
  --actors 3 --runs 1 --seeds 1 8 --steps $((3000 / n)) --warmup $((300 / n))
step 70 fql "$PY" benchmarks/throughput.py --device "$DEVICE" --algorithm fql \
  --actors 3 --runs 1 --steps $((5000 / n)) --warmup $((500 / n))
