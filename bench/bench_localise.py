"""What localising a golden mismatch costs on the largest model at hand, on each EP.

The model: the corpus's largest (--corpus: the MiniLM encoder of tests/corpus.py, float32 with external
data), or by default a transformer-like encoder built with onnx.helper (blocks of LayerNormalization, attention
MatMuls, Softmax, an Erf-GELU MLP and residual Adds), inputs [1, 64, 256]; with 8 blocks it has
about 300 nodes and 26 MB of weights, the size of the real models people test here. One test's run
(session cached, one run) is timed beside `localise.localise`: the copy with every value exposed run
once on the same EP page and once in native onnxruntime, and the comparison of every value. The
offset on the input makes LayerNormalization diverge, so the figures are those of a real failure.

Run: python bench/bench_localise.py [--corpus | --blocks 8] [--ep wasm --ep webnn ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common
import numpy as np
from _common import figure

NAME = "localise"
WIDTH, TOKENS = 256, 64


def encoder(path: Path, blocks: int) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights = [], {}

    def weight(name: str, *shape: int) -> str:
        weights[f"w.{name}"] = (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
        return f"w.{name}"

    def node(op: str, inputs: list[str], name: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    weights["half"], weights["one"], weights["root_half"] = (np.float32(0.5), np.float32(1.0),
                                                             np.float32(1 / np.sqrt(2)))
    weights["scale"] = np.float32(1 / np.sqrt(WIDTH))
    value = "x"
    for block in range(blocks):
        b = f"b{block}"
        normed = node("LayerNormalization", [value, weight(f"{b}.g1", WIDTH), weight(f"{b}.h1", WIDTH)], f"{b}.ln1")
        q, k, v = (node("MatMul", [normed, weight(f"{b}.{n}", WIDTH, WIDTH)], f"{b}.{n}") for n in "qkv")
        scores = node("Mul", [node("MatMul", [q, node("Transpose", [k], f"{b}.kt", perm=[0, 2, 1])], f"{b}.qk"),
                              "scale"], f"{b}.scaled")
        attended = node("MatMul", [node("Softmax", [scores], f"{b}.softmax", axis=-1), v], f"{b}.attend")
        value = node("Add", [value, node("MatMul", [attended, weight(f"{b}.o", WIDTH, WIDTH)], f"{b}.out")],
                     f"{b}.residual1")
        normed = node("LayerNormalization", [value, weight(f"{b}.g2", WIDTH), weight(f"{b}.h2", WIDTH)], f"{b}.ln2")
        hidden = node("Add", [node("MatMul", [normed, weight(f"{b}.up", WIDTH, 4 * WIDTH)], f"{b}.up"),
                              weight(f"{b}.up_bias", 4 * WIDTH)], f"{b}.up_biased")
        erf = node("Erf", [node("Mul", [hidden, "root_half"], f"{b}.gelu_in")], f"{b}.erf")
        gelu = node("Mul", [node("Mul", [hidden, "half"], f"{b}.gelu_half"),
                            node("Add", [erf, "one"], f"{b}.gelu_one")], f"{b}.gelu")
        value = node("Add", [value, node("MatMul", [gelu, weight(f"{b}.down", 4 * WIDTH, WIDTH)], f"{b}.down")],
                     f"{b}.residual2")
    nodes.append(helper.make_node("Identity", [value], ["y"], name="output"))
    graph = helper.make_graph(
        nodes, "encoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, WIDTH])],
        initializer=[numpy_helper.from_array(np.asarray(array), name) for name, array in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--ep", action="append", help="EPs to measure (default: wasm, webnn, webgpu)")
    parser.add_argument("--corpus", action="store_true", help="the corpus's largest model instead: the MiniLM "
                        "encoder in float32 (86 MiB of external data), on a 16-token sentence")
    args = parser.parse_args()

    from pytest_browserml import model as model_facts
    from pytest_browserml.browser.launch import ExecutionProvider
    from pytest_browserml.golden import localise
    from pytest_browserml.golden.tolerances import tolerance_for_value
    from pytest_browserml.runner import Runtime

    if args.corpus:
        from tests import corpus

        path = corpus.encoders(corpus.encoder_folder())["fp32"]
        _, vocab = corpus.minilm_checkpoint()
        ids, mask = corpus.token_ids(vocab, "the quick brown fox jumps over the lazy dog", 16)
        feeds = {"input_ids": ids, "attention_mask": mask}
    else:
        path = encoder(Path(tempfile.mkdtemp(prefix="bench-localise-")) / "encoder.onnx", args.blocks)
        feeds = {"x": (3000 + 0.01 * np.random.default_rng(1).standard_normal((1, TOKENS, WIDTH))).astype(np.float32)}
    facts = model_facts.read(path)
    size = sum(file.stat().st_size for file in (path, *(path.parent / name for name in facts.external_data)))
    figure(NAME, "model", None, "", note=f"{path.name}: {facts.node_count} nodes, {size / 2**20:.1f} MiB with its "
                                         f"weights, inputs " + ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items()))
    for ep_id in args.ep or ["wasm", "webnn", "webgpu"]:
        ep = ExecutionProvider.parse(ep_id)
        runtime = Runtime(_common.settings(ep))
        try:
            ep_browser = runtime.browser_for(ep)
            files = runtime.model_files(path)
            ep_browser.run(files, feeds, warmup=0, iterations=0)  # session creation, not what is measured
            started = time.perf_counter()
            result = ep_browser.run(files, feeds, warmup=0, iterations=0)
            run_s = time.perf_counter() - started
            started = time.perf_counter()
            found = localise.localise(result, ep_browser.run_once,
                                      lambda name, dtype: tolerance_for_value(ep.id, dtype, output=name))
            localise_s = time.perf_counter() - started
        finally:
            runtime.close()
        first = found.divergences[0].node.describe() if found.divergences else "none"
        figure(NAME, f"{ep_id}: the test's run (cached session)", run_s * 1000, "ms")
        figure(NAME, f"{ep_id}: localising it", localise_s, "s",
               note=f"{found.compared} values compared; {found.method}; first divergence {first}")


if __name__ == "__main__":
    main()
