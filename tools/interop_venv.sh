#!/usr/bin/env bash
# Creates (once) the interop oracle venv: Debian's /usr/bin/python3 with --system-site-packages
# (its torch 1.13 and numpy), plus the Hugging Face reference packages from PyPI: transformers
# (4.46.3, the last line that supports torch 1.13), accelerate (GGUF loading), tokenizers,
# safetensors, gguf.
# Prints the venv's python on stdout. Exit 77 (ctest's "skipped") with a message on stderr only
# when pip cannot reach the registry. Usage: interop_venv.sh [VENV_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-${LETHE_INTEROP_VENV:-$root/build/interop-venv}}"
py="$venv/bin/python"
check="import torch, transformers, accelerate, tokenizers, safetensors, gguf"
if [ -x "$py" ] && "$py" -c "$check" 2>/dev/null; then echo "$py"; exit 0; fi
# Two ctest jobs may ask at once: one creates, the other waits for it.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ -x "$py" ] && "$py" -c "$check" 2>/dev/null; then echo "$py"; exit 0; fi
rm -rf "$venv"
/usr/bin/python3 -m venv --system-site-packages "$venv" >&2
if ! "$py" -m pip install --quiet --progress-bar off --disable-pip-version-check \
      "transformers==4.46.3" "accelerate<1.2" "tokenizers>=0.20,<0.21" "safetensors>=0.4" "gguf>=0.10" >&2; then
  echo "SKIP: pip could not install the interop oracle packages (registry unreachable?)" >&2
  rm -rf "$venv"
  exit 77
fi
"$py" -c "$check" >&2
echo "$py"
