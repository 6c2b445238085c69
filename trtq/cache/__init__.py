"""Calibration caches: TensorRT text format, JSON, ONNX Runtime tables, provenance, validation."""
