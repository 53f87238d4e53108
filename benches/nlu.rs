//! Criterion benchmarks of the parser: strict path, fuzzy path, full classification of a short and
//! a long message, batch embedding throughput, and start-up (catalogue + training, cold and warm
//! cache). Run with `cargo bench --bench nlu`; figures for this machine are in README.md.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opsbot::catalog::load_dir;
use opsbot::config::Config;
use opsbot::nlu::embed::{Backend, Embedder};
use opsbot::nlu::{training, Model, Nlu};
use std::path::PathBuf;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn settings(cache: Option<PathBuf>) -> opsbot::nlu::Settings {
    let config = Config::from_file(&repo().join("opsbot.toml")).unwrap();
    let mut s = config.nlu.unwrap();
    s.cache_dir = cache;
    s
}

fn bench(c: &mut Criterion) {
    let catalog = load_dir(&repo().join("intents")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let s = settings(Some(cache.path().to_path_buf()));
    let model = opsbot::app::train(&catalog, &s).unwrap();
    let nlu = Nlu::with_model("!", model);

    let mut g = c.benchmark_group("parse");
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("strict", |b| {
        b.iter(|| nlu.analyze(&catalog, black_box("!deploy api staging 2.4.1")))
    });
    let vocab = &nlu.model().unwrap().vocab;
    g.bench_function("fuzzy_correct", |b| {
        b.iter(|| vocab.correct_text(black_box("restrat the wrokers in prdo plaese")))
    });
    g.bench_function("classify_short", |b| {
        b.iter(|| nlu.analyze(&catalog, black_box("restart api in prod")))
    });
    let long = "hey team, sorry to bother everyone this late, but the payments service in production has been throwing timeouts for the last half hour and customers are complaining, could somebody please roll it back to the previous version before it gets worse";
    g.bench_function("classify_long", |b| {
        b.iter(|| nlu.analyze(&catalog, black_box(long)))
    });
    g.finish();

    // every engine built into this binary, side by side in one run: one short message, and a
    // batch of 32 training examples (sentences per second)
    let batch: Vec<String> = catalog
        .intents
        .iter()
        .flat_map(|i| i.examples.iter().take(3).cloned())
        .take(32)
        .collect();
    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
    use opsbot::nlu::embed::Precision;
    let mut engines = vec![(
        "builtin_fp32",
        Backend::Builtin {
            precision: Precision::F32,
        },
    )];
    if Precision::Bf16.available() {
        engines.push((
            "builtin_bf16",
            Backend::Builtin {
                precision: Precision::Bf16,
            },
        ));
    }
    // ONNX Runtime, when its library is installed (ORT_DYLIB_PATH) and model.onnx built
    if let (Some(runtime), true) = (
        std::env::var_os("ORT_DYLIB_PATH"),
        s.model_dir.join("model.onnx").exists(),
    ) {
        engines.push((
            "onnx",
            Backend::Onnx {
                runtime: runtime.into(),
            },
        ));
    }
    #[cfg(feature = "rust-bert")]
    engines.push(("rust_bert", Backend::RustBert));
    for (name, backend) in engines {
        let embedder = opsbot::nlu::embed::load(&s.model_dir, &backend, s.threads).unwrap();
        let mut g = c.benchmark_group(format!("engine_{name}"));
        g.measurement_time(Duration::from_secs(8));
        g.bench_function("embed_short", |b| {
            b.iter(|| embedder.embed(black_box(&["restart api in prod"])).unwrap())
        });
        g.throughput(Throughput::Elements(refs.len() as u64));
        g.bench_function("embed_batch_32", |b| {
            b.iter(|| embedder.embed(black_box(&refs)).unwrap())
        });
        g.finish();
    }

    let mut g = c.benchmark_group("startup");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    let negatives = training::read_negatives(&s.negatives_dir).unwrap();
    g.bench_function("warm", |b| {
        b.iter(|| {
            let catalog = load_dir(&repo().join("intents")).unwrap();
            let set = training::from_catalog(&catalog, &negatives);
            Model::train(&s, &set, true).unwrap()
        })
    });
    g.bench_function("cold", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let catalog = load_dir(&repo().join("intents")).unwrap();
                let set = training::from_catalog(&catalog, &negatives);
                Model::train(&settings(Some(dir.path().to_path_buf())), &set, true).unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
