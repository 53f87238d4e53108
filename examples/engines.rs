//! Times opsbot's embedding engines on the messages the Python peer uses (tools/peer_bench.py):
//! the first 200 texts of tests/data/ops_eval.jsonl, 20 warm-up calls, then each message embedded
//! on its own (p50 and p90 in ms), then three passes of batches of 32 sorted by length
//! (sentences per second). Prints one JSON object per engine. tools/compare_engines.sh runs it
//! and the peer in one run and prints the ratios.
//!
//! cargo run --release --example engines -- [builtin|builtin-fp32|builtin-bf16|onnx|rust-bert|hashing ...]
//!     [--threads N]          (rust-bert: in a build with --features rust-bert)

use opsbot::nlu::embed::{load, Backend, Embedder, Precision};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .map(|t| t.parse().expect("--threads N"))
        .unwrap_or(1);
    let names: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--threads"))
        .map(|(_, a)| a.as_str())
        .collect();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = repo.join("models/all-MiniLM-L6-v2");
    let messages: Vec<String> = std::fs::read_to_string(repo.join("tests/data/ops_eval.jsonl"))
        .expect("tests/data/ops_eval.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(200)
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            row["text"].as_str().expect("a text field").to_string()
        })
        .collect();
    for name in if names.is_empty() {
        vec!["builtin"]
    } else {
        names
    } {
        let started = Instant::now();
        let backend = match name {
            // the built-in encoder as configured by default (bf16 where the processor has it),
            // or in one precision
            "builtin" => Backend::Builtin {
                precision: Precision::fastest(),
            },
            "builtin-fp32" => Backend::Builtin {
                precision: Precision::F32,
            },
            "builtin-bf16" => Backend::Builtin {
                precision: Precision::Bf16,
            },
            #[cfg(feature = "rust-bert")]
            "rust-bert" => Backend::RustBert,
            "hashing" => Backend::Hashing,
            "onnx" => Backend::Onnx {
                runtime: std::env::var_os("ORT_DYLIB_PATH")
                    .expect("onnx needs ORT_DYLIB_PATH")
                    .into(),
            },
            other => panic!("unknown engine {other}"),
        };
        let e = load(&model, &backend, threads).expect("the model loads");
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        for m in messages.iter().take(20) {
            e.embed(&[m]).unwrap();
        }
        let mut ms: Vec<f64> = messages
            .iter()
            .map(|m| {
                let t = Instant::now();
                e.embed(&[m]).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((p * (ms.len() - 1) as f64).round()) as usize];
        let mut sorted: Vec<&str> = messages.iter().map(String::as_str).collect();
        sorted.sort_by_key(|m| m.len());
        let t = Instant::now();
        for _ in 0..3 {
            for chunk in sorted.chunks(32) {
                e.embed(chunk).unwrap();
            }
        }
        let per_s = (3 * sorted.len()) as f64 / t.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "engine": name, "threads": threads, "load_ms": load_ms,
                "p50_ms": pct(0.5), "p90_ms": pct(0.9), "batch32_per_s": per_s,
            })
        );
    }
}
