#!/usr/bin/env bash
# POGO sweep on walker2d: algorithms x datasets x seeds (options: see scripts/sweep.sh).
#   scripts/sweep_walker2d.sh --dry-run
#   scripts/sweep_walker2d.sh --algorithms "iql td3_bc" --datasets medium --seeds "0 1 2" --jobs 2 -- --no_wandb
exec "$(dirname "${BASH_SOURCE[0]}")/sweep.sh" --env walker2d "$@"
