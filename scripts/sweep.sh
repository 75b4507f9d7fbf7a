#!/usr/bin/env bash
# Sweep POGO runs over algorithms x datasets x seeds for one environment: here, N jobs at a
# time, or on a SLURM cluster. Called by scripts/sweep_<env>.sh; usable directly:
#   scripts/sweep.sh --env hopper [--algorithms "iql td3_bc"] [--datasets "medium medium_replay"]
#                    [--seeds "0 1 2"] [--jobs N] [--threads T] [--dry-run]
#                    [--sweep_dir DIR] [--configs DIR] [launcher options] [-- extra args]
# Every run reads <configs>/<env>/<dataset>_v2_<algorithm>.yaml (--configs: default
# configs/offline/pogo_multi; configs/offline/pogo_paper: the POGO paper's protocol); extra args
# after `--` override config keys (e.g. -- --max_timesteps 100000 --no_wandb). Launcher options
# (see `python -m algorithms.launch run --help`): --launcher local|slurm, --partition,
# --time_min, --account, --qos, --cpus_per_task, --gpus_per_task, --runs_per_gpu,
# --array_parallelism, --max_requeues, --sbatch KEY=VALUE. The sweep's record and run logs go
# to --sweep_dir (default results/sweeps/<env>); the same command again continues what is
# unfinished (`python -m algorithms.launch status|resubmit DIR`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ENV_NAME=""
ALGORITHMS="iql td3_bc cql awac sac_n edac"
DATASETS="medium medium_replay medium_expert"
SEEDS="0 1 2"
JOBS=1
THREADS=""
DRY_RUN=0
PYTHON="${PYTHON:-python}"
SWEEP_DIR=""
CONFIGS="configs/offline/pogo_multi"
LAUNCH=()
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --env) ENV_NAME="$2"; shift 2 ;;
    --algorithms) ALGORITHMS="$2"; shift 2 ;;
    --datasets) DATASETS="$2"; shift 2 ;;
    --seeds) SEEDS="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --sweep_dir) SWEEP_DIR="$2"; shift 2 ;;
    --configs) CONFIGS="${2%/}"; shift 2 ;;
    --launcher|--partition|--time_min|--account|--qos|--cpus_per_task|--gpus_per_task|\
    --runs_per_gpu|--array_parallelism|--max_requeues|--sbatch) LAUNCH+=("$1" "$2"); shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "sweep: unknown option $1 (see the header of scripts/sweep.sh)" >&2; exit 2 ;;
  esac
done
[ -n "$ENV_NAME" ] || { echo "sweep: --env is required" >&2; exit 2; }
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "sweep: --jobs must be a positive integer" >&2; exit 2; }

source "$ROOT/env_common.sh"
# torch threads spin-wait: split the cores between the jobs, never oversubscribe
# (--threads: fewer, when something else runs on the machine too)
if [ -z "$THREADS" ]; then THREADS=$(( $(nproc) / JOBS )); [ "$THREADS" -ge 1 ] || THREADS=1; fi
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || { echo "sweep: --threads must be a positive integer" >&2; exit 2; }
export OMP_NUM_THREADS="$THREADS"

commands=()
for algorithm in $ALGORITHMS; do
  for dataset in $DATASETS; do
    config="$CONFIGS/$ENV_NAME/${dataset}_v2_${algorithm}.yaml"
    if [ ! -f "$config" ]; then
      echo "sweep: no config $config (algorithm $algorithm, dataset $dataset)" >&2; exit 2
    fi
    for seed in $SEEDS; do
      cmd="$PYTHON -m algorithms.offline.pogo_multi_main --config_path $config --seed $seed"
      for arg in "${EXTRA[@]+"${EXTRA[@]}"}"; do cmd+=" $(printf '%q' "$arg")"; done
      commands+=("$cmd")
    done
  done
done

if [ "$DRY_RUN" = 1 ]; then
  echo "# ${#commands[@]} runs, $JOBS at a time, OMP_NUM_THREADS=$OMP_NUM_THREADS"
  printf '%s\n' "${commands[@]}"
  exit 0
fi

# the launcher starts each run (continued from its directory: finished runs are skipped)
printf '%s\n' "${commands[@]}" | "$PYTHON" -m algorithms.launch run "${SWEEP_DIR:-results/sweeps/$ENV_NAME}" \
  --jobs "$JOBS" --threads "$THREADS" "${LAUNCH[@]+"${LAUNCH[@]}"}"
