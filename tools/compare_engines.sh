#!/usr/bin/env bash
# opsbot's embedding engines and the Python peer, side by side in one run: ROUNDS rounds (default
# 3), each running every engine once in turn, so drift on a shared machine hits all of them
# alike. Prints each engine's medians over the rounds and its ratio to the peer.
#
# usage: tools/compare_engines.sh [THREADS]      (PYTHON: the interpreter that has torch and
#        sentence-transformers, default python3; ORT_DYLIB_PATH set adds the ONNX Runtime engine;
#        RUST_BERT=1 builds with --features rust-bert and adds that engine, README "Speed")
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-1}"
rounds="${ROUNDS:-3}"
python="${PYTHON:-python3}"
features=()
if [[ -n "${RUST_BERT:-}" ]]; then features=(--features rust-bert); fi
cargo build --quiet --release --example engines "${features[@]}"
# the built-in encoder in float32, and in bfloat16 where the processor has AVX-512 BF16
engines=(builtin-fp32)
if grep -qw avx512_bf16 /proc/cpuinfo; then engines+=(builtin-bf16); fi
if [[ -n "${ORT_DYLIB_PATH:-}" && -f models/all-MiniLM-L6-v2/model.onnx ]]; then engines+=(onnx); fi
if [[ -n "${RUST_BERT:-}" ]]; then engines+=(rust-bert); fi
out="$(mktemp)"
for ((r = 1; r <= rounds; r++)); do
    for e in "${engines[@]}"; do
        ./target/release/examples/engines "$e" --threads "$threads" >>"$out"
    done
    "$python" tools/peer_bench.py --threads "$threads" >>"$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["engine"], []).append(r)
med = {e: {k: statistics.median(x[k] for x in rs) for k in ("p50_ms", "p90_ms", "batch32_per_s", "load_ms")} for e, rs in by.items()}
peer = med.get("python-sentence-transformers")
print(f"threads {rows[0]['threads']}, medians of {len(next(iter(by.values())))} rounds")
print(f"{'engine':30} {'p50 ms':>8} {'p90 ms':>8} {'batch-32/s':>11} {'load ms':>8} {'p50 vs peer':>12} {'batch vs peer':>14}")
for e, m in med.items():
    r1 = f"{peer['p50_ms'] / m['p50_ms']:.1f}x faster" if peer else "-"
    r2 = f"{m['batch32_per_s'] / peer['batch32_per_s']:.1f}x" if peer else "-"
    print(f"{e:30} {m['p50_ms']:8.2f} {m['p90_ms']:8.2f} {m['batch32_per_s']:11.0f} {m['load_ms']:8.0f} {r1:>12} {r2:>14}")
PY
rm -f "$out"
