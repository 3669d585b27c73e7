#!/usr/bin/env bash
# Conversion throughput: `lethe convert --from hf` of a >= 1 GB bf16 safetensors checkpoint
# against a plain sequential read of the same bytes (dd to /dev/null) and a plain copy (cp +
# sync, the same bytes read and written), in the same run, cold (page cache dropped, when this
# user may) and warm. Prints one line per measurement; docs/perf.md records them.
# LETHE_BENCH_CONVERT_OUT=DIR puts the outputs (copy and .h5) in DIR, e.g. /dev/shm to take the
# disk's write speed out and see the converter's own cost against the read.
# Usage: bench_convert.sh LETHE [WORKDIR] [REPEATS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
lethe="$(readlink -f "$1")"
work="${2:-$root/build/bench-convert}"
repeats="${3:-3}"
mkdir -p "$work"
src="$work/hf"

# A Llama-shaped checkpoint of 1.2 GB in bf16 (D 2048, F 5632, 16 layers, V 32000): random bits
# with the exponent of numbers near 1, written by the reference safetensors package.
if [ ! -s "$src/model.safetensors" ]; then
  py="$(bash "$root/tools/interop_venv.sh")"
  "$py" - "$src" <<'PY'
import json, os, sys
import numpy as np
import torch
from safetensors.torch import save_file
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
D, F, L, V, H, KV = 2048, 5632, 16, 32000, 16, 4
hd = D // H
cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=V, hidden_size=D,
           intermediate_size=F, num_hidden_layers=L, num_attention_heads=H,
           num_key_value_heads=KV, max_position_embeddings=2048, rms_norm_eps=1e-5,
           rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
           torch_dtype="bfloat16")
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
rng = np.random.default_rng(0)
def t(*shape):
    # bf16 bits: random sign, exponent 0x78..0x7f (2^-7 .. 1), random mantissa
    n = int(np.prod(shape))
    bits = (rng.integers(0, 2, n, dtype=np.uint16) << 15) | \
           (rng.integers(0x78, 0x80, n, dtype=np.uint16) << 7) | \
           rng.integers(0, 128, n, dtype=np.uint16)
    return torch.from_numpy(bits.view(np.int16).reshape(shape)).view(torch.bfloat16)
ts = {"model.embed_tokens.weight": t(V, D), "model.norm.weight": t(D), "lm_head.weight": t(V, D)}
for l in range(L):
    p = f"model.layers.{l}."
    ts.update({p + "input_layernorm.weight": t(D), p + "post_attention_layernorm.weight": t(D),
               p + "self_attn.q_proj.weight": t(H * hd, D),
               p + "self_attn.k_proj.weight": t(KV * hd, D),
               p + "self_attn.v_proj.weight": t(KV * hd, D),
               p + "self_attn.o_proj.weight": t(D, H * hd),
               p + "mlp.gate_proj.weight": t(F, D), p + "mlp.up_proj.weight": t(F, D),
               p + "mlp.down_proj.weight": t(D, F)})
save_file(ts, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
PY
fi

bytes=$(stat -c %s "$src/model.safetensors")
mb() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; }
if drop_caches; then modes="cold warm"; else
  echo "note: cannot drop the page cache here (not root): warm measurements only"; modes="warm"; fi
echo "source: $src/model.safetensors, $bytes bytes; $(nproc) cores; repeats $repeats"
odir="${LETHE_BENCH_CONVERT_OUT:-$work}"
out="$odir/out.h5"
echo "outputs in $odir ($(df -T "$odir" | awk 'NR == 2 { print $2 }'))"
for mode in $modes; do
  for r in $(seq "$repeats"); do
    [ "$mode" = cold ] && drop_caches
    [ "$mode" = warm ] && cat "$src/model.safetensors" > /dev/null
    t0=$(now); dd if="$src/model.safetensors" of=/dev/null bs=4M status=none; t1=$(now)
    read_s=$(secs "$t0" "$t1")
    [ "$mode" = cold ] && drop_caches
    rm -f "$odir/copy"
    t0=$(now); cp "$src/model.safetensors" "$odir/copy"; sync "$odir/copy"; t1=$(now)
    cp_s=$(secs "$t0" "$t1"); rm -f "$odir/copy"
    [ "$mode" = cold ] && drop_caches
    rm -f "$out"
    t0=$(now); "$lethe" convert --from hf "$src" --out "$out" > /dev/null; t1=$(now)
    conv_s=$(secs "$t0" "$t1")
    echo "$mode run $r: dd read $(mb "$read_s") MB/s ($read_s s), cp+sync $(mb "$cp_s") MB/s" \
         "($cp_s s), lethe convert $(mb "$conv_s") MB/s ($conv_s s):" \
         "$(awk -v a="$read_s" -v c="$conv_s" 'BEGIN { printf "%.2f", a / c }') of dd," \
         "$(awk -v a="$cp_s" -v c="$conv_s" 'BEGIN { printf "%.2f", a / c }') of cp"
  done
done
rm -f "$out"
