#!/usr/bin/env bash
# clang-format every C++ and CUDA file of the project in place.
# `scripts/format.sh --check` only reports files that need formatting.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=(-i)
if [ "${1:-}" = "--check" ]; then
  mode=(--dry-run -Werror)
fi
git ls-files --cached --others --exclude-standard -- '*.h' '*.cpp' '*.cu' '*.cuh' | xargs -r clang-format "${mode[@]}"
