//! Sentence embeddings. The rest of the crate sees only the [`Embedder`] trait; this module and
//! its parts are the only ones that name tokenizers types (and the `onnx` part the only one that
//! names ort types, for the optional ONNX Runtime backend). The default engine, `encoder`, runs a
//! BERT-family sentence-transformers model (all-MiniLM-L6-v2 by default) from safetensors on the
//! CPU in plain Rust: truncation at 256 tokens, mean pooling, L2 normalisation. [`Cached`] keeps
//! embeddings on disk, keyed by the model checksum and the text, so a warm start is fast.

mod encoder;
mod hashing;
mod onnx;
#[cfg(feature = "rust-bert")]
mod rustbert;
pub use encoder::{EncoderEmbedder, Precision};
pub use hashing::HashingEmbedder;
pub use onnx::OnnxEmbedder;
#[cfg(feature = "rust-bert")]
pub use rustbert::RustBertEmbedder;

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("model file {path}: {reason}")]
    Model { path: String, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("inference: {0}")]
    Inference(String),
}

/// Turns texts into L2-normalised vectors.
pub trait Embedder: Send + Sync {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error>;
    fn dim(&self) -> usize;
    /// Identifies the weights (sha256 of the model file), for caches.
    fn model_id(&self) -> &str;
}

/// The longest input, in tokens; longer text is truncated.
pub const MAX_TOKENS: usize = 256;

/// The model's tokenizer, with the shipped padding and truncation (fixed at 128) replaced: pad
/// to the longest in a batch (no padding for one sentence), truncate at [`MAX_TOKENS`].
fn tokenizer(dir: &Path) -> Result<tokenizers::Tokenizer, Error> {
    let tok_path = dir.join("tokenizer.json");
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| model_err(&tok_path, e))?;
    tokenizer.with_padding(Some(tokenizers::PaddingParams {
        strategy: tokenizers::PaddingStrategy::BatchLongest,
        ..Default::default()
    }));
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

/// Texts tokenized as one batch, padded to the longest: `n` rows of `len` token ids and
/// attention-mask bits, row after row.
struct Batch {
    n: usize,
    len: usize,
    ids: Vec<u32>,
    mask: Vec<u32>,
}

impl Batch {
    fn encode(tokenizer: &tokenizers::Tokenizer, texts: &[&str]) -> Result<Batch, Error> {
        let enc = tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(Batch {
            n: enc.len(),
            len: enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0),
            ids: enc.iter().flat_map(|e| e.get_ids().to_vec()).collect(),
            mask: enc
                .iter()
                .flat_map(|e| e.get_attention_mask().to_vec())
                .collect(),
        })
    }
}

/// Which engine runs the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The built-in BERT encoder ([`EncoderEmbedder`]), pure Rust: the default, with its linear
    /// layers in `precision`.
    Builtin { precision: Precision },
    /// ONNX Runtime, loaded from the shared library at `runtime`; runs `model.onnx`.
    Onnx { runtime: PathBuf },
    /// rust-bert's BERT on libtorch ([`RustBertEmbedder`]); only in a build with
    /// `--features rust-bert`.
    #[cfg(feature = "rust-bert")]
    RustBert,
    /// No model: hashed words ([`HashingEmbedder`]), for fast tests and model-free checks.
    Hashing,
}

/// Loads the model in `dir` with `backend`, inference on `threads` threads.
pub fn load(dir: &Path, backend: &Backend, threads: usize) -> Result<Box<dyn Embedder>, Error> {
    Ok(match backend {
        Backend::Builtin { precision } => {
            Box::new(EncoderEmbedder::load_with(dir, threads, *precision)?)
        }
        Backend::Onnx { runtime } => Box::new(OnnxEmbedder::load(dir, runtime, threads)?),
        #[cfg(feature = "rust-bert")]
        Backend::RustBert => Box::new(RustBertEmbedder::load(dir, threads)?),
        Backend::Hashing => Box::new(HashingEmbedder::new(384)),
    })
}

impl Embedder for Box<dyn Embedder> {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        (**self).embed(texts)
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
}

fn model_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Model {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// sha256 of a model file, remembered in `<file>.sha256` next to nothing: hashing 90 MB on every
/// start would cost more than the rest of the start-up, so the digest is cached in a side file
/// keyed by the file's size and modification time.
pub fn checksum(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path).map_err(|e| model_err(path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!("{}:{}", meta.len(), mtime);
    let side = checksum_cache_path(path);
    if let Ok(s) = std::fs::read_to_string(&side) {
        if let Some((k, digest)) = s.trim().split_once(' ') {
            if k == key && digest.len() == 64 {
                return Ok(digest.to_string());
            }
        }
    }
    let mut f = std::fs::File::open(path).map_err(|e| model_err(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| model_err(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hex::encode(hasher.finalize());
    if let Some(dir) = side.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&side, format!("{key} {digest}\n"));
    Ok(digest)
}

fn checksum_cache_path(model: &Path) -> PathBuf {
    let abs = model.canonicalize().unwrap_or_else(|_| model.to_path_buf());
    let tag = hex::encode(&Sha256::digest(abs.to_string_lossy().as_bytes())[..8]);
    std::env::temp_dir().join("opsbot-model-sums").join(tag)
}

/// An on-disk cache in front of another embedder. The file holds records of
/// `[u32 text length][text][dim f32]`, appended as new texts are embedded; it is named after the
/// model checksum, so other weights never read it. A damaged tail is ignored and rewritten.
pub struct Cached<E: Embedder> {
    inner: E,
    path: Option<PathBuf>,
    map: Mutex<HashMap<String, Vec<f32>>>,
}

impl<E: Embedder> Cached<E> {
    /// `dir` = None disables the disk part (memory only).
    pub fn new(inner: E, dir: Option<&Path>) -> Self {
        let path = dir.map(|d| {
            d.join(format!(
                "embeddings-{}.bin",
                &inner.model_id()[..16.min(inner.model_id().len())]
            ))
        });
        let map = path
            .as_deref()
            .map(|p| read_cache(p, inner.dim()))
            .unwrap_or_default();
        Cached {
            inner,
            path,
            map: Mutex::new(map),
        }
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }

    pub fn cached_len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Embeds `texts` in batches of `batch`, using and filling the cache.
    pub fn embed_many(&self, texts: &[String], batch: usize) -> Result<Vec<Vec<f32>>, Error> {
        self.embed_many_with(texts, batch, &|_, _| {})
    }

    /// [`Cached::embed_many`], telling `progress(done, total)` after each batch of the texts that
    /// were not cached yet.
    pub fn embed_many_with(
        &self,
        texts: &[String],
        batch: usize,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Vec<Vec<f32>>, Error> {
        let missing: Vec<&str> = {
            let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = std::collections::HashSet::new();
            texts
                .iter()
                .map(String::as_str)
                .filter(|t| !map.contains_key(*t) && seen.insert(*t))
                .collect()
        };
        if !missing.is_empty() {
            // sort by length so batches pad little
            let mut order = missing.clone();
            order.sort_by_key(|t| t.len());
            let mut fresh = Vec::with_capacity(order.len());
            progress(0, order.len());
            for chunk in order.chunks(batch.max(1)) {
                let vecs = self.inner.embed(chunk)?;
                let done: Vec<(String, Vec<f32>)> =
                    chunk.iter().map(|t| t.to_string()).zip(vecs).collect();
                // kept batch by batch, so a first start that is stopped midway keeps its work
                if let Some(p) = &self.path {
                    if let Err(e) = append_cache(p, &done) {
                        tracing::warn!(path = %p.display(), error = %e, "could not write the embedding cache");
                    }
                }
                fresh.extend(done);
                progress(fresh.len(), order.len());
            }
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.extend(fresh);
        }
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Ok(texts.iter().map(|t| map[t.as_str()].clone()).collect())
    }
}

impl<E: Embedder> Embedder for Cached<E> {
    /// Single messages at run time skip the cache: chat text rarely repeats, and the cache must
    /// not grow with every message.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        self.inner.embed(texts)
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
}

fn read_cache(path: &Path, dim: usize) -> HashMap<String, Vec<f32>> {
    let mut map = HashMap::new();
    let Ok(bytes) = std::fs::read(path) else {
        return map;
    };
    let mut i = 0;
    let rec = |i: &mut usize| -> Option<(String, Vec<f32>)> {
        let len = u32::from_le_bytes(bytes.get(*i..*i + 4)?.try_into().ok()?) as usize;
        let text = std::str::from_utf8(bytes.get(*i + 4..*i + 4 + len)?)
            .ok()?
            .to_string();
        let start = *i + 4 + len;
        let raw = bytes.get(start..start + 4 * dim)?;
        let v = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        *i = start + 4 * dim;
        Some((text, v))
    };
    while let Some((t, v)) = rec(&mut i) {
        map.insert(t, v);
    }
    if i < bytes.len() {
        tracing::warn!(path = %path.display(), "embedding cache has a damaged tail; it will be rebuilt");
        let _ = std::fs::remove_file(path);
        map.clear();
    }
    map
}

fn append_cache(path: &Path, items: &[(String, Vec<f32>)]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut buf = Vec::new();
    for (t, v) in items {
        buf.extend_from_slice(&(t.len() as u32).to_le_bytes());
        buf.extend_from_slice(t.as_bytes());
        for x in v {
            buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&buf)
}

/// Cosine similarity of two L2-normalised vectors. Eight running sums let the compiler use SIMD
/// (a single sum would force strict left-to-right float addition).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
