#!/usr/bin/env python3
"""Peer benchmark: all-MiniLM-L6-v2 on onnxruntime (CPU), to compare with
models/examples/bench_embeddings.rs (the Rust/burn implementation).

There is no ONNX export of the model here (and no torch), so the script builds the
ONNX graph itself from model.safetensors with onnx.helper: BERT encoder, then mean
pooling over the attention mask and L2 normalisation, all inside the graph. The
graph is written to a temporary directory, never into the repository.

It checks the graph against models/tests/fixtures/minilm_reference.json (cosine
>= 0.9999 for every sentence, alone and as one padded batch; exit status 1
otherwise), then prints sentences/s for the same inputs and batch sizes as the
Rust bench: "short" (11 tokens) and "long" (128 tokens), batches 1, 8 and 32.

    .venv/bin/pip install -r models/scripts/requirements.txt -r models/scripts/requirements-bench.txt
    .venv/bin/python models/scripts/bench_peer_onnxruntime.py

The model folder is $HEARTH_MODELS_DIR/all-minilm-l6-v2, by default
<repo>/.models/all-minilm-l6-v2 (installed by scripts/fetch-models).
"""

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(os.environ.get("HEARTH_MODELS_DIR", REPO / ".models")) / "all-minilm-l6-v2"
FIXTURE = REPO / "models" / "tests" / "fixtures" / "minilm_reference.json"

# Same constants as models/examples/bench_embeddings.rs.
MIN_TIME = 2.0  # seconds per cell, after one warm-up batch
BATCH_SIZES = [1, 8, 32]
LONG_TOKENS = 128
SHORT = "The quick brown fox jumps over the lazy dog"
LONG = (
    "Hearth serves language, speech and image models from one small binary. "
    "The embeddings endpoint tokenizes every input, pads a batch to its longest sequence, runs "
    "one forward pass of the encoder, averages the token vectors under the attention mask and "
    "scales each result to unit length, so that a dot product between two vectors is their cosine "
    "similarity. Inputs longer than the model's limit are refused with a clear error rather than "
    "silently truncated, because a shortened document would quietly change what a search finds. "
    "Batching matters on a CPU: a single sentence leaves most of the matrix units idle, while a "
    "batch of thirty-two keeps every core busy and amortises the cost of reading the weights."
)
OPSET = 17  # first opset with LayerNormalization


def build_graph(weights, cfg):
    """Returns an onnx.ModelProto: (input_ids, attention_mask) -> sentence_embedding [B, H]."""
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim, eps = hidden // heads, cfg["layer_norm_eps"]
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def linear(x, prefix, out):
        # torch stores [out, in]; transpose once here so the graph is a plain MatMul + Add.
        w = const(prefix + ".weight", np.ascontiguousarray(weights[prefix + ".weight"].T))
        b = const(prefix + ".bias", weights[prefix + ".bias"])
        return node("Add", [node("MatMul", [x, w], out + "_mm"), b], out)

    def layer_norm(x, prefix, out):
        w = const(prefix + ".weight", weights[prefix + ".weight"])
        b = const(prefix + ".bias", weights[prefix + ".bias"])
        return node("LayerNormalization", [x, w, b], out, axis=-1, epsilon=eps)

    # Embeddings: word + position[:seq] + token_type[0] (every token is segment 0).
    word = node("Gather", [const("word_embeddings", weights["embeddings.word_embeddings.weight"]),
                           "input_ids"], "word")
    seq = node("Gather", [node("Shape", ["input_ids"], "ids_shape"),
                          const("one", np.array([1], np.int64))], "seq_len")
    zero = const("zero", np.array([0], np.int64))
    pos = node("Slice", [const("position_embeddings", weights["embeddings.position_embeddings.weight"]),
                         zero, seq, zero], "pos")  # rows [0, seq) of axis 0
    emb = node("Add", [node("Add", [word, pos], "word_pos"),
                       const("token_type0", weights["embeddings.token_type_embeddings.weight"][0])], "emb")
    x = layer_norm(emb, "embeddings.LayerNorm", "emb_ln")

    # Additive attention bias [B, 1, 1, S]: 0 on tokens, -10000 on padding (as HF BERT does).
    # Spelled as HF's torch export spells it (Unsqueeze, Unsqueeze, Cast, Sub, Mul), the pattern
    # onnxruntime.transformers' offline optimizer fuses into its Attention op. Tried: that fused
    # graph was no faster on this 2-core CPU, so the plain graph (ORT_ENABLE_ALL) is what runs.
    mask4 = node("Unsqueeze", [node("Unsqueeze", ["attention_mask", const("ax1", np.array([1], np.int64))],
                                    "mask3i"), const("ax2", np.array([2], np.int64))], "mask4i")
    mask4 = node("Cast", [mask4], "mask4", to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const("f_one", np.float32(1.0)), mask4], "inv_mask"),
                        const("neg", np.float32(-10000.0))], "mask_bias")

    split_shape = const("split_shape", np.array([0, 0, heads, head_dim], np.int64))  # 0 = keep dim
    merge_shape = const("merge_shape", np.array([0, 0, hidden], np.int64))
    scale = const("scale", np.float32(math.sqrt(head_dim)))
    sqrt2, half = const("sqrt2", np.float32(math.sqrt(2.0))), const("half", np.float32(0.5))

    for i in range(cfg["num_hidden_layers"]):
        p, n = f"encoder.layer.{i}.", f"l{i}_"

        def heads_of(t, perm):
            return node("Transpose", [node("Reshape", [t, split_shape], t + "_4d")], t + "_t", perm=perm)

        q = heads_of(linear(x, p + "attention.self.query", n + "q"), [0, 2, 1, 3])
        k = heads_of(linear(x, p + "attention.self.key", n + "k"), [0, 2, 3, 1])  # K^T directly
        v = heads_of(linear(x, p + "attention.self.value", n + "v"), [0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [q, k], n + "qk"), scale], n + "scores")
        probs = node("Softmax", [node("Add", [scores, bias], n + "masked")], n + "probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], n + "ctx4")], n + "ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_shape], n + "ctx")
        attn = linear(ctx, p + "attention.output.dense", n + "attn")
        x = layer_norm(node("Add", [attn, x], n + "res1"), p + "attention.output.LayerNorm", n + "ln1")

        # Exact GELU: 0.5 * h * (1 + erf(h / sqrt 2)); onnxruntime fuses it with the bias add (BiasGelu).
        h = linear(x, p + "intermediate.dense", n + "inter")
        erf = node("Erf", [node("Div", [h, sqrt2], n + "h_s2")], n + "erf")
        g = node("Mul", [h, node("Add", [erf, "f_one"], n + "erf1")], n + "h_erf")
        g = node("Mul", [g, half], n + "gelu")
        out = linear(g, p + "output.dense", n + "out")
        x = layer_norm(node("Add", [out, x], n + "res2"), p + "output.LayerNorm", n + "ln2")

    # Mean pooling over the mask, then L2 normalisation (clamps as in sentence-transformers).
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    mask3 = node("Unsqueeze", [mask_f, const("axis2", np.array([2], np.int64))], "mask3")
    axis1 = const("axis1", np.array([1], np.int64))
    summed = node("ReduceSum", [node("Mul", [x, mask3], "masked_hidden"), axis1], "summed", keepdims=0)
    count = node("Max", [node("ReduceSum", [mask3, axis1], "count_raw", keepdims=0),
                         const("tiny", np.float32(1e-9))], "count")
    pooled = node("Div", [summed, count], "pooled")
    # Opset 17 ReduceL2 still takes axes as an attribute (ReduceSum takes them as an input).
    norm = node("Max", [node("ReduceL2", [pooled], "norm_raw", axes=[-1], keepdims=1),
                        const("eps12", np.float32(1e-12))], "norm")
    node("Div", [pooled, norm], "sentence_embedding")

    graph = helper.make_graph(
        nodes, "all-minilm-l6-v2",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
         for name in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def make_session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2  # the machine's two cores
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def embed(session, batch):
    """Like EmbeddingModel::embed: pad with id 0 to the longest sequence, mask the padding."""
    seq = max(map(len, batch))
    ids = np.zeros((len(batch), seq), np.int64)
    mask = np.zeros((len(batch), seq), np.int64)
    for row, tokens in enumerate(batch):
        ids[row, :len(tokens)] = tokens
        mask[row, :len(tokens)] = 1
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def check_fixture(session):
    """Every fixture sentence alone, then all of them as one padded batch."""
    cases = json.loads(FIXTURE.read_text())["cases"]
    want = np.array([c["embedding"] for c in cases], np.float64)
    alone = np.concatenate([embed(session, [c["token_ids"]]) for c in cases])
    batched = embed(session, [c["token_ids"] for c in cases])
    ok = True
    for label, got in (("alone", alone), ("batched", batched)):
        got = got.astype(np.float64)
        cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        print(f"fixture check ({label}): min cosine {cos.min():.8f} (1 - cos <= {1 - cos.min():.1e}), "
              f"max |diff| {np.abs(got - want).max():.1e} over {len(cos)} sentences "
              f"(token counts {[len(c['token_ids']) for c in cases]})")
        ok &= bool((cos >= 0.9999).all())
    return ok


def sentences_per_second(session, batch):
    """Same loop as the Rust bench: one warm-up batch, then repeat until MIN_TIME has passed."""
    embed(session, batch)
    start, runs = time.perf_counter(), 0
    while runs == 0 or time.perf_counter() - start < MIN_TIME:
        embed(session, batch)
        runs += 1
    return runs * len(batch) / (time.perf_counter() - start)


def main():
    if not (MODEL_DIR / "model.safetensors").is_file():
        sys.exit(f"model not found in {MODEL_DIR}: run scripts/fetch-models")
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    weights = {k: v for k, v in load_file(str(MODEL_DIR / "model.safetensors")).items()
               if k != "embeddings.position_ids"}
    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads to 128 by default; the Rust tokenizer turns this off too
    tokenizer.no_truncation()

    with tempfile.TemporaryDirectory(prefix="hearth-ort-") as tmp:
        path = Path(tmp) / "all-minilm-l6-v2.onnx"
        onnx.save(build_graph(weights, cfg), str(path))
        start = time.perf_counter()
        session = make_session(path)
        load_ms = (time.perf_counter() - start) * 1000

    if not check_fixture(session):
        sys.exit("FAILED: some fixture sentence has cosine < 0.9999")

    short = tokenizer.encode(SHORT, add_special_tokens=True).ids
    long = tokenizer.encode(LONG, add_special_tokens=True).ids
    if len(long) < LONG_TOKENS:
        sys.exit(f"the long text has {len(long)} tokens, fewer than {LONG_TOKENS}")
    long = long[:LONG_TOKENS - 1] + [long[-1]]  # keep [CLS] + 126 word pieces + [SEP]

    print(f"\nall-MiniLM-L6-v2, onnxruntime {ort.__version__} (CPU, onnx {onnx.__version__}), "
          f"intra-op 2 threads, session created in {load_ms:.0f} ms\n")
    print("| input | tokens | batch | sentences/s | ms/batch |")
    print("|---|---:|---:|---:|---:|")
    for name, ids in (("short", short), ("long", long)):
        for size in BATCH_SIZES:
            rate = sentences_per_second(session, [ids] * size)
            print(f"| {name} | {len(ids)} | {size} | {rate:.1f} | {1000 * size / rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
