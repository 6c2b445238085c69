"""The candidates are measured on real models; measured latencies (an engine) replace the cost model's."""

from __future__ import annotations

import pytest

from tests.accuracy_models import image_batches, outlier_classifier
from tests.qdq.helpers import activation_amax
from trtq.accuracy.evaluation import Reference
from trtq.accuracy.gates import Gates
from trtq.engine.cost_model import DEVICES
from trtq.pipeline.precision_candidates import select_precision

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def case():
    model = outlier_classifier()
    amax = activation_amax(model, image_batches(0, SHAPE, 16, 2))
    return model, amax, Reference(model, image_batches(1, SHAPE, 16, 3))


def test_estimated_candidates_rank_int8_below_fp16_below_fp32_and_the_gate_decides(case):
    model, amax, reference = case
    selection = select_precision(model, amax, reference, Gates(min_sqnr=25.0), None, DEVICES["t4"], max_excluded=2)
    by_name = {c.name: c for c in selection.candidates}
    assert by_name["int8"].latency_ms < by_name["fp16"].latency_ms < by_name["fp32"].latency_ms
    assert by_name["fp32"].sqnr_db == float("inf") and by_name["fp32"].accurate_enough
    assert 55 < by_name["fp16"].sqnr_db < 80 and not by_name["int8"].accurate_enough
    assert by_name["int8 + 1 layer in fp32"].excluded == ("conv2",)
    assert by_name["int8 + 1 layer in fp16"].latency_ms < by_name["int8 + 1 layer in fp32"].latency_ms
    assert selection.choice.name == "int8 + 1 layer in fp16" and selection.met and selection.batch == 16


def test_measured_latencies_replace_the_estimates(case):
    model, amax, reference = case
    seen = []

    def measure(candidate, name):  # stands in for an engine build and timing: FP32 "measures" fastest here
        seen.append(name)
        return {"fp32": 1.0, "fp16": 2.0}.get(name, 3.0)

    selection = select_precision(model, amax, reference, Gates(min_sqnr=25.0), None, DEVICES["t4"], max_excluded=1,
                                 measure=measure)
    assert seen[:3] == ["fp32", "fp16", "int8"] and len(seen) == len(selection.candidates)
    assert all(c.latency_source == "measured: TensorRT engine" for c in selection.candidates)
    assert selection.choice.name == "fp32" and not selection.notes


def test_an_int8_choice_with_other_float_layers_than_the_build_is_written_as_its_own_model(case, tmp_path):
    import onnx

    from trtq.config import Config
    from trtq.pipeline.precision_select import Candidate
    from trtq.pipeline.select_stage import _int8_model

    model, amax, _ = case
    choice = Candidate("int8 + 1 layer in fp16", "int8", ("conv2",), 1.0, "test", 30.0, None, (), "test", "fp16")
    built = tmp_path / "m.qdq.onnx"
    path = _int8_model(Config(), model, amax, choice, None, tmp_path / "m", built)
    assert path == tmp_path / "m.chosen.qdq.fp16.onnx" and path.is_file()
    written = onnx.load(path)
    conv2 = next(n for n in written.graph.node if n.name == "conv2")
    producers = {o: n.op_type for n in written.graph.node for o in n.output}
    assert producers.get(conv2.input[0]) != "DequantizeLinear"  # conv2 reads a float input: left out of INT8
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in written.graph.initializer)  # the FP16 twin
    same = Candidate("int8", "int8", (), 1.0, "test", 30.0, None, (), "test", "fp32")
    assert _int8_model(Config(), model, amax, same, None, tmp_path / "m", built) == built
