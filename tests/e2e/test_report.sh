#!/usr/bin/env bash
# report.html of `lethe report`: self-contained, every value printed as %.4g with the best of each
# row marked, the charts drawn (checked in headless Chromium: the PDF's text holds the numbers of
# the bar labels, the screenshot is not blank), and bad eval.json files refused without touching
# an existing report.
# usage: test_report.sh LETHE WORKDIR   (needs chromium and pdftotext: tools/setup.sh)
set -euo pipefail
lethe="$1"; work="$2"
fixtures="$(cd "$(dirname "$0")/fixtures" && pwd)"
rm -rf "$work"; mkdir -p "$work"; work="$(cd "$work" && pwd)"
py=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v chromium >/dev/null ||
  fail "chromium is not installed: this test renders report.html in headless Chromium (tools/setup.sh installs it)"
command -v pdftotext >/dev/null ||
  fail "pdftotext is not installed (poppler-utils; tools/setup.sh installs it)"

# Headless Chromium with a throw-away profile; its console noise (D-Bus) goes to a log.
chrome() {
  timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
    --user-data-dir="$work/chromium-profile" "$@" >>"$work/chromium.log" 2>&1 ||
    fail "chromium $* failed: $(tail -5 "$work/chromium.log")"
}
render_pdf() { # HTML PDF TXT
  rm -f "$2"
  chrome --no-pdf-header-footer --print-to-pdf="$2" "file://$1"
  [ -s "$2" ] || fail "chromium wrote no PDF for $1"
  pdftotext "$2" "$3"
}

run="$work/run"; mkdir -p "$run"
cp "$fixtures/eval_sample.json" "$fixtures/metrics_sample.jsonl" "$run/"

# ---- the sample: default output beside eval.json -------------------------------------------
out=$("$lethe" report "$run/eval_sample.json")
html="$run/report.html"
[ "$out" = "$html" ] || fail "lethe report printed '$out', expected '$html'"
[ -s "$html" ] || fail "no $html"
echo "ok: lethe report wrote $(wc -c <"$html") bytes"

# self-contained: nothing fetched, nothing run
grep -qiE 'https?://' "$html" && fail "report.html names a URL: $(grep -oiE 'https?://[^" ]*' "$html" | head -3)"
grep -qi '<script' "$html" && fail "report.html has a <script> element"
grep -qiE '(src|href)=' "$html" && fail "report.html refers to another file: $(grep -oiE '(src|href)=[^ >]*' "$html" | head -3)"
grep -qiE 'url\(|@import' "$html" && fail "report.html's CSS loads something"
echo "ok: self-contained (no URL, script, src=, href=, url(), @import)"

# the page against the fixture: chart count, %.4g values, best cells, escaping, notes
check_page() { # HTML EVAL.json
  $py - "$1" "$2" <<'EOF'
import html, json, os, re, sys
page_path, eval_path = sys.argv[1], sys.argv[2]
page = open(page_path, encoding="utf-8").read()
ev = json.load(open(eval_path, encoding="utf-8"))
def die(msg): sys.exit("FAIL: " + msg)
models = [m["name"] for m in ev["models"]]
metrics = ev["metrics"]
values = ev.get("values") or {}

# one <svg> per chart: key-metric bars per benchmark, trade-offs, series, training curves
bench_with_keys = {m["benchmark"] for m in metrics if m.get("key_metric")}
n_keys = sum(1 for m in metrics if m.get("key_metric"))
fields = ["loss", "forget_loss", "retain_loss", "forget_nll", "retain_nll", "grad_norm", "lr"]
present = set()
for m in ev["models"]:
    p = m.get("metrics_jsonl")
    if not isinstance(p, str): continue
    try:
        recs = [json.loads(l) for l in open(os.path.join(os.path.dirname(eval_path), p)) if l.strip()]
    except (OSError, ValueError):
        continue
    present |= {f for r in recs for f in fields if isinstance(r.get(f), (int, float)) and "step" in r}
expected = len(bench_with_keys) + len(ev.get("tradeoffs") or []) + (n_keys if ev.get("series") else 0) + len(present)
got = page.count("<svg")
if got != expected: die(f"{got} <svg> elements, expected {expected}")

def fmt(v): return "%.4g" % v
def esc(text): return html.escape(text, quote=True).replace("&#x27;", "&#39;")  # as the report
def val(model, key):
    v = (values.get(model) or {}).get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

# every non-null value as a table cell in %.4g, and the best cells per "better"
rows = {html.unescape(k): body for k, body in re.findall(r'<tr data-key="([^"]*)">(.*?)</tr>', page, re.S)}
gold = next((m["name"] for m in ev["models"] if m.get("role") == "gold"), None)
n_values = 0
for mt in metrics:
    key = mt["key"]
    if key not in rows: die(f"no table row for {key}")
    row = rows[key]
    for name in models:
        v = val(name, key)
        if v is None: continue
        n_values += 1
        cell = re.search(r'<td class="num[^"]*" data-model="%s">([^<]*)</td>' % re.escape(esc(name)), row)
        if not cell or cell.group(1) != fmt(v):
            die(f"{key} of {name}: expected a cell '{fmt(v)}', row is {row[:300]}")
    better = mt.get("better", "none")
    score = {}
    for name in models:
        v = val(name, key)
        if v is None: continue
        if better == "higher": score[name] = v
        elif better == "lower": score[name] = -v
        elif better == "zero": score[name] = -abs(v)
        elif better == "gold" and gold and name != gold and val(gold, key) is not None:
            score[name] = -abs(v - val(gold, key))
    want = {n for n, s in score.items() if s == max(score.values())} if len(score) >= 2 else set()
    got_best = {html.unescape(x) for x in re.findall(r'<td class="num best" data-model="([^"]*)">', row)}
    if got_best != want: die(f"{key} ({better}): best cells {sorted(got_best)}, expected {sorted(want)}")
for k, v in (ev.get("throughput") or {}).items():
    items = v.items() if isinstance(v, dict) else [(None, v)]
    for sub, x in items:
        if isinstance(x, (int, float)) and ">%s<" % fmt(x) not in page:
            die(f"throughput {k} {sub}: '{fmt(x)}' not on the page")

# user text is escaped: no raw tag from the notes, names or title survives
for text in [ev.get("title", "")] + models + (ev.get("notes") or []):
    if "<" in text and text in page: die(f"unescaped text on the page: {text}")
    if esc(text) not in page: die(f"text missing from the page: {text}")
print(f"ok: {got} charts, {n_values} values in %.4g, best cells and escaping of {os.path.basename(page_path)}")
EOF
}
check_page "$html" "$run/eval_sample.json"
grep -q "no-such-run/metrics.jsonl: No such file" "$html" ||
  fail "no note for the missing metrics file of simnpo"
grep -q 'drawn at the log axis floor' "$html" || fail "no note for the 0 on the log axis"
echo "ok: notes for the missing metrics file and the value 0 on a log axis"

# ---- headless Chromium: the PDF's text, the bar labels alone, a screenshot -----------------
render_pdf "$html" "$run/report.pdf" "$run/report.txt"
# the same page without its tables: what is left of the numbers was drawn by the SVG charts
$py - "$html" "$run/charts.html" <<'EOF'
import re, sys
page = open(sys.argv[1], encoding="utf-8").read()
open(sys.argv[2], "w", encoding="utf-8").write(re.sub(r"<table.*?</table>", "", page, flags=re.S))
EOF
render_pdf "$run/charts.html" "$run/charts.pdf" "$run/charts.txt"
$py - "$run/eval_sample.json" "$run/report.txt" "$run/charts.txt" <<'EOF'
import json, sys
ev = json.load(open(sys.argv[1], encoding="utf-8"))
full = open(sys.argv[2], encoding="utf-8").read()
charts = open(sys.argv[3], encoding="utf-8").read()
def die(msg): sys.exit("FAIL: " + msg)
def fmt(v): return "%.4g" % v
full_words, chart_words = set(full.split()), set(charts.split())
if " ".join(ev["title"].split()) not in " ".join(full.split()): die("the title is not in the PDF text")
for m in ev["models"]:
    if " ".join(m["name"].split()) not in " ".join(charts.split()):
        die(f"model {m['name']} is not in the charts' text (legend)")
n_full = n_bars = 0
for mt in ev["metrics"]:
    for m in ev["models"]:
        v = (ev["values"].get(m["name"]) or {}).get(mt["key"])
        if not isinstance(v, (int, float)): continue
        if fmt(v) not in full_words: die(f"{mt['key']} of {m['name']}: '{fmt(v)}' not in the PDF text")
        n_full += 1
        if mt.get("key_metric"):
            if fmt(v) not in chart_words:
                die(f"bar label '{fmt(v)}' ({mt['key']} of {m['name']}) not in the text of the charts")
            n_bars += 1
print(f"ok: Chromium PDF has the title, the model names, {n_full} values; charts alone show {n_bars} bar labels")
EOF
chrome --window-size=1280,4000 --screenshot="$run/report.png" "file://$html"
[ -s "$run/report.png" ] || fail "chromium wrote no screenshot"
# The screenshot decoded with zlib + struct (no imaging library): not blank, and the bars are
# there in the model colours.
$py - "$run/report.png" <<'EOF'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
def die(msg): sys.exit("FAIL: " + msg)
if data[:8] != b"\x89PNG\r\n\x1a\n": die("the screenshot is not a PNG")
pos, idat = 8, b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    pos += 12 + n
    if kind == b"IHDR": w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT": idat += body
if depth != 8 or ctype not in (2, 6) or interlace: die(f"unexpected PNG layout {depth} {ctype} {interlace}")
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, i = bytearray(stride), 0
white = 0
colours = {}
palette = {(0x4e, 0x79, 0xa7): "target", (0xf2, 0x8e, 0x2b): "npo", (0x59, 0xa1, 0x4f): "simnpo", (0xe1, 0x57, 0x59): "gold"}
for y in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    if f == 1:
        for x in range(bpp, stride): line[x] = (line[x] + line[x - bpp]) & 255
    elif f == 2:
        line = bytearray((a + b) & 255 for a, b in zip(line, prev))
    elif f == 3:
        for x in range(stride): line[x] = (line[x] + ((line[x - bpp] if x >= bpp else 0) + prev[x]) // 2) & 255
    elif f == 4:
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    prev = line
    px = bytes(line)
    white += sum(1 for x in range(0, stride, bpp) if px[x] > 245 and px[x + 1] > 245 and px[x + 2] > 245)
    for rgb, name in palette.items():
        colours[name] = colours.get(name, 0) + px.count(bytes(rgb) if bpp == 3 else bytes(rgb) + b"\xff") 
inked = 1 - white / (w * h)
if inked < 0.02: die(f"the screenshot is almost blank ({inked:.2%} non-white)")
missing = [n for n, c in colours.items() if c < 500]
if missing: die(f"no bars in the colours of {missing} in the screenshot ({colours})")
print(f"ok: screenshot {w}x{h}, {inked:.1%} non-white, model colours {colours}")
EOF

# ---- a series, an unreadable metrics file -------------------------------------------------
printf 'step 1 loss 3\n' >"$run/bad_metrics.jsonl"
$py - "$run/eval_sample.json" "$run/eval_series.json" <<'EOF'
import json, sys
ev = json.load(open(sys.argv[1], encoding="utf-8"))
ev["series"] = True
ev["title"] = "Scalability: forget 1%, 5%, 10%"
ev["models"][3]["metrics_jsonl"] = "bad_metrics.jsonl"
json.dump(ev, open(sys.argv[2], "w", encoding="utf-8"), indent=1)
EOF
"$lethe" report "$run/eval_series.json" --out "$run/series.html" >/dev/null
check_page "$run/series.html" "$run/eval_series.json"
[ "$(grep -o 'along the series' "$run/series.html" | wc -l)" -ge 4 ] || fail "no series charts"
grep -q 'bad_metrics.jsonl: line 1' "$run/series.html" || fail "no note for the unreadable bad_metrics.jsonl"
render_pdf "$run/series.html" "$run/series.pdf" "$run/series.txt"
grep -q 'along the series' "$run/series.txt" || fail "Chromium shows no series chart"
echo "ok: series charts and the note for an unreadable metrics file"

# ---- bad input: a clear message naming the file and field, the existing report kept --------
sentinel="$work/existing-report.html"
expect_fail() { # NAME PATTERN ARGS...
  local name="$1" pattern="$2"; shift 2
  head -c 4096 /dev/urandom >"$sentinel"; cp "$sentinel" "$work/sentinel.copy"
  set +e; "$lethe" report "$@" --out "$sentinel" >"$work/$name.out" 2>"$work/$name.err"; local rc=$?; set -e
  [ $rc -ne 0 ] || fail "$name: exit status 0"
  grep -qE "$pattern" "$work/$name.err" || fail "$name: message does not match /$pattern/: $(cat "$work/$name.err")"
  cmp -s "$sentinel" "$work/sentinel.copy" || fail "$name: the existing report was modified"
  ! ls "$work" | grep -q '\.tmp-' || fail "$name: a temporary file was left behind"
  echo "ok: $name -> $(head -c 200 "$work/$name.err")"
}
printf '{"format": "lethe-eval/1", "models": [' >"$work/truncated.json"
expect_fail not_json "truncated.json: line 1" "$work/truncated.json"
printf 'title: not json\n' >"$work/yaml.json"
expect_fail yaml_not_json "yaml.json: line 1, column 1" "$work/yaml.json"
printf '{"models": [], "metrics": []}' >"$work/noformat.json"
expect_fail no_format 'noformat.json: "format": missing' "$work/noformat.json"
printf '{"format": "lethe-eval/2"}' >"$work/format2.json"
expect_fail other_format 'format2.json: "format": "lethe-eval/2" is not "lethe-eval/1"' "$work/format2.json"
$py -c "
import json, sys
ev = json.load(open(sys.argv[1])); del ev['models'][1]['name']
json.dump(ev, open(sys.argv[2], 'w'))" "$run/eval_sample.json" "$work/noname.json"
expect_fail model_without_name 'noname.json: models\[1\]\."name": missing' "$work/noname.json"
$py -c "
import json, sys
ev = json.load(open(sys.argv[1])); ev['metrics'][2]['better'] = 'bigger'
json.dump(ev, open(sys.argv[2], 'w'))" "$run/eval_sample.json" "$work/better.json"
expect_fail bad_better 'better.json: metrics\[2\]\."better": "bigger" is not one of' "$work/better.json"
$py -c "
import json, sys
ev = json.load(open(sys.argv[1])); ev['values']['npo']['tofu.model_utility'] = 'high'
json.dump(ev, open(sys.argv[2], 'w'))" "$run/eval_sample.json" "$work/strvalue.json"
expect_fail string_value 'strvalue.json: "values"\."npo"\."tofu.model_utility": expected a number or null' "$work/strvalue.json"
expect_fail missing_file "nowhere.json: No such file" "$work/nowhere.json"
set +e; "$lethe" report "$run/eval_sample.json" --out "$work/no/such/dir/r.html" 2>"$work/nodir.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "no/such/dir/r.html" "$work/nodir.err" || fail "unwritable --out: rc $rc, $(cat "$work/nodir.err")"
echo "ok: unwritable --out -> $(cat "$work/nodir.err")"
echo "PASS"
