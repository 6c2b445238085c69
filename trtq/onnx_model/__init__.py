"""trtq.onnx_model: loading, saving and describing ONNX models (model: IR clamp, inputs/outputs, fingerprints,
external data) and naming their tensors (tensors: activations, constants, quantizable ops). Used by every
layer above the base.
"""
