#!/usr/bin/env python3
"""The peer for models/examples/bench_images.rs: onnxruntime running the same weights.

The DCGAN generator (gan-face-generate's weights.tar, read with the same pickle reader as
generate_dcgan_reference.py) and the RDN x2 upscaler (@upscalerjs/default-model's model.json
and shard) are each written out as an ONNX graph (ConvTranspose/BatchNormalization/Relu/Tanh;
Conv/Relu/Concat/Add/Resize-nearest) and timed like the Rust bench: median of 9 runs for
DCGAN n = 1 and n = 10, of 3 runs for a 512x512 x2 upscale (whole image, no tiling).

    python3 -m venv /tmp/peer && /tmp/peer/bin/pip install -r models/scripts/requirements-bench.txt
    OMP_NUM_THREADS=2 /tmp/peer/bin/python models/scripts/bench_peer_images.py
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_dcgan_reference import CHECKPOINT, MODELS, load_state_dicts  # noqa: E402

THREADS = int(os.environ.get("OMP_NUM_THREADS", "2"))


def session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def dcgan_graph():
    state = load_state_dicts(CHECKPOINT)["netG_state_dict"]
    convs = sorted({int(k.split(".")[1]) for k in state if state[k].ndim == 4})
    nodes, inits, x = [], [], "z"
    for position, index in enumerate(convs):
        w = f"main.{index}.weight"
        inits.append(numpy_helper.from_array(state[w].astype(np.float32), w))
        stride, pad = (1, 0) if position == 0 else (2, 1)
        y = f"conv{index}"
        nodes.append(helper.make_node("ConvTranspose", [x, w], [y], strides=[stride] * 2, pads=[pad] * 4))
        x = y
        bn = f"main.{index + 1}"
        if f"{bn}.running_mean" in state:
            names = [f"{bn}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
            inits += [numpy_helper.from_array(state[n].astype(np.float32), n) for n in names]
            nodes.append(helper.make_node("BatchNormalization", [x, *names], [f"bn{index}"], epsilon=1e-5))
            x = f"bn{index}"
        last = position == len(convs) - 1
        nodes.append(helper.make_node("Tanh" if last else "Relu", [x], [f"act{index}"]))
        x = f"act{index}"
    graph = helper.make_graph(
        nodes, "dcgan",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 100, 1, 1])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def rdn_graph():
    folder = MODELS / "rdn-x2"
    model = json.loads((folder / "model.json").read_text())
    raw = (folder / "group1-shard1of1.bin").read_bytes()
    weights, at = {}, 0
    for entry in model["weightsManifest"][0]["weights"]:
        count = int(np.prod(entry["shape"]))
        weights[entry["name"]] = np.frombuffer(raw, "<f4", count, at).reshape(entry["shape"])
        at += count * 4
    nodes, inits = [], []
    layers = model["modelTopology"]["model_config"]["config"]["layers"]
    for layer in layers:
        kind, name, config = layer["class_name"], layer["name"], layer["config"]
        inputs = [n[0] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        if kind == "InputLayer":
            source = name
        elif kind == "Conv2D":
            kernel = weights[f"{name}/kernel"].transpose(3, 2, 0, 1).copy()
            inits += [numpy_helper.from_array(kernel, f"{name}/k"),
                      numpy_helper.from_array(weights[f"{name}/bias"].copy(), f"{name}/b")]
            k = config["kernel_size"][0]
            nodes.append(helper.make_node("Conv", [inputs[0], f"{name}/k", f"{name}/b"], [name],
                                          pads=[k // 2] * 4))
        elif kind == "Activation":
            nodes.append(helper.make_node("Relu", inputs, [name]))
        elif kind == "Concatenate":
            nodes.append(helper.make_node("Concat", inputs, [name], axis=1))
        elif kind == "Add":
            nodes.append(helper.make_node("Add", inputs, [name]))
        elif kind == "UpSampling2D":
            inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), f"{name}/scales"))
            nodes.append(helper.make_node("Resize", [inputs[0], "", f"{name}/scales"], [name], mode="nearest",
                                          nearest_mode="floor", coordinate_transformation_mode="asymmetric"))
        else:
            raise SystemExit(f"unexpected layer {kind}")
    output = model["modelTopology"]["model_config"]["config"]["output_layers"][0][0]
    graph = helper.make_graph(
        nodes, "rdn",
        [helper.make_tensor_value_info(source, TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def median(runs, work):
    work()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main():
    print(f"onnxruntime {ort.__version__}, {THREADS} threads")
    print("| work | median s | images/s |")
    print("|---|---:|---:|")
    gan = session(dcgan_graph())
    for n in (1, 10):
        z = np.random.default_rng(42).standard_normal((n, 100, 1, 1)).astype(np.float32)
        seconds = median(9, lambda: gan.run(None, {"z": z}))
        print(f"| DCGAN 64×64, n = {n} | {seconds:.4f} | {n / seconds:.1f} |")
    rdn = session(rdn_graph())
    from PIL import Image  # only for the fixture picture
    fixture = np.asarray(Image.open(MODELS / "rdn-x2" / "fixture.png").convert("RGB"), np.float32)
    picture = np.tile(fixture, (4, 4, 1)).transpose(2, 0, 1)[None].copy()
    out = rdn.run(None, {"LR": picture})[0]
    assert out.shape == (1, 3, 1024, 1024), out.shape
    seconds = median(3, lambda: rdn.run(None, {"LR": picture}))
    print(f"| RDN ×2, 512×512 → 1024×1024 | {seconds:.3f} | {1 / seconds:.2f} |")


if __name__ == "__main__":
    main()
