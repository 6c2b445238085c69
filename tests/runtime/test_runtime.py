"""trtq.runtime: Polygraphy's runners satisfy the Runner protocol; sessions share one IR clamp and load error."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.image_models import SIZE, conv_classifier
from trtq.errors import ModelError
from trtq.onnx_model.model import MAX_IR_VERSION
from trtq.runtime.runner import Runner
from trtq.runtime.runners import onnx_runner
from trtq.runtime.session import cpu_session, create_session


def _model(ir_version: int = 10) -> onnx.ModelProto:
    model = conv_classifier()
    model.ir_version = ir_version
    return model


def test_an_onnx_runtime_runner_is_a_runner_and_gives_the_session_outputs():
    model = _model()
    x = np.random.default_rng(0).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)
    runner = onnx_runner(model, "reference", ["prob"], ["CPUExecutionProvider"])
    assert isinstance(runner, Runner)
    with runner:
        out = runner.infer({"x": x})
    expected = cpu_session(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(out["prob"], expected, rtol=1e-6)
    assert not isinstance(object(), Runner)


def test_a_newer_ir_version_is_clamped_on_every_session_path():
    # onnx writes IR versions ONNX Runtime cannot read; each path must lower it, not fail.
    x = np.zeros((1, 3, SIZE, SIZE), np.float32)
    assert cpu_session(_model(MAX_IR_VERSION + 1)).run(None, {"x": x})[0].shape == (1, 4)
    with create_session(_model(MAX_IR_VERSION + 1), None, ["CPUExecutionProvider"]) as sess:
        assert sess.run(None, {"x": x})[0].shape == (1, 4)


def test_a_model_onnx_runtime_rejects_is_one_model_error_on_every_path():
    broken = _model()
    broken.graph.node[0].op_type = "NoSuchOp"
    for load in (lambda: cpu_session(broken),
                 lambda: create_session(broken, None, ["CPUExecutionProvider"]).__enter__(),
                 lambda: onnx_runner(broken, "candidate", ["prob"], ["CPUExecutionProvider"])):
        with pytest.raises(ModelError, match=r"ONNX Runtime cannot load the (candidate )?model") as info:
            load()
        assert "trtq inspect" in info.value.hint
