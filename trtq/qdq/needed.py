"""The activations a Q/DQ model needs ranges for: the only ones `trtq build` must observe.

TensorRT 10's implicit INT8 reads a range for every activation from its cache,
so that needs them all; a Q/DQ model needs ranges only where the placement puts
Q/DQ pairs (about a quarter of the activations of PP-OCRv4's detector: 75 of
331), and observing the rest costs calibration time for nothing. The placement
is planned here with a placeholder range for every activation: which tensors it
quantizes depends on the graph and the exclusions, not on the range values.
"""

from __future__ import annotations

import copy

import onnx

from trtq.config import QuantizeConfig
from trtq.onnx_model.tensors import activation_tensors
from trtq.qdq.graph import GraphIndex, name_nodes
from trtq.qdq.placement import Exclusions, place


def qdq_tensors(model: onnx.ModelProto, options: QuantizeConfig) -> list[str]:
    """Activations that get Q/DQ pairs in the Q/DQ model of `model` with `options`, in graph order.

    Raises:
        ConfigError: an exclusion is invalid (bad regex, unknown node name).
    """
    candidates = activation_tensors(model, "all")
    # The placement only reads the model; a copy is needed only to name unnamed nodes (and copying
    # every weight cost MiniLM's calibration 0.15 s).
    work = model if all(n.name for n in model.graph.node) else copy.deepcopy(model)
    name_nodes(work)
    exclusions = Exclusions.from_options(options, work)
    placement = place(GraphIndex.build(work), dict.fromkeys(candidates, 1.0), exclusions)
    return [name for name in candidates if name in placement.activations]
