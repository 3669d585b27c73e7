#!/usr/bin/env bash
# Configures and builds one build tree: tools/build.sh [release|asan]. Prints the build dir.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kind="${1:-release}"
case "$kind" in
  release) dir="$root/build";      flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan)    dir="$root/build-asan"; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLETHE_SANITIZE=ON
                                         -DLETHE_INTEROP_DIR="$root/build") ;;
  *) echo "usage: tools/build.sh [release|asan]" >&2; exit 2 ;;
esac
cmake -S "$root" -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)" >&2
echo "$dir"
