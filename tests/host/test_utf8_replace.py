# Decoded generations with a character cut by byte-fallback tokens: utf8_replace_invalid must
# replace exactly as Python's bytes.decode("utf-8", errors="replace") (one U+FFFD per maximal
# ill-formed subpart). Random byte strings biased towards UTF-8 lead and continuation bytes
# (no NUL: the result is a C string).
# Run with /usr/bin/python3 (Debian's): test_utf8_replace.py DRIVER
import random
import subprocess
import sys

rng = random.Random(5)
interesting = [0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
               0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF]
cases = [b"", b"plain ascii", "héllo wörld ✓ 😀".encode(), b"\xe2\x82A", b"\xf0\x9f\x98",
         b"\xed\xa0\x80", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xc0\xaf"]
for _ in range(3000):
    n = rng.randint(1, 12)
    cases.append(bytes(rng.choice(interesting) if rng.random() < 0.8 else rng.randrange(1, 256)
                       for _ in range(n)))
inp = "".join(c.hex() + "\n" for c in cases)
out = subprocess.run([sys.argv[1]], input=inp, capture_output=True, text=True, check=True)
got = out.stdout.split("\n")[:-1]
assert len(got) == len(cases), (len(got), len(cases))
bad = 0
for c, g in zip(cases, got):
    want = c.decode("utf-8", errors="replace").encode("utf-8").hex()
    if g != want:
        bad += 1
        if bad <= 5:
            print(f"FAIL: {c.hex()}: got {g}, want {want}")
if bad:
    sys.exit(f"FAIL: {bad} of {len(cases)} byte strings replaced differently from Python")
print(f"ok: {len(cases)} byte strings replaced exactly as bytes.decode(errors='replace')")
