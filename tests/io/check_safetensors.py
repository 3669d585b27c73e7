#!/usr/bin/python3
# Oracle test of io/safetensors against the reference `safetensors` package: files it writes
# (numpy F32/F16/I64, torch BF16) read back through our reader bit-exactly, and files our writer
# writes load in safetensors.numpy / safetensors.torch bit-exactly (F16/BF16 equal to torch's RNE).
# Usage: check_safetensors.py DRIVER WORKDIR VENV   (DRIVER = test_io_safetensors; VENV: tools/interop_venv.sh)
import os
import subprocess
import sys

driver, workdir, venv = sys.argv[1], sys.argv[2], sys.argv[3]

try:
    import safetensors  # noqa: F401
except ImportError:
    # Debian's python has numpy and torch but not safetensors: run again inside the interop venv
    # (tools/interop_venv.sh: Debian's packages plus the Hugging Face ones from PyPI).
    if os.environ.get("LETHE_ST_IN_VENV"):
        sys.exit("safetensors still missing inside " + venv)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run(["bash", os.path.join(root, "tools", "interop_venv.sh"), venv],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode == 77:
        print("SKIP: pip could not install the reference packages (registry unreachable?)")
        sys.exit(77)
    if r.returncode != 0:
        sys.exit("FAIL: tools/interop_venv.sh failed")
    py = r.stdout.strip().splitlines()[-1]
    os.environ["LETHE_ST_IN_VENV"] = "1"
    os.execv(py, [py] + sys.argv)

import numpy as np

np.seterr(over="ignore")  # the f16 overflow to inf is one of the cases
from safetensors import safe_open
from safetensors.numpy import load_file as np_load, save_file as np_save

try:
    if os.environ.get("LETHE_ST_NO_TORCH"):  # exercises the numpy-only path
        raise ImportError
    import torch
    from safetensors.torch import load_file as torch_load, save_file as torch_save
except ImportError:
    torch = None
    print("note: torch not importable; the BF16 cases are skipped")

os.makedirs(workdir, exist_ok=True)
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def values(shape, seed):
    # Normal values over several scales, with signed zeros, infinities, an f32 subnormal, an f16
    # overflow, an exact bf16 tie and an f16 subnormal up front.
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape, dtype=np.int64))
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 5, n)).astype(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, 70000.0, 1.00390625, 3e-6, 65519.0],
                       dtype=np.float32)
    k = min(n, len(special))
    x[:k] = special[:k]
    return x.reshape(shape)


def dump(path):
    out = subprocess.run([driver, "dump", path], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"driver could not read {path}: {out.stderr.strip()}")
        return {}, {}
    tensors, meta = {}, {}
    for line in out.stdout.splitlines():
        head, _, vals = line.partition(" : ")
        parts = head.split(" ")
        if parts[0] == "meta":
            meta[parts[1]] = " ".join(parts[2:])
            continue
        name, dtype, ndim = parts[1], parts[2], int(parts[3])
        shape = tuple(int(d) for d in parts[4:4 + ndim])
        if line.endswith(": unsupported"):
            tensors[name] = (dtype, shape, None)
        else:
            bits = [int(v, 16) for v in line.split(" :")[1].split()]
            tensors[name] = (dtype, shape, np.array(bits, dtype=np.uint32))
    return tensors, meta


def expect_read(path, want, want_meta):
    # want: name -> (dtype string, float32 array or None when unsupported)
    got, meta = dump(path)
    if meta != want_meta:
        fail(f"{path}: metadata {meta} != {want_meta}")
    for name, (dtype, arr, unsupported) in want.items():
        if name not in got:
            fail(f"{path}: tensor {name} missing")
            continue
        gdt, gshape, gbits = got[name]
        if gdt != dtype or gshape != tuple(arr.shape):
            fail(f"{path}: {name} is {gdt}{list(gshape)}, want {dtype}{list(arr.shape)}")
        elif unsupported:
            if gbits is not None:
                fail(f"{path}: {name} ({dtype}) read as float32")
        elif gbits is None or not np.array_equal(
                gbits, arr.astype(np.float32).reshape(-1).view(np.uint32)):
            fail(f"{path}: {name} values differ from the reference")
    print(f"read {os.path.basename(path)}: {len(want)} tensors checked")


# ---- the reference writes, we read ------------------------------------------------------------
a32, s32, e32 = values((3, 5), 1), values((), 2), values((0, 4), 3)
h16 = values((2, 3, 4), 4).astype(np.float16)
ids = np.arange(-3, 5, dtype=np.int64)
p = os.path.join(workdir, "ref_numpy.safetensors")
np_save({"f32/a": a32, "f32/scalar": s32, "f32/empty": e32, "f16/h": h16, "ids": ids}, p,
        metadata={"format": "np", "note": "from numpy"})
expect_read(p, {"f32/a": ("F32", a32, False), "f32/scalar": ("F32", s32, False),
                "f32/empty": ("F32", e32, False), "f16/h": ("F16", h16.astype(np.float32), False),
                "ids": ("I64", ids, True)}, {"format": "np", "note": "from numpy"})

if torch is not None:
    b = torch.from_numpy(values((4, 7), 5)).to(torch.bfloat16)
    h = torch.from_numpy(values((9,), 6)).to(torch.float16)
    p = os.path.join(workdir, "ref_torch.safetensors")
    torch_save({"bf16/b": b, "f16/h": h, "f32/z": torch.zeros(2, 0, 3)}, p,
               metadata={"format": "pt"})
    expect_read(p, {"bf16/b": ("BF16", b.float().numpy(), False),
                    "f16/h": ("F16", h.float().numpy(), False),
                    "f32/z": ("F32", np.zeros((2, 0, 3), np.float32), False)}, {"format": "pt"})

# ---- we write, the reference reads --------------------------------------------------------------
src = {"f32/w": values((5, 6), 7), "f32/scalar": values((), 8), "f16/w": values((33,), 9),
       "f16/empty": values((3, 0), 10), "ids": ids}
if torch is not None:
    src["bf16/w"] = values((6, 11), 11)
    src["bf16/row"] = values((1, 300), 12)
pin = os.path.join(workdir, "ours_in.safetensors")
pout = os.path.join(workdir, "ours_out.safetensors")
np_save(src, pin, metadata={"source": "lethe oracle", "quote": "a \"b\" \u00e9"})
r = subprocess.run([driver, "convert", pin, pout], capture_output=True, text=True)
if r.returncode != 0:
    fail(f"driver convert failed: {r.stderr.strip()}")
else:
    with open(pout, "rb") as fh:
        hlen = int.from_bytes(fh.read(8), "little")
    if hlen % 8:
        fail(f"our header length {hlen} is not a multiple of 8")
    with safe_open(pout, framework="np") as fh:
        if fh.metadata() != {"source": "lethe oracle", "quote": "a \"b\" \u00e9"}:
            fail(f"metadata as the reference sees it: {fh.metadata()}")
    if torch is not None:
        loaded = torch_load(pout)
        want = {"f32/": torch.float32, "f16/": torch.float16, "bf16/": torch.bfloat16}
        for name, x in src.items():
            t = loaded[name]
            if name == "ids":
                ok = t.dtype == torch.int64 and torch.equal(t, torch.from_numpy(ids))
            else:
                dt = next(v for k, v in want.items() if name.startswith(k))
                ref = torch.from_numpy(x).to(dt)  # torch's own round-to-nearest-even
                bitview = torch.int32 if dt == torch.float32 else torch.int16
                ok = (t.dtype == dt and tuple(t.shape) == x.shape and
                      torch.equal(t.reshape(-1).view(bitview), ref.reshape(-1).view(bitview)))
            if not ok:
                fail(f"torch load of our {name} differs from torch's conversion")
        print(f"torch loaded our file: {len(src)} tensors checked")
    else:
        loaded = np_load(pout)
        for name, x in src.items():
            ref = x if name in ("ids",) or name.startswith("f32/") else x.astype(np.float16)
            if loaded[name].dtype != ref.dtype or not np.array_equal(
                    loaded[name].reshape(-1).view(np.uint8), ref.reshape(-1).view(np.uint8)):
                fail(f"numpy load of our {name} differs")
        print(f"numpy loaded our file: {len(src)} tensors checked")

# ---- our sharded layout, as the reference and transformers' index format see it ---------------
import json  # noqa: E402

r = subprocess.run([driver, "sharded_writer", workdir], capture_output=True, text=True)
if r.returncode != 0:
    fail(f"driver sharded_writer failed: {r.stdout}{r.stderr}")
else:
    sdir = os.path.join(workdir, "sharded_writer", "three")
    with open(os.path.join(sdir, "model.safetensors.index.json")) as fh:
        index = json.load(fh)
    total = 0
    for name, shard in index["weight_map"].items():
        x = np_load(os.path.join(sdir, shard))[name]
        total += x.nbytes
    if total != index["metadata"]["total_size"]:
        fail(f"index total_size {index['metadata']['total_size']} != {total}")
    print(f"sharded: {len(index['weight_map'])} tensors found in their shards")

if failures:
    sys.exit(f"{len(failures)} failure(s)")
print("safetensors oracle: ok")
