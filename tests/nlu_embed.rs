//! Both embedding backends against reference vectors from an independent float64
//! implementation (tests/data/make_reference_embeddings.py).

use opsbot::nlu::embed::{Backend, Embedder, EncoderEmbedder, Precision};

/// The built-in encoder, on one thread and on two (the work is split differently). Its portable
/// kernel is checked against the AVX2 one by a unit test in the encoder.
#[test]
fn the_builtin_encoder_matches_the_reference() {
    let model = crate::common::repo().join("models/all-MiniLM-L6-v2");
    for threads in [1, 2] {
        let e = EncoderEmbedder::load(&model, threads).unwrap();
        matches_reference(&e, true, 1e-4);
    }
}

/// The built-in encoder with its linear layers in bfloat16, where the processor has AVX-512 BF16
/// (the default there). bfloat16 keeps 8 significant bits, so each weight and layer input is off
/// by at most 1 part in 512; the sums stay float32 and the rounding errors of hundreds of terms
/// largely cancel. Measured: at most 1.2e-3 per component (a component of these unit vectors is
/// typically 0.05) and cosine at least 0.99997 to the reference. The bounds (3e-3, cosine 0.9999)
/// leave room for other processors' summation order and nothing for a real fault: a wrong
/// weight, a lost row or a mis-paired input moves vectors by 0.01 to 1. What the rounding does to
/// decisions is measured by `opsbot eval` (README "Speed": every held-out figure unchanged).
#[test]
fn the_builtin_encoder_in_bfloat16_matches_the_reference() {
    let model = crate::common::repo().join("models/all-MiniLM-L6-v2");
    if !Precision::Bf16.available() {
        eprintln!("skipped: this processor has no AVX-512 BF16");
        return;
    }
    for threads in [1, 2] {
        let e = EncoderEmbedder::load_with(&model, threads, Precision::Bf16).unwrap();
        assert!(e.model_id().starts_with("bf16-"), "its caches are its own");
        matches_reference(&e, true, 3e-3);
    }
}

#[test]
fn the_builtin_encoder_takes_the_longest_input_and_refuses_nothing_shorter() {
    let model = crate::common::repo().join("models/all-MiniLM-L6-v2");
    let e = EncoderEmbedder::load(&model, 2).unwrap();
    let long = "restart the payments workers in production please ".repeat(60);
    let both = e.embed(&[long.as_str(), "ok"]).unwrap();
    let alone = e.embed(&[long.as_str()]).unwrap();
    let max = both[0]
        .iter()
        .zip(&alone[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-5, "a long text in a batch differs by {max}");
    let norm: f32 = both[1].iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
}

#[test]
fn a_damaged_model_file_is_named_in_the_error() {
    let model = crate::common::repo().join("models/all-MiniLM-L6-v2");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(f), dir.path().join(f)).unwrap();
    }
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let err = EncoderEmbedder::load(dir.path(), 1)
        .err()
        .expect("a cut file must not load");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

/// The ONNX Runtime backend, where its library is installed (`.ci/run` installs it and sets
/// OPSBOT_REQUIRE_ONNX=1, so there a missing library fails the test instead of skipping it).
#[test]
fn the_onnx_backend_matches_the_reference_too() {
    let model = crate::common::repo().join("models/all-MiniLM-L6-v2");
    let required = std::env::var_os("OPSBOT_REQUIRE_ONNX").is_some();
    let runtime = std::env::var_os("ORT_DYLIB_PATH");
    if runtime.is_none() || !model.join("model.onnx").exists() {
        assert!(
            !required,
            "OPSBOT_REQUIRE_ONNX is set but ORT_DYLIB_PATH or model.onnx is missing"
        );
        eprintln!("skipped: no ONNX Runtime (set ORT_DYLIB_PATH, run models/make_onnx.py)");
        return;
    }
    let backend = Backend::Onnx {
        runtime: runtime.unwrap().into(),
    };
    let e = opsbot::nlu::embed::load(&model, &backend, 2).unwrap();
    matches_reference(&e, false, 1e-4);
}

/// The rust-bert backend on libtorch, in a build with `--features rust-bert` (`.ci/run` makes
/// one and runs this test).
#[cfg(feature = "rust-bert")]
#[test]
fn the_rust_bert_backend_matches_the_reference_too() {
    let model = crate::common::repo().join("models/all-MiniLM-L6-v2");
    for threads in [1, 2] {
        let e = opsbot::nlu::embed::load(&model, &Backend::RustBert, threads).unwrap();
        matches_reference(&e, true, 1e-4);
    }
}

fn matches_reference(e: &dyn Embedder, same_file: bool, tolerance: f32) {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::common::repo().join("tests/data/reference_embeddings.json"),
        )
        .unwrap(),
    )
    .unwrap();
    if same_file {
        assert_eq!(
            reference["sha256"].as_str().unwrap(),
            e.model_id().rsplit('-').next().unwrap(),
            "the reference was made from other weights"
        );
    }
    let items = reference["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    // one at a time (no padding) and as one padded batch: both must match
    let batch = e.embed(&texts).unwrap();
    for (i, item) in items.iter().enumerate() {
        let want: Vec<f32> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let single = e.embed(&[texts[i]]).unwrap().remove(0);
        for got in [&single, &batch[i]] {
            assert_eq!(got.len(), 384);
            let max = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let cos = opsbot::nlu::embed::dot(got, &want);
            assert!(
                max < tolerance && cos > 0.9999,
                "{:?}: max abs difference {max}, cosine {cos}",
                texts[i]
            );
        }
    }
    let cos = |a: &str, b: &str| {
        let v = e.embed(&[a, b]).unwrap();
        opsbot::nlu::embed::dot(&v[0], &v[1])
    };
    assert!((cos("restart the web server", "please reboot nginx") - 0.4656).abs() < 1e-3);
    assert!((cos("restart the web server", "what's the weather like") + 0.0496).abs() < 1e-3);
}

#[test]
fn the_cache_is_keyed_by_model_and_text_and_survives_restarts() {
    use opsbot::nlu::embed::Cached;
    let model = crate::common::repo().join("models/all-MiniLM-L6-v2");
    let dir = tempfile::tempdir().unwrap();
    let texts = vec![
        "deploy api to prod".to_string(),
        "who is on call".to_string(),
    ];
    let first = Cached::new(EncoderEmbedder::load(&model, 1).unwrap(), Some(dir.path()));
    let a = first.embed_many(&texts, 8).unwrap();
    drop(first);
    let second = Cached::new(EncoderEmbedder::load(&model, 1).unwrap(), Some(dir.path()));
    assert_eq!(second.cached_len(), 2);
    assert_eq!(second.embed_many(&texts, 8).unwrap(), a);
    // a damaged cache file is dropped, not trusted
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() - 7);
    std::fs::write(&file, bytes).unwrap();
    let third = Cached::new(EncoderEmbedder::load(&model, 1).unwrap(), Some(dir.path()));
    assert_eq!(third.cached_len(), 0);
    assert_eq!(third.embed_many(&texts, 8).unwrap(), a);
}
