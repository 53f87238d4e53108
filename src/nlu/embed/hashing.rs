//! A deterministic embedder that needs no model: words and word pairs hashed into a fixed number
//! of dimensions, L2-normalised. It understands nothing a transformer does (no synonyms, no
//! paraphrase), but it is instant and the same everywhere, so the core's behaviour (dialogs,
//! policy, actions, audit) can be tested in milliseconds, and a team can check a catalogue where
//! the model is not installed. `[nlu] backend = "hashing"`.

use super::{Embedder, Error};
use sha2::{Digest, Sha256};

pub struct HashingEmbedder {
    dim: usize,
}

impl HashingEmbedder {
    pub fn new(dim: usize) -> Self {
        HashingEmbedder { dim: dim.max(8) }
    }

    fn slot(&self, feature: &str) -> (usize, f32) {
        let h = Sha256::digest(feature.as_bytes());
        let n = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
        let sign = if h[8] & 1 == 0 { 1.0 } else { -1.0 };
        ((n % self.dim as u64) as usize, sign)
    }

    fn one(&self, text: &str) -> Vec<f32> {
        let words = crate::nlu::fuzzy::words(text);
        let mut v = vec![0f32; self.dim];
        for w in &words {
            let (i, s) = self.slot(w);
            v[i] += s;
        }
        for pair in words.windows(2) {
            let (i, s) = self.slot(&format!("{} {}", pair[0], pair[1]));
            v[i] += 0.5 * s;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

impl Embedder for HashingEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        Ok(texts.iter().map(|t| self.one(t)).collect())
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn model_id(&self) -> &str {
        "hashing-v1"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_vector_and_unit_length() {
        let e = HashingEmbedder::new(384);
        let v = e
            .embed(&["restart api in prod", "restart api in prod", ""])
            .unwrap();
        assert_eq!(v[0], v[1]);
        let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(v[2].iter().all(|x| *x == 0.0));
        let near = crate::nlu::embed::dot(&v[0], &e.one("please restart api in prod"));
        let far = crate::nlu::embed::dot(&v[0], &e.one("what a lovely day"));
        assert!(near > far);
    }
}
