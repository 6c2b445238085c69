"""trtq.pipeline: the commands as named stages, and the only layer that reads the whole Config.

    calibrate   model + data -> calibration cache (+ sidecar, statistics files)
    quantize    model + cache -> Q/DQ ONNX model (the `trtq quantize` command)
    quantize_stage  build's Q/DQ step: bias correction, sensitivity, fallback
    engine_stage    build's TensorRT engine step (skipped without TensorRT and a GPU)
    build       all of the above plus the accuracy report
    method_compare  `calibrate --compare-methods`
    inspect, doctor the read-only commands

Each stage hands the layers below (calibration, accuracy, qdq, engine, report) only the
config section or the arguments they need.
"""
