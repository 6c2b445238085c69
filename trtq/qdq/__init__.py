"""Explicit quantization: Q/DQ placement, the quantizer and the Q/DQ linter."""
