//! The intent classifier: trained at start-up on the catalogue's examples (placeholders filled
//! with sampled values) and on off-topic negatives. Two pieces of evidence from the embedding
//! become one score per class: a softmax head over the sentence embedding and its cues (with an
//! off-topic class), and the similarity to the nearest training example of each class. The
//! evidence from the words themselves (command words, named parameters) is added in
//! [`super::evidence`]; the caller turns the confidence and the margin to the runner-up into
//! accept / suggest / reject.

use super::embed::dot;
use super::training::TrainingSet;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::path::Path;

/// How evidence is weighed; the defaults were chosen on validation data (see README).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Share of the softmax head in the blend (the rest is nearest-example evidence).
    pub head: f32,
    /// Temperature of the nearest-example softmax.
    pub knn_temperature: f32,
    /// Log-odds boost per fuzzy command-word hit.
    pub keyword_boost: f32,
    /// Log-odds boost per typed parameter of the intent found in the message (at most two count).
    pub slot_boost: f32,
    /// Factor applied to an intent whose required target (an entity such as the service) the
    /// message does not name.
    pub missing_target: f32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            head: 1.0,
            knn_temperature: 0.05,
            keyword_boost: 0.8,
            slot_boost: 0.3,
            missing_target: 0.3,
        }
    }
}

/// Per-class scores for one message: `intents[i]` is the probability of class i, `offtopic` the
/// probability that it asks for nothing; together they sum to one.
#[derive(Debug, Clone)]
pub struct Scores {
    pub intents: Vec<f32>,
    pub offtopic: f32,
}

impl Scores {
    /// Intent indices by score, best first.
    pub fn ranked(&self) -> Vec<(usize, f32)> {
        let mut r: Vec<(usize, f32)> = self.intents.iter().copied().enumerate().collect();
        r.sort_by(|a, b| b.1.total_cmp(&a.1));
        r
    }

    /// Multiplies class `i` by `factor` and renormalises (the freed mass is shared by the rest).
    pub fn scale(&mut self, i: usize, factor: f32) {
        self.intents[i] *= factor;
        let total: f32 = self.intents.iter().sum::<f32>() + self.offtopic;
        if total > 0.0 {
            self.intents.iter_mut().for_each(|x| *x /= total);
            self.offtopic /= total;
        }
    }
}

/// Multinomial logistic regression, classes 0..k-1 the intents and k off-topic.
#[derive(Debug, Clone)]
struct Head {
    dim: usize,
    classes: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Head {
    #[inline]
    fn logits(&self, x: &[f32], out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.b[c] + dot(&self.w[c * self.dim..(c + 1) * self.dim], x);
        }
    }

    fn probs(&self, x: &[f32]) -> Vec<f32> {
        let mut z = vec![0.0; self.classes];
        self.logits(x, &mut z);
        softmax(&mut z);
        z
    }

    /// Mini-batch Adam on the weighted cross-entropy with L2, deterministic for a given input.
    /// Compiled twice: with AVX2 where the processor has it (the same arithmetic, wider), plain
    /// otherwise.
    fn train(xs: &[Vec<f32>], ys: &[usize], classes: usize, epochs: usize) -> Head {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the processor has AVX2 and FMA (checked just above).
            return unsafe { Head::train_avx2(xs, ys, classes, epochs) };
        }
        Head::train_with(xs, ys, classes, epochs)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn train_avx2(xs: &[Vec<f32>], ys: &[usize], classes: usize, epochs: usize) -> Head {
        Head::train_with(xs, ys, classes, epochs)
    }

    #[inline(always)]
    fn train_with(xs: &[Vec<f32>], ys: &[usize], classes: usize, epochs: usize) -> Head {
        let dim = xs.first().map(|x| x.len()).unwrap_or(0);
        let mut head = Head {
            dim,
            classes,
            w: vec![0.0; classes * dim],
            b: vec![0.0; classes],
        };
        if xs.is_empty() {
            return head;
        }
        // classes weighted by the square root of their rarity: a big off-topic set does not drown
        // the intents, yet keeps most of its pull
        let mut counts = vec![0usize; classes];
        ys.iter().for_each(|&y| counts[y] += 1);
        let n = xs.len() as f32;
        let cw: Vec<f32> = counts
            .iter()
            .map(|&c| {
                if c == 0 {
                    0.0
                } else {
                    (n / (classes as f32 * c as f32)).sqrt()
                }
            })
            .collect();
        let (lr, l2, b1, b2, eps) = (0.01f32, 1e-5f32, 0.9f32, 0.999f32, 1e-8f32);
        let np = head.w.len() + head.b.len();
        let (mut m, mut v) = (vec![0f32; np], vec![0f32; np]);
        let mut order: Vec<usize> = (0..xs.len()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let batch = 64;
        let mut t = 0i32;
        for _ in 0..epochs {
            for i in (1..order.len()).rev() {
                order.swap(i, rng.gen_range(0..=i));
            }
            for chunk in order.chunks(batch) {
                t += 1;
                let grad = batch_gradient(&head, xs, ys, &cw, chunk);
                let scale = 1.0 / chunk.len() as f32;
                let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                // weights (with L2) and biases (without) in two straight loops, so both vectorise
                let nw = head.w.len();
                let (gw, gb) = grad.split_at(nw);
                let (mw, mb) = m.split_at_mut(nw);
                let (vw, vb) = v.split_at_mut(nw);
                for (params, grads, m, v, decay) in [
                    (&mut head.w[..], gw, mw, vw, l2),
                    (&mut head.b[..], gb, mb, vb, 0.0),
                ] {
                    for (((param, g), m), v) in params.iter_mut().zip(grads).zip(m).zip(v) {
                        let g = g * scale + decay * *param;
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *param -= lr * (*m / bc1) / ((*v / bc2).sqrt() + eps);
                    }
                }
            }
        }
        head
    }
}

/// Gradient of the weighted loss over `idx` (weights then biases), in parts of 16 examples
/// added in order. A mini-batch is too small to share out over threads: waking them cost more
/// than the arithmetic.
#[inline(always)]
fn batch_gradient(
    head: &Head,
    xs: &[Vec<f32>],
    ys: &[usize],
    cw: &[f32],
    idx: &[usize],
) -> Vec<f32> {
    let (dim, classes) = (head.dim, head.classes);
    let mut total = vec![0f32; classes * dim + classes];
    let mut g = vec![0f32; classes * dim + classes];
    let mut p = vec![0f32; classes];
    // plain loops, no closures: everything here inlines into the AVX2 copy of `Head::train`
    for part in idx.chunks(16) {
        g.fill(0.0);
        for &i in part {
            let x = &xs[i];
            head.logits(x, &mut p);
            softmax(&mut p);
            let w = cw[ys[i]];
            for c in 0..classes {
                let d = (p[c] - if c == ys[i] { 1.0 } else { 0.0 }) * w;
                if d.abs() < 1e-7 {
                    continue;
                }
                for (r, xv) in g[c * dim..(c + 1) * dim].iter_mut().zip(x) {
                    *r += d * xv;
                }
                g[classes * dim + c] += d;
            }
        }
        for (t, v) in total.iter_mut().zip(&g) {
            *t += v;
        }
    }
    total
}

#[inline]
pub fn softmax(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in z.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    z.iter_mut().for_each(|x| *x /= sum);
}

pub struct Classifier {
    pub classes: Vec<String>,
    head: Head,
    /// Training embeddings, row-major, with their class (`classes.len()` = off-topic).
    examples: Vec<f32>,
    example_class: Vec<usize>,
    dim: usize,
    pub weights: Weights,
}

/// Epochs of head training for `n` samples: about 6,000 steps in all, within bounds.
fn epochs_for(n: usize) -> usize {
    (20000 * 64 / n.max(1)).clamp(8, 300)
}

impl Classifier {
    /// Trains on `set`; `vectors[i]` is the embedding of `set.texts[i]`. The trained head is kept
    /// in `cache_dir` (keyed by model, data and settings) so a warm start skips training.
    pub fn train(
        set: &TrainingSet,
        vectors: Vec<Vec<f32>>,
        model_id: &str,
        cache_dir: Option<&Path>,
        weights: Weights,
    ) -> Classifier {
        let k = set.classes.len();
        let ys: Vec<usize> = set.labels.iter().map(|l| l.unwrap_or(k)).collect();
        let dim = vectors.first().map(|v| v.len()).unwrap_or(0);
        let epochs = epochs_for(vectors.len());
        let key = {
            let mut h = Sha256::new();
            h.update(model_id.as_bytes());
            h.update(format!("head-v3 {epochs} {k} {dim}").as_bytes());
            h.update(super::cues::VERSION.as_bytes());
            for (t, y) in set.texts.iter().zip(&ys) {
                h.update(t.as_bytes());
                h.update(y.to_le_bytes());
            }
            hex::encode(&h.finalize()[..16])
        };
        let cache_file = cache_dir.map(|d| d.join(format!("head-{key}.bin")));
        let head = cache_file
            .as_deref()
            .and_then(|p| load_head(p, dim, k + 1))
            .unwrap_or_else(|| {
                let head = Head::train(&vectors, &ys, k + 1, epochs);
                if let Some(p) = &cache_file {
                    if let Err(e) = save_head(p, &head) {
                        tracing::warn!(path = %p.display(), error = %e, "could not cache the trained classifier");
                    }
                }
                head
            });
        Classifier {
            classes: set.classes.clone(),
            head,
            examples: vectors.concat(),
            example_class: ys,
            dim,
            weights,
        }
    }

    /// Blended class probabilities for an embedded message, before fuzzy evidence.
    pub fn scores(&self, v: &[f32]) -> Scores {
        let k = self.classes.len();
        let p_head = self.head.probs(v);
        let w = self.weights.head;
        if w >= 1.0 {
            // the nearest-example evidence has no weight: skip the scan over every example
            return Scores {
                intents: p_head[..k].to_vec(),
                offtopic: p_head[k],
            };
        }
        let mut best = vec![-1.0f32; k + 1];
        for (row, &c) in self
            .examples
            .chunks_exact(self.dim)
            .zip(&self.example_class)
        {
            let s = dot(row, v);
            if s > best[c] {
                best[c] = s;
            }
        }
        let mut p_knn: Vec<f32> = best
            .iter()
            .map(|s| s / self.weights.knn_temperature)
            .collect();
        softmax(&mut p_knn);
        let blend: Vec<f32> = p_head
            .iter()
            .zip(&p_knn)
            .map(|(h, n)| w * h + (1.0 - w) * n)
            .collect();
        Scores {
            intents: blend[..k].to_vec(),
            offtopic: blend[k],
        }
    }
}

fn save_head(path: &Path, head: &Head) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut buf = Vec::with_capacity(4 * (head.w.len() + head.b.len()) + 8);
    buf.extend_from_slice(&(head.dim as u32).to_le_bytes());
    buf.extend_from_slice(&(head.classes as u32).to_le_bytes());
    for x in head.w.iter().chain(&head.b) {
        buf.extend_from_slice(&x.to_le_bytes());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, buf)?;
    std::fs::rename(tmp, path)
}

fn load_head(path: &Path, dim: usize, classes: usize) -> Option<Head> {
    let bytes = std::fs::read(path).ok()?;
    let d = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let c = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
    if d != dim || c != classes || bytes.len() != 8 + 4 * (d * c + c) {
        return None;
    }
    let vals: Vec<f32> = bytes[8..]
        .chunks_exact(4)
        .map(|x| f32::from_le_bytes(x.try_into().unwrap()))
        .collect();
    Some(Head {
        dim,
        classes,
        w: vals[..d * c].to_vec(),
        b: vals[d * c..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_learns_separable_classes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..300 {
            let c = i % 3;
            let mut x: Vec<f32> = (0..8).map(|_| rng.gen_range(-0.1..0.1)).collect();
            x[c] += 1.0;
            xs.push(x);
            ys.push(c);
        }
        let head = Head::train(&xs, &ys, 3, 30);
        let correct = xs.iter().zip(&ys).filter(|(x, &y)| {
            let p = head.probs(x);
            p.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
                == y
        });
        assert_eq!(correct.count(), 300);
    }

    #[test]
    fn scaling_renormalises() {
        let mut s = Scores {
            intents: vec![0.5, 0.25],
            offtopic: 0.25,
        };
        s.scale(1, 3.0);
        let total: f32 = s.intents.iter().sum::<f32>() + s.offtopic;
        assert!((total - 1.0).abs() < 1e-6);
        assert!(s.intents[1] > s.intents[0]);
    }
}
