//! The ONNX Runtime backend: the same sentence encoder, run by ONNX Runtime (loaded at run time
//! from a shared library, for example the one in the Python package `onnxruntime`) from
//! `model.onnx`, which `models/make_onnx.py` builds from the model's safetensors. The graph
//! includes mean pooling and L2 normalisation. The only module that names ort types.

use super::{checksum, model_err, tokenizer, Batch, Embedder, Error};
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::Tensor;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

pub struct OnnxEmbedder {
    session: Mutex<Session>,
    tokenizer: tokenizers::Tokenizer,
    dim: usize,
    model_id: String,
}

/// One ONNX Runtime environment per process (the library can be loaded once).
fn environment(runtime: &Path) -> Result<ort::environment::Environment, Error> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        ort::init_from(runtime)
            .map_err(|e| e.to_string())?
            .with_name("opsbot")
            .build()
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|reason| Error::Model {
        path: runtime.display().to_string(),
        reason: format!("cannot load ONNX Runtime: {reason}"),
    })
}

impl OnnxEmbedder {
    /// Loads `dir/{config.json, tokenizer.json, model.onnx}` with the ONNX Runtime library at
    /// `runtime`; inference uses `threads` threads.
    pub fn load(dir: &Path, runtime: &Path, threads: usize) -> Result<Self, Error> {
        let onnx = dir.join("model.onnx");
        if !onnx.exists() {
            return Err(model_err(
                &onnx,
                "missing; build it with `python3 models/make_onnx.py` (needs numpy and onnx)",
            ));
        }
        let config_path = dir.join("config.json");
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&config_path).map_err(|e| model_err(&config_path, e))?,
        )
        .map_err(|e| model_err(&config_path, e))?;
        let dim = config["hidden_size"]
            .as_u64()
            .ok_or_else(|| model_err(&config_path, "no hidden_size"))? as usize;
        let env = environment(runtime)?;
        let session = Session::builder(&env)
            .and_then(|b| {
                b.with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(Into::into)
            })
            .and_then(|b| b.with_intra_threads(threads.max(1)).map_err(Into::into))
            .and_then(|mut b| b.commit_from_file(&onnx))
            .map_err(|e| model_err(&onnx, e))?;
        Ok(OnnxEmbedder {
            session: Mutex::new(session),
            tokenizer: tokenizer(dir)?,
            dim,
            model_id: checksum(&onnx)?,
        })
    }
}

impl Embedder for OnnxEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let Batch { n, len, ids, mask } = Batch::encode(&self.tokenizer, texts)?;
        // the graph takes int64 inputs
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let mask: Vec<i64> = mask.into_iter().map(i64::from).collect();
        let fail = |e: ort::Error| Error::Inference(e.to_string());
        let ids = Tensor::from_array(([n, len], ids)).map_err(fail)?;
        let mask = Tensor::from_array(([n, len], mask)).map_err(fail)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let out = session
            .run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])
            .map_err(fail)?;
        let (shape, data) = out["embedding"].try_extract_tensor::<f32>().map_err(fail)?;
        if shape.len() != 2 || shape[0] as usize != n || shape[1] as usize != self.dim {
            return Err(Error::Inference(format!(
                "unexpected output shape {shape:?}"
            )));
        }
        Ok(data.chunks(self.dim).map(<[f32]>::to_vec).collect())
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }
}
