"""trtq.calibrators: observers, range algorithms and TensorRT calibrator subclasses.

The bottom of the house: it imports numpy (and TensorRT lazily), never the
modules of trtq above it.
"""
