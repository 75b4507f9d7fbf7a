#!/usr/bin/env bash
# POGO sweep on halfcheetah: algorithms x datasets x seeds (options: see scripts/sweep.sh).
#   scripts/sweep_halfcheetah.sh --dry-run
#   scripts/sweep_halfcheetah.sh --algorithms "iql td3_bc" --datasets medium --seeds "0 1 2" --jobs 2 -- --no_wandb
exec "$(dirname "${BASH_SOURCE[0]}")/sweep.sh" --env halfcheetah "$@"
