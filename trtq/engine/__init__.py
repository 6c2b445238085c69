"""TensorRT engines: optimization profiles, the builder, the sidecar, a runner, device checks.

Only profiles, version parsing and the sidecar run without TensorRT; everything
that needs TensorRT or CUDA imports it lazily, so `import trtq.engine` always works.

    from trtq.engine import build_engine, derive_profiles, gpu_available
    ok, why = gpu_available()
    ranges = derive_profiles(graph_inputs(model), observed_shapes, opt_shapes=config.build.opt_shapes)
    info = build_engine("model.qdq.onnx", "model.engine", profiles=ranges)
"""

from trtq.engine.builder import MODES, build_engine
from trtq.engine.device import DeviceInfo, device_info, gpu_available
from trtq.engine.profiles import ShapeRange, derive_profiles, opt_shape, parse_shapes, record_shapes
from trtq.engine.runner import trt_runner
from trtq.engine.sidecar import EngineInfo, sidecar_dict, sidecar_path, write_sidecar
from trtq.engine.version import has_implicit_quantization, parse_version, trt_version

__all__ = [
    "MODES",
    "DeviceInfo",
    "EngineInfo",
    "ShapeRange",
    "build_engine",
    "derive_profiles",
    "device_info",
    "gpu_available",
    "has_implicit_quantization",
    "opt_shape",
    "parse_shapes",
    "parse_version",
    "record_shapes",
    "sidecar_dict",
    "sidecar_path",
    "trt_runner",
    "trt_version",
    "write_sidecar",
]
