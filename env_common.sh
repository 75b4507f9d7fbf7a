# Environment shared by every run script: source it, don't execute it.
#   source env_common.sh
export D4RL_SUPPRESS_IMPORT_ERROR=1   # harmless if d4rl is absent; quiets it if present
export MUJOCO_GL="${MUJOCO_GL:-egl}"  # headless rendering (only used if something renders)
export PYTHONUNBUFFERED=1             # progress lines reach logs as they happen
# torch's OpenMP threads spin-wait: runs side by side must not share cores.
# Sweep scripts set OMP_NUM_THREADS = cores / jobs; a single run may use all cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
