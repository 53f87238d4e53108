#!/usr/bin/env python3
"""Write model.onnx, an ONNX graph of a BERT-family sentence encoder, from its model.safetensors.

The optional ONNX Runtime backend (`[nlu] backend = "onnx"`) runs this file. No package ships an
fp32 ONNX export of all-MiniLM-L6-v2 with the pooling included, so this script builds one: the
graph is written op by op (embeddings, then per layer self-attention and the feed-forward block
with exact erf GELU, each followed by a residual LayerNorm), and it ends in mean pooling over the
attention mask and L2 normalisation, so its one output is the sentence embedding. The weights are
read from model.safetensors (parsed here, no ML framework) and stored unchanged as float32.

Inputs: input_ids and attention_mask, int64 [batch, tokens]. Output: embedding, float32
[batch, hidden]. The parity test in tests/nlu_embed.rs checks the result against
tests/data/reference_embeddings.json.

Requirements: numpy, onnx (pip install numpy onnx).
Usage: python3 models/make_onnx.py [MODEL_DIR]   (default: models/all-MiniLM-L6-v2)
"""

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        buf = data[8 + n + start : 8 + n + end]
        out[name] = np.frombuffer(buf, dtype=DTYPES[meta["dtype"]]).reshape(meta["shape"])
    return out


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, kind, inputs, **attrs):
        self.count += 1
        out = f"{kind.lower()}_{self.count}"
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out


def build(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    w = read_safetensors(model_dir / "model.safetensors")
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    if config.get("hidden_act", "gelu") != "gelu":
        sys.exit(f"unsupported activation {config.get('hidden_act')}: only exact gelu is built")
    g = Graph()

    def linear(x, prefix):
        wt = g.const(prefix + ".weight_t", w[prefix + ".weight"].T.astype(np.float32))
        b = g.const(prefix + ".bias", w[prefix + ".bias"].astype(np.float32))
        return g.op("Add", [g.op("MatMul", [x, wt]), b])

    def layer_norm(x, prefix):
        gamma = g.const(prefix + ".weight", w[prefix + ".weight"])
        beta = g.const(prefix + ".bias", w[prefix + ".bias"])
        return g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)

    # embeddings: word + position + token type 0, then LayerNorm
    words = g.op("Gather", [g.const("embeddings.word_embeddings.weight", w["embeddings.word_embeddings.weight"]), "input_ids"])
    # the first `tokens` rows of the position table (1-D slices only: no scalar shape arithmetic)
    i64 = lambda name, v: g.const(name, np.array(v, dtype=np.int64))
    seq_len = g.op("Slice", [g.op("Shape", ["input_ids"]), i64("at_1", [1]), i64("at_2", [2])])
    pos_table = g.const("embeddings.position_embeddings.weight", w["embeddings.position_embeddings.weight"])
    pos = g.op("Slice", [pos_table, i64("at_0", [0]), seq_len, i64("axis_0", [0])])
    token_type = g.const("token_type_0", w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(g.op("Add", [g.op("Add", [words, pos]), token_type]), "embeddings.LayerNorm")

    # additive attention mask: 0 where attended, a large negative number on padding
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    neg = g.op("Mul", [g.op("Sub", [g.const("one_f", np.array(1.0, dtype=np.float32)), mask_f]), g.const("neg_big", np.array(-1e9, dtype=np.float32))])
    bias = g.op("Unsqueeze", [neg, g.const("axes_1_2", np.array([1, 2], dtype=np.int64))])

    split = g.const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge = g.const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = g.const("scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = g.op("Transpose", [g.op("Reshape", [linear(x, p + ".attention.self.query"), split])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(x, p + ".attention.self.key"), split])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(x, p + ".attention.self.value"), split])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge])
        x = layer_norm(g.op("Add", [linear(ctx, p + ".attention.output.dense"), x]), p + ".attention.output.LayerNorm")
        h = linear(x, p + ".intermediate.dense")
        gelu = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [g.op("Erf", [g.op("Div", [h, sqrt2])]), "one_f"])])
        x = layer_norm(g.op("Add", [linear(gelu, p + ".output.dense"), x]), p + ".output.LayerNorm")

    # mean pooling over the mask, then L2 normalisation
    m = g.op("Unsqueeze", [mask_f, g.const("axes_2", np.array([2], dtype=np.int64))])
    axis1 = g.const("axis_1", np.array([1], dtype=np.int64))
    summed = g.op("ReduceSum", [g.op("Mul", [x, m]), axis1], keepdims=0)
    counts = g.op("Max", [g.op("ReduceSum", [m, axis1], keepdims=0), g.const("tiny_count", np.array(1e-9, dtype=np.float32))])
    mean = g.op("Div", [summed, counts])
    norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [mean, mean]), g.const("axis_last", np.array([-1], dtype=np.int64))], keepdims=1)])
    norm = g.op("Max", [norm, g.const("tiny_norm", np.array(1e-12, dtype=np.float32))])
    out = g.op("Div", [mean, norm])
    g.nodes.append(helper.make_node("Identity", [out], ["embedding"]))

    graph = helper.make_graph(
        g.nodes,
        "sentence_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="opsbot make_onnx.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent / "all-MiniLM-L6-v2")
    model = build(model_dir)
    out = model_dir / "model.onnx"
    onnx.save(model, out)
    print(f"wrote {out} ({out.stat().st_size // 1_000_000} MB)")


if __name__ == "__main__":
    main()
