//! The rust-bert backend (`--features rust-bert`): the same sentence encoder, run by rust-bert's
//! BERT on libtorch (through tch), from the model's own `model.safetensors`. Tokenization is the
//! shared one; mean pooling over the attention mask and L2 normalisation are done here in libtorch,
//! as sentence-transformers does. The only module that names rust-bert and tch types.

use super::{checksum, model_err, tokenizer, Batch, Embedder, Error};
use rust_bert::bert::{BertConfig, BertEmbeddings, BertModel};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

pub struct RustBertEmbedder {
    model: BertModel<BertEmbeddings>,
    /// Owns the weights the model's layers point into.
    _weights: nn::VarStore,
    tokenizer: tokenizers::Tokenizer,
    dim: usize,
    model_id: String,
}

// SAFETY: tch marks its tensors neither Send nor Sync because a tensor could be changed from two
// threads at once. Here every tensor of the model is written once, by `load`, before the
// embedder is shared, and `embed` only reads them (under `no_grad`, in inference mode: libtorch's
// forward pass allocates its own outputs), which libtorch supports from several threads.
unsafe impl Send for RustBertEmbedder {}
unsafe impl Sync for RustBertEmbedder {}

impl RustBertEmbedder {
    /// Loads `dir/{config.json, tokenizer.json, model.safetensors}` into rust-bert's BERT on the
    /// CPU; libtorch runs each product on `threads` threads.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, Error> {
        let config_path = dir.join("config.json");
        let config: BertConfig = serde_json::from_str(
            &std::fs::read_to_string(&config_path).map_err(|e| model_err(&config_path, e))?,
        )
        .map_err(|e| model_err(&config_path, e))?;
        let weights_path = dir.join("model.safetensors");
        tch::set_num_threads(threads.max(1) as i32);
        let mut weights = nn::VarStore::new(Device::Cpu);
        // the sentence model has no pooler: mean pooling happens here
        let model =
            BertModel::<BertEmbeddings>::new_with_optional_pooler(weights.root(), &config, false);
        weights
            .load(&weights_path)
            .map_err(|e| model_err(&weights_path, e))?;
        Ok(RustBertEmbedder {
            model,
            _weights: weights,
            tokenizer: tokenizer(dir)?,
            dim: config.hidden_size as usize,
            model_id: checksum(&weights_path)?,
        })
    }
}

impl Embedder for RustBertEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let Batch { n, len, ids, mask } = Batch::encode(&self.tokenizer, texts)?;
        let shape = [n as i64, len as i64];
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let mask: Vec<i64> = mask.into_iter().map(i64::from).collect();
        let ids = Tensor::from_slice(&ids).view(shape);
        let mask = Tensor::from_slice(&mask).view(shape);
        let out = tch::no_grad(|| {
            self.model
                .forward_t(Some(&ids), Some(&mask), None, None, None, None, None, false)
        })
        .map_err(|e| Error::Inference(e.to_string()))?;
        // mean over the real tokens, then unit length
        let m = mask.to_kind(Kind::Float).unsqueeze(-1);
        let sum = (out.hidden_state * &m).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let count = m
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            .clamp_min(1e-9);
        let mean = sum / count;
        let norm = mean
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-12);
        let pooled = (mean / norm).contiguous();
        let flat =
            Vec::<f32>::try_from(pooled.view([-1])).map_err(|e| Error::Inference(e.to_string()))?;
        if flat.len() != n * self.dim {
            return Err(Error::Inference(format!(
                "unexpected output of {} values for {n} texts of dimension {}",
                flat.len(),
                self.dim
            )));
        }
        Ok(flat.chunks(self.dim).map(<[f32]>::to_vec).collect())
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }
}
