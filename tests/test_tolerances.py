"""Tests for pytest_browserml.golden.tolerances: layer order, field-by-field merging, sources, validation."""

import numpy as np
import pytest

from pytest_browserml.golden.compare import Tolerance
from pytest_browserml.golden.tolerances import BUILTIN, ToleranceError, ToleranceLayer, resolve, tolerance_for_value
from pytest_browserml.model import Precision

PROJECT = "[tool.browserml.tolerance] in pyproject.toml"
MARKER = "marker on test_seg"

F32 = np.dtype(np.float32)
F16 = np.dtype(np.float16)


def project(**settings):
    return ToleranceLayer(PROJECT, settings)


def marker(**settings):
    return ToleranceLayer(MARKER, settings)


def tol(*layers, ep="wasm", dtype=F32, output="y"):
    return resolve([BUILTIN, *layers], ep=ep, dtype=dtype, output=output)


# --- built-in defaults -----------------------------------------------------


@pytest.mark.parametrize(
    ("ep", "dtype", "atol", "rtol", "section"),
    [
        ("wasm", np.float32, 1e-4, 1e-4, "wasm float32"),
        ("webnn", np.float32, 1e-4, 1e-3, "webnn float32"),
        ("webnn:gpu", np.float32, 1e-4, 1e-3, "webnn float32"),
        ("webgpu", np.float32, 1e-3, 1e-3, "webgpu float32"),
        ("wasm", np.float16, 1e-3, 1e-2, "float16"),
        ("webnn:npu", np.float16, 1e-3, 1e-2, "float16"),
        ("webgpu", np.float16, 2e-2, 1e-2, "webgpu float16"),
        ("wasm", np.float64, 1e-6, 1e-6, "float64"),
        ("webgpu", np.float64, 1e-6, 1e-6, "float64"),
    ],
)
def test_builtin_defaults(ep, dtype, atol, rtol, section):
    tolerance = resolve([BUILTIN], ep=ep, dtype=np.dtype(dtype), output="y")
    assert tolerance == Tolerance(atol=atol, rtol=rtol, source=f"atol, rtol from built-in default [{section}]")


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint8, np.bool_])
@pytest.mark.parametrize("ep", ["wasm", "webgpu", "webnn"])
def test_integers_and_bool_are_exact_by_default(ep, dtype):
    assert resolve([BUILTIN], ep=ep, dtype=np.dtype(dtype), output="y") == Tolerance()


def test_dtype_may_be_given_as_a_type_or_name():
    assert tol(dtype=np.float16) == tol(dtype="float16") == tol(dtype=F16)


# --- layer order -----------------------------------------------------------


def test_later_layers_win_field_by_field():
    tolerance = tol(project(atol=0.5, ulp=2), marker(atol=0.25), ep="webgpu")
    assert (tolerance.atol, tolerance.rtol, tolerance.ulp) == (0.25, 1e-3, 2)
    assert tolerance.source == (
        f"atol from {MARKER}; rtol from built-in default [webgpu float32]; ulp from {PROJECT}"
    )


def test_layer_order_is_the_order_given():
    first, second = marker(atol=1.0), project(atol=2.0)
    assert resolve([first, second], ep="wasm", dtype=F32, output="y").atol == 2.0
    assert resolve([second, first], ep="wasm", dtype=F32, output="y").atol == 1.0


def test_within_a_layer_the_most_specific_section_wins():
    layer = project(
        atol=1.0,
        webgpu={"atol": 2.0, "float16": {"atol": 5.0}},
        float16={"atol": 3.0},
        outputs={"y": {"atol": 6.0, "webgpu": {"atol": 7.0, "float16": {"atol": 9.0}}, "float16": {"atol": 8.0}}},
    )

    def atol(ep, dtype, output):
        return resolve([layer], ep=ep, dtype=dtype, output=output).atol

    assert atol("wasm", F32, "z") == 1.0
    assert atol("webgpu", F32, "z") == 2.0
    assert atol("wasm", F16, "z") == 3.0
    assert atol("webgpu", F16, "z") == 5.0
    assert atol("wasm", F32, "y") == 6.0
    assert atol("webgpu", F32, "y") == 7.0
    assert atol("wasm", F16, "y") == 8.0
    assert atol("webgpu", F16, "y") == 9.0


def test_dtype_section_beats_ep_section():
    layer = project(webgpu={"rtol": 0.1}, float16={"rtol": 0.2})
    assert resolve([layer], ep="webgpu", dtype=F16, output="y").rtol == 0.2


def test_a_later_layers_general_setting_beats_an_earlier_per_output_one():
    tolerance = tol(project(outputs={"y": {"atol": 0.5}}), marker(atol=0.1))
    assert tolerance.atol == 0.1


def test_ep_id_with_device_reads_the_generic_then_the_device_section():
    layer = project(webnn={"atol": 1.0, "rtol": 1.0}, **{"webnn:gpu": {"atol": 2.0}})
    on_gpu = resolve([layer], ep="webnn:gpu", dtype=F32, output="y")
    assert (on_gpu.atol, on_gpu.rtol) == (2.0, 1.0)
    assert on_gpu.source == f'atol from {PROJECT} ["webnn:gpu"]; rtol from {PROJECT} [webnn]'
    on_cpu = resolve([layer], ep="webnn:cpu", dtype=F32, output="y")
    assert (on_cpu.atol, on_cpu.rtol) == (1.0, 1.0)
    plain = resolve([layer], ep="webnn", dtype=F32, output="y")
    assert plain.atol == 1.0


def test_device_dtype_section_is_the_most_specific_ep_section():
    layer = project(webnn={"float16": {"ulp": 1}}, **{"webnn:gpu": {"float16": {"ulp": 2}}})
    assert resolve([layer], ep="webnn:gpu", dtype=F16, output="y").ulp == 2
    assert resolve([layer], ep="webnn:cpu", dtype=F16, output="y").ulp == 1


def test_per_output_sections_only_apply_to_that_output():
    layer = marker(outputs={"boxes": {"rtol": 1e-2}, "scores": {"cosine": 0.999}})
    assert tol(layer, output="boxes").rtol == 1e-2
    assert tol(layer, output="boxes").cosine is None
    assert tol(layer, output="scores").cosine == 0.999
    assert tol(layer, output="labels") == tol()


def test_none_unsets_an_earlier_field():
    tolerance = tol(marker(atol=None, rtol=None, ulp=4), dtype=F16)
    assert (tolerance.atol, tolerance.rtol, tolerance.ulp) == (None, None, 4)
    assert tolerance.source == f"ulp from {MARKER}"


def test_every_field_can_be_set():
    tolerance = tol(
        marker(
            atol=1,
            rtol=0,
            ulp=3,
            cosine=0.99,
            topk=5,
            topk_axis=-2,
            mismatch_fraction=0.01,
            nan_equal=False,
            exact=True,
        )
    )
    assert tolerance == Tolerance(
        atol=1.0,
        rtol=0.0,
        ulp=3,
        cosine=0.99,
        topk=5,
        topk_axis=-2,
        mismatch_fraction=0.01,
        nan_equal=False,
        exact=True,
        source=f"atol, rtol, ulp, cosine, topk, topk_axis, mismatch_fraction, nan_equal, exact from {MARKER}",
    )


def test_numpy_scalars_become_plain_python_values():
    tolerance = tol(marker(atol=np.float32(0.5), topk=np.int64(3), exact=np.bool_(True)))
    assert type(tolerance.atol) is float and type(tolerance.topk) is int and type(tolerance.exact) is bool


def test_unknown_ep_is_refused():
    with pytest.raises(ValueError, match="unknown execution provider 'webgl'"):
        tol(ep="webgl")


# --- source text -----------------------------------------------------------


def test_source_groups_fields_by_origin_and_section():
    tolerance = tol(
        marker(webgpu={"atol": 0.1}, outputs={"boxes": {"webgpu": {"float16": {"ulp": 2}}, "rtol": 0.2}}),
        ep="webgpu",
        dtype=F16,
        output="boxes",
    )
    assert tolerance.source == (
        f"atol from {MARKER} [webgpu]; rtol from {MARKER} [outputs.boxes]; "
        f"ulp from {MARKER} [outputs.boxes webgpu float16]"
    )


def test_source_quotes_output_names_as_toml_would():
    layer = project(outputs={"/model/Conv_output_0": {"atol": 1.0}})
    tolerance = tol(layer, output="/model/Conv_output_0")
    assert f'atol from {PROJECT} [outputs."/model/Conv_output_0"]' in tolerance.source


def test_source_appears_in_the_tolerance_description():
    assert "(atol, rtol from built-in default [wasm float32])" in tol().describe()


# --- validation ------------------------------------------------------------


def test_unknown_setting_names_the_setting_the_origin_and_the_choices():
    with pytest.raises(ToleranceError) as error:
        marker(atoll=1e-3)
    message = str(error.value)
    assert message.startswith(f"unknown tolerance setting 'atoll' in {MARKER}; known: atol, rtol, ulp")
    assert "webnn:gpu" in message and "float16" in message and "outputs" in message


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"webgpu": {"atoll": 1}}, "webgpu.atoll"),
        ({"float16": {"webgpu": {}}}, "float16.webgpu"),  # EP sections hold dtypes, not the reverse
        ({"webgpu": {"webnn": {}}}, "webgpu.webnn"),
        ({"webgpu": {"outputs": {}}}, "webgpu.outputs"),
        ({"outputs": {"y": {"outputs": {}}}}, "outputs.y.outputs"),
        ({"outputs": {"y": {"float16": {"float32": {}}}}}, "outputs.y.float16.float32"),
        ({"webgl": {}}, "webgl"),
        ({"webnn:tpu": {}}, '"webnn:tpu"'),
        ({"bfloat16": {}}, "bfloat16"),
        ({"source": "mine"}, "source"),
    ],
)
def test_unknown_keys_anywhere(settings, name):
    with pytest.raises(ToleranceError, match=f"unknown tolerance setting '{name}' in {MARKER}"):
        ToleranceLayer(MARKER, settings)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"atol": "big"}, "'atol' = 'big' in .*: expected a number >= 0"),
        ({"atol": -1e-3}, "'atol' = -0.001 in .*: expected a number >= 0"),
        ({"rtol": float("nan")}, "'rtol' = nan in .*: expected a number >= 0"),
        ({"atol": True}, "'atol' = True in .*: expected a number >= 0"),
        ({"ulp": 1.5}, "'ulp' = 1.5 in .*: expected an integer >= 0"),
        ({"ulp": -1}, "'ulp' = -1 in .*: expected an integer >= 0"),
        ({"topk": 0}, "'topk' = 0 in .*: expected an integer >= 1"),
        ({"topk_axis": 1.0}, "'topk_axis' = 1.0 in .*: expected an integer"),
        ({"cosine": 1.5}, r"'cosine' = 1.5 in .*: expected a number in \[0, 1\]"),
        ({"mismatch_fraction": -0.1}, r"'mismatch_fraction' = -0.1 in .*: expected a number in \[0, 1\]"),
        ({"exact": 1}, "'exact' = 1 in .*: expected true or false"),
        ({"nan_equal": None}, "'nan_equal' = None in .*: expected true or false"),
        ({"outputs": {"y": {"webgpu": {"float16": {"atol": "x"}}}}}, "'outputs.y.webgpu.float16.atol' = 'x'"),
    ],
)
def test_bad_values_name_the_setting_and_origin(settings, expected):
    with pytest.raises(ToleranceError, match=f"^tolerance setting {expected}"):
        ToleranceLayer(PROJECT, settings)


def test_bad_value_message_reads_well():
    with pytest.raises(ToleranceError) as error:
        ToleranceLayer("[tool.browserml.tolerance] (pyproject.toml)", {"atol": "big"})
    assert str(error.value) == (
        "tolerance setting 'atol' = 'big' in [tool.browserml.tolerance] (pyproject.toml): expected a number >= 0"
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"webgpu": 1e-3}, "tolerance section 'webgpu' in .*: expected a table of settings, got 0.001"),
        ({"outputs": ["y"]}, r"tolerance section 'outputs' in .*: expected a table of output names, got \['y'\]"),
        ({"outputs": {"y": 1}}, "tolerance section 'outputs.y' in .*: expected a table of settings"),
    ],
)
def test_sections_must_be_tables(settings, expected):
    with pytest.raises(ToleranceError, match=expected):
        ToleranceLayer(PROJECT, settings)


def test_settings_must_be_a_table():
    with pytest.raises(ToleranceError, match=f"tolerance settings in {MARKER}: expected a table"):
        ToleranceLayer(MARKER, [("atol", 1)])


def test_tolerance_error_is_a_value_error():
    assert issubclass(ToleranceError, ValueError)


def test_toml_shaped_project_settings_are_accepted():
    import tomllib

    settings = tomllib.loads(
        """
        rtol = 1e-3
        [webgpu]
        atol = 1e-3
        [webgpu.float16]
        ulp = 4
        ["webnn:gpu"]
        rtol = 1e-2
        [outputs.boxes]
        rtol = 1e-2
        [outputs."/model/out".webgpu]
        cosine = 0.999
        """
    )
    layer = ToleranceLayer(PROJECT, settings)
    assert resolve([layer], ep="webgpu", dtype=F16, output="y").ulp == 4
    assert resolve([layer], ep="webnn:gpu", dtype=F32, output="y").rtol == 1e-2
    assert resolve([layer], ep="webgpu", dtype=F32, output="/model/out").cosine == 0.999


# --- whole-tensor criteria on their own and the model's compute precision ---------


def test_a_layer_naming_only_cosine_replaces_the_elementwise_rule():
    chosen = tol(project(rtol=1e-3), marker(cosine=0.999))
    assert (chosen.atol, chosen.rtol, chosen.ulp, chosen.cosine) == (None, None, None, 0.999)
    assert chosen.describe() == f"cosine=0.999 (cosine from {MARKER})"
    both = tol(marker(cosine=0.999, atol=1e-2))
    assert (both.atol, both.rtol, both.cosine) == (1e-2, 1e-4, 0.999)
    # per output: the layer names atol for "boxes" only, so "scores" is judged by topk alone
    layer = marker(topk=3, outputs={"boxes": {"atol": 1.0}})
    assert tol(layer, output="boxes").atol == 1.0
    assert tol(layer, output="scores").atol is None and tol(layer, output="scores").topk == 3


FLOAT16_MODEL = Precision("float16", "computes in float16 (212 float16 initializers)")
QUANTIZED_MODEL = Precision("quantized", "computes in integers (quantized: 36 MatMulInteger nodes)")


def test_float32_outputs_of_a_float16_model_get_the_float16_tolerances_and_say_why():
    chosen = resolve([BUILTIN], ep="webnn", dtype=F32, output="y", precision=FLOAT16_MODEL)
    assert (chosen.atol, chosen.rtol) == (1e-3, 1e-2)
    assert chosen.describe() == ("atol=0.001, rtol=0.01 (atol, rtol from built-in default [float16]; "
                                 "the model computes in float16 (212 float16 initializers))")
    marked = resolve([BUILTIN, marker(float16={"atol": 5e-3})], ep="wasm", dtype=F32, output="y",
                     precision=FLOAT16_MODEL)
    assert marked.atol == 5e-3
    assert resolve([BUILTIN], ep="webgpu", dtype=F32, output="y", precision=FLOAT16_MODEL).atol == 2e-2
    assert resolve([BUILTIN], ep="wasm", dtype=np.dtype(np.int64), output="ids", precision=FLOAT16_MODEL).atol is None


def test_a_quantized_model_is_judged_by_its_own_class_which_a_marker_can_set():
    chosen = resolve([BUILTIN], ep="wasm", dtype=F32, output="y", precision=QUANTIZED_MODEL)
    assert chosen.atol is chosen.rtol is None and chosen.cosine is not None
    assert "[quantized]" in chosen.source and "quantized: 36 MatMulInteger nodes" in chosen.source
    assert resolve([BUILTIN, marker(quantized={"cosine": 0.9})], ep="wasm", dtype=F32, output="y",
                   precision=QUANTIZED_MODEL).cosine == 0.9


def test_tolerance_for_a_value_needs_no_layers_beyond_the_defaults():
    """What localise uses for intermediate values: the default tolerance of a dtype under a precision class."""
    assert tolerance_for_value("wasm", F32) == tol()
    assert tolerance_for_value("wasm", F32, FLOAT16_MODEL).atol == 1e-3
    assert tolerance_for_value("webgpu", F16).atol == 2e-2


def test_mask_input_names_an_input():
    assert tol(marker(mask_input="attention_mask")).mask_input == "attention_mask"
    with pytest.raises(ToleranceError, match="'mask_input' = 3 in marker on test_seg: expected an input's name"):
        marker(mask_input=3)
