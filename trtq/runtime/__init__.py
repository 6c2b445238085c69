"""trtq.runtime: running models. ONNX Runtime sessions in one place (providers, the IR clamp, models over
2 GiB, one load error), the session options Q/DQ models need, the Polygraphy runners of a comparison, and
the Runner protocol the accuracy code runs candidates through (trtq.engine.runner is the TensorRT one).
"""
