#!/usr/bin/env bash
# The wheels a GPU machine's image lacks (it has torch, JAX, flax, optax, h5py, tqdm, PyYAML;
# Python 3.12, x86-64, no network), saved to .whl/ here for the device check to carry:
#   bash benchmarks/device_wheels.sh      # then: bash benchmarks/device_check.sh there
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "gymnasium>=1.0,<2" "mujoco>=3.1,<4" "geomloss>=0.2.6" "pyrallis>=0.3.1" \
  farama-notifications glfw pyopengl
du -sh .whl
