#!/usr/bin/env python3
"""Make tests/data/reference_embeddings.json for the embedding parity test.

This is an independent float64 implementation of the all-MiniLM-L6-v2 sentence
encoder (a 6-layer BERT followed by mean pooling and L2 normalisation), written
with numpy only. It reads the weights straight from model.safetensors (parsed
here by hand, no ML framework) and uses the `tokenizers` package to turn text
into token ids from the shipped tokenizer.json.

The shipped tokenizer.json pads every input to 128 tokens and truncates at 128;
here padding is switched off and truncation is set to 256 (the model's
max_seq_length), so every sentence is encoded on its own, at its own length.

Requirements: numpy, tokenizers (pip install numpy tokenizers).

Run from the repository root:
    python3 tests/data/make_reference_embeddings.py
"""

import hashlib
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "all-MiniLM-L6-v2"
OUT = REPO / "tests" / "data" / "reference_embeddings.json"

MAX_LEN = 256

SENTENCES = [
    "restart the web server",
    "please reboot nginx",
    "what's the weather like",
    "the workers are stuck, kick them in prod",
    "ship web v2.4.1 to live",
    "deploy api 2.4.1 to staging",
    "!status",
    "Silence alerts for payments for 2h, the pager is going crazy",
    "",
    "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a",
]

# (sentence a, sentence b, expected cosine rounded to 4 decimals)
SANITY = [
    ("restart the web server", "please reboot nginx", 0.4656),
    ("restart the web server", "what's the weather like", -0.0496),
]

_DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def load_safetensors(path):
    """Read a .safetensors file: 8-byte little-endian header length, JSON header, raw data."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw[base + start : base + end], dtype=_DTYPES[info["dtype"]])
        tensors[name] = arr.reshape(info["shape"])
    return tensors


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    """Exact GELU (erf form), as BERT's hidden_act "gelu"."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class MiniLM:
    def __init__(self, model_dir):
        cfg = json.loads((model_dir / "config.json").read_text())
        assert cfg["hidden_act"] == "gelu", cfg["hidden_act"]
        assert cfg["position_embedding_type"] == "absolute"
        self.hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.layers = cfg["num_hidden_layers"]
        self.eps = cfg["layer_norm_eps"]
        raw = load_safetensors(model_dir / "model.safetensors")
        # Everything in float64.
        self.w = {k: v.astype(np.float64) for k, v in raw.items() if v.dtype.kind == "f"}

    def linear(self, x, prefix):
        # PyTorch layout: weight is [out, in].
        return x @ self.w[prefix + ".weight"].T + self.w[prefix + ".bias"]

    def forward(self, ids, mask):
        """ids, mask: int arrays of shape [seq]. Returns last hidden state [seq, hidden]."""
        w = self.w
        seq = len(ids)
        token_type = np.zeros(seq, dtype=np.int64)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(seq)]
            + w["embeddings.token_type_embeddings.weight"][token_type]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)

        head_dim = self.hidden // self.heads
        # Additive attention mask over keys: 0 where attended, very negative where masked.
        key_bias = np.where(mask[None, None, :] > 0, 0.0, -1e30)

        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def split(t):
                return t.reshape(seq, self.heads, head_dim).transpose(1, 0, 2)  # [h, s, d]

            q = split(self.linear(x, p + "attention.self.query"))
            k = split(self.linear(x, p + "attention.self.key"))
            v = split(self.linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim) + key_bias  # [h, s, s]
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs = probs / probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(seq, self.hidden)

            attn = self.linear(ctx, p + "attention.output.dense")
            x = layer_norm(
                attn + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            inter = gelu(self.linear(x, p + "intermediate.dense"))
            out = self.linear(inter, p + "output.dense")
            x = layer_norm(
                out + x,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                self.eps,
            )
        return x

    def embed(self, ids, mask):
        hidden = self.forward(ids, mask)
        m = mask.astype(np.float64)[:, None]
        pooled = (hidden * m).sum(axis=0) / max(m.sum(), 1e-9)
        return pooled / max(np.linalg.norm(pooled), 1e-12)


def main():
    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LEN)

    model = MiniLM(MODEL_DIR)
    sha = hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()

    items = []
    vecs = {}
    for text in SENTENCES:
        enc = tok.encode(text)
        ids = np.array(enc.ids, dtype=np.int64)
        mask = np.array(enc.attention_mask, dtype=np.int64)
        emb = model.embed(ids, mask)
        vecs[text] = emb
        items.append(
            {
                "text": text,
                "token_ids": [int(t) for t in enc.ids],
                "embedding": [float(f) for f in emb],
            }
        )

    ok = True
    for a, b, want in SANITY:
        got = float(vecs[a] @ vecs[b])
        flag = "ok" if round(got, 4) == want else "MISMATCH"
        ok &= flag == "ok"
        print(f"cos({a!r}, {b!r}) = {got!r} (expected {want}) {flag}")

    doc = {
        "model": "all-MiniLM-L6-v2",
        "sha256": sha,
        "how": (
            "tests/data/make_reference_embeddings.py: independent float64 numpy BERT forward "
            "from model.safetensors (erf GELU, zero token-type ids, attention mask), mean pooling "
            "over the mask, L2 normalisation; token ids from tokenizer.json via the Python "
            "tokenizers package with padding off and truncation at 256"
        ),
        "items": items,
    }
    # json.dumps writes floats with repr(), i.e. full round-trip precision.
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(REPO)} ({len(items)} items)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
