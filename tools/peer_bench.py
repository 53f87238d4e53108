#!/usr/bin/env python3
"""The Python peer: sentence-transformers on PyTorch (CPU) with opsbot's model and messages.

Measures what examples/engines.rs measures, the same way: the first 200 texts of
tests/data/ops_eval.jsonl, 20 warm-up calls, each message embedded on its own (p50, p90 in ms),
then three passes in batches of 32 (sentences per second); prints one JSON object. It checks
parity against tests/data/reference_embeddings.json first and fails if the vectors differ by more
than 1e-4. tools/compare_engines.sh runs it beside opsbot's engines and prints the ratios.

Needs torch and sentence-transformers (README, "Speed", gives the install). Never touches the
network: the model is read from models/all-MiniLM-L6-v2.

usage: python3 tools/peer_bench.py [--threads N]
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer, models

    torch.set_num_threads(a.threads)
    started = time.perf_counter()
    # the pipeline sentence-transformers would build from the model card: mean pooling, then
    # L2 normalisation; assembled here so no modules.json is needed
    encoder = models.Transformer(os.path.join(REPO, "models/all-MiniLM-L6-v2"), max_seq_length=256)
    pooling = models.Pooling(encoder.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[encoder, pooling, models.Normalize()], device="cpu")
    model.eval()
    load_ms = (time.perf_counter() - started) * 1e3

    def embed(texts, batch=32):
        return model.encode(texts, batch_size=batch, convert_to_numpy=True, show_progress_bar=False)

    with open(os.path.join(REPO, "tests/data/reference_embeddings.json")) as f:
        reference = json.load(f)["items"]
    got = embed([r["text"] for r in reference])
    want = np.array([r["embedding"] for r in reference])
    diff = float(np.abs(got - want).max())
    if diff > 1e-4:
        sys.exit(f"parity: the peer differs from the reference by {diff}")

    messages = []
    with open(os.path.join(REPO, "tests/data/ops_eval.jsonl")) as f:
        for line in f:
            if line.strip() and len(messages) < 200:
                messages.append(json.loads(line)["text"])
    with torch.inference_mode():
        for m in messages[:20]:
            embed([m])
        ms = []
        for m in messages:
            t = time.perf_counter()
            embed([m])
            ms.append((time.perf_counter() - t) * 1e3)
        ms.sort()
        t = time.perf_counter()
        for _ in range(3):
            embed(sorted(messages, key=len))
        per_s = 3 * len(messages) / (time.perf_counter() - t)

    def pct(p):
        return ms[round(p * (len(ms) - 1))]

    print(json.dumps({
        "engine": "python-sentence-transformers", "threads": a.threads, "load_ms": load_ms,
        "p50_ms": pct(0.5), "p90_ms": pct(0.9), "batch32_per_s": per_s,
        "parity_max_abs_diff": diff, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
