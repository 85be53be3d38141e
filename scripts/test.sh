#!/usr/bin/env bash
# Builds Corvid (Release) in ./build and runs the whole test suite with ctest.
# GPU tests are reported as skipped on machines without a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS"
