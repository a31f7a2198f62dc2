#!/usr/bin/env bash
# Install a pinned LLVM OpenMP runtime (libomp) for macOS wheel builds, one per architecture:
#   PREFIX/x86_64/{include/omp.h,lib/libomp.dylib} and PREFIX/arm64/{...}
# cibuildwheel runs this as before-all on macOS; the overrides in pyproject.toml point
# BPCORE_LIBOMP_PREFIX (read by setup.py) at the prefix of the architecture being built, and
# delocate copies that libomp into the wheel.
#
# The pin is conda-forge's llvm-openmp 11.1.0, the oldest build for each architecture, so the
# vendored runtime loads on every macOS the wheels claim: it was built for macOS 10.9 (x86_64)
# and 11.0 (arm64), at or below the wheels' MACOSX_DEPLOYMENT_TARGET (10.13 and 12.0, set in
# pyproject.toml; 12.0 on arm64 matches SciPy's arm64 wheels). The packages are checked
# against their SHA-256; a mismatch stops the build.
set -euo pipefail

PREFIX=${1:-/tmp/bpcore-libomp}
VERSION=11.1.0
BASE="https://anaconda.org/conda-forge/llvm-openmp/${VERSION}/download"

install_one() {  # arch conda-subdir package sha256
    local arch=$1 subdir=$2 pkg=$3 sha=$4 tmp
    tmp=$(mktemp -d)
    echo "libomp: ${subdir}/${pkg} -> ${PREFIX}/${arch}"
    curl -fsSL --retry 3 -o "${tmp}/${pkg}" "${BASE}/${subdir}/${pkg}"
    echo "${sha}  ${tmp}/${pkg}" | shasum -a 256 --check
    mkdir -p "${PREFIX}/${arch}"
    tar -xjf "${tmp}/${pkg}" -C "${PREFIX}/${arch}"
    rm -rf "${tmp}"
    test -f "${PREFIX}/${arch}/include/omp.h"
    test -f "${PREFIX}/${arch}/lib/libomp.dylib"
    if command -v otool > /dev/null; then
        otool -l "${PREFIX}/${arch}/lib/libomp.dylib" \
            | grep -A4 -E 'LC_VERSION_MIN_MACOSX|LC_BUILD_VERSION' | grep -E 'version|minos' \
            | head -n 2 || true
    fi
}

install_one x86_64 osx-64 "llvm-openmp-${VERSION}-hda6cdc1_1.tar.bz2" \
    1ebfeee2af90bcedf6b39c7290244e2aec0bda01ecf81b0d8d78ed405480c21c
install_one arm64 osx-arm64 "llvm-openmp-${VERSION}-hf3c4609_1.tar.bz2" \
    29763e493e46801c416f2e75f20e9183719bde3b727d8983b1917a480b4076fe
