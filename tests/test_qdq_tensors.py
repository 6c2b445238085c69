"""Observe only what is needed: `trtq build` calibrates only the tensors its Q/DQ model quantizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from trtq.cache import CalibrationTable, Provenance, names_sha256, write_cache
from trtq.config import Config, QuantizeConfig
from trtq.onnx_model import model as model_io
from trtq.onnx_model.tensors import activation_tensors
from trtq.pipeline.calibrate import with_tensor_scope
from trtq.qdq import quantize_model
from trtq.qdq.graph import name_nodes
from trtq.qdq.needed import qdq_tensors


def test_qdq_model_from_the_needed_ranges_equals_the_one_from_all_ranges(ocr_classifier):
    model = model_io.load_model(ocr_classifier)
    every = activation_tensors(model, "all")
    rng = np.random.default_rng(0)
    amax = {name: float(rng.uniform(0.5, 8.0)) for name in every}
    sets = []
    before = model.SerializeToString()
    for options in (QuantizeConfig(), QuantizeConfig(exclude_op_types=["Conv"])):
        needed = qdq_tensors(model, options)
        assert model.SerializeToString() == before  # planned on the model itself, never changed
        sets.append(set(needed))
        assert 0 < len(needed) < len(every)
        full = quantize_model(model, amax, options).model
        subset = quantize_model(model, {n: amax[n] for n in needed}, options).model
        assert subset.SerializeToString() == full.SerializeToString()
    assert sets[1] < sets[0]  # exclusions leave tensors unobserved
    named = onnx.ModelProto.FromString(before)  # every node named: planned without a copy
    name_nodes(named)
    named_bytes = named.SerializeToString()
    assert set(qdq_tensors(named, QuantizeConfig())) == sets[0]
    assert named.SerializeToString() == named_bytes


def test_build_scope_follows_what_is_built(ocr_classifier, tmp_path):
    model = model_io.load_model(ocr_classifier)
    config = Config()
    cache = tmp_path / "m.cache"
    assert with_tensor_scope(config, model, cache).calibration.tensors == "qdq"
    implicit = dataclasses.replace(config, build=dataclasses.replace(config.build, implicit=True))
    assert with_tensor_scope(implicit, model, cache).calibration.tensors == "all"
    explicit = dataclasses.replace(config, calibration=dataclasses.replace(config.calibration, tensors="quantizable"))
    assert with_tensor_scope(explicit, model, cache).calibration.tensors == "quantizable"
    # A cache that already covers every activation (from `trtq calibrate`) serves a Q/DQ build as well.
    every = activation_tensors(model, "all")
    fp = model_io.fingerprint(model)
    table = CalibrationTable(amax=dict.fromkeys(every, 1.0), algorithm="minmax", provenance=Provenance(
        model_graph_sha256=fp.graph, model_weights_sha256=fp.weights, tensor_names_sha256=names_sha256(every),
        algorithm="minmax", num_samples=1))
    write_cache(table, cache)
    assert with_tensor_scope(config, model, cache).calibration.tensors == "all"
