"""Weight files shared by the ONNX Runtime sessions of in-memory models over protobuf's 2 GiB limit.

Such a model cannot be handed to ONNX Runtime as bytes, and writing it whole for every session would
copy its weights once per session: the accuracy tools (fallback, sensitivity, bias correction, learned
rounding) open dozens of sessions of models that share most of their weights (the FP32 model, its probe
model, each candidate Q/DQ model, each pruned pass). Here each large initializer is written once to a
process-wide temporary folder, in a file named by the SHA-256 of its type, shape and bytes; a session
gets the small skeleton as bytes and the folder (trtq.runtime.session.EXTERNAL_FOLDER_ENTRY). A tensor
already there is only hashed (about 1 GB/s), not written again, so the files are the distinct tensors
seen. The folder holds at most twice the bytes of the latest model (least recently used files go first;
ONNX Runtime has read or mapped a session's files when the session exists, so removing them later is
safe) and is removed when the process exits.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import onnx
from onnx import numpy_helper

from trtq.errors import ModelError, OutputError
from trtq.onnx_model import external_data, large_models

_HINT = "set TMPDIR to a writable folder with room for the model's weights"
# Kinds of values that cannot live in an external file (strings) stay in the skeleton.
_INLINE_ONLY = frozenset({onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED})


class WeightFiles:
    """A temporary folder of tensor files named by content (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folder: Path | None = None
        self._owner = 0  # pid that made the folder: a forked child makes its own and leaves this one alone
        self._sizes: OrderedDict[str, int] = OrderedDict()  # file name -> bytes, least recently used first
        self.written = 0  # bytes written so far (tests and logs)

    @property
    def folder(self) -> Path:
        """The folder (made on first use, removed at exit)."""
        if self._folder is None or self._owner != os.getpid():
            try:
                self._folder = Path(tempfile.mkdtemp(prefix="trtq-weights-"))
            except OSError as exc:
                raise OutputError(f"cannot make a temporary folder for the weights of a model over 2 GiB "
                                  f"({exc.strerror or exc})", hint=_HINT) from None
            self._owner = os.getpid()
            self._sizes.clear()
            atexit.register(_remove, self._folder, self._owner)
        return self._folder

    def skeleton(self, model: onnx.ModelProto, weights_dir: Path | None = None) -> onnx.ModelProto:
        """A copy of `model` whose large initializers are files of this folder (`model` is unchanged).

        Initializers of at least large_models.EXTERNAL_THRESHOLD bytes go to files; if the copy is
        still over the limit (only when the limit is lowered, as tests do), every initializer does.
        Initializers left in external files under `weights_dir` are read from there and stored too
        (ONNX Runtime reads external data from one folder only).

        Raises:
            ModelError: the graph is over the limit without its initializers (e.g. huge Constant nodes).
            OutputError: a file cannot be written (a full or read-only temporary folder).
        """
        with self._lock:
            for threshold in (large_models.EXTERNAL_THRESHOLD, 1):
                light, used = self._light(model, threshold, weights_dir)
                if not large_models.exceeds_protobuf_limit(light):
                    self._trim(used)
                    return light
        raise ModelError(f"model '{model.graph.name}' is over 2 GiB even without its initializers (tensors in "
                         "node attributes, such as Constant nodes), which ONNX Runtime cannot load from memory",
                         hint="turn its large Constant nodes into initializers (e.g. with onnxslim), then run again")

    def _light(self, model: onnx.ModelProto, threshold: int, weights_dir: Path | None
               ) -> tuple[onnx.ModelProto, set[str]]:
        light = onnx.ModelProto()
        large_models.copy_fields(model, light, skip="graph")
        large_models.copy_fields(model.graph, light.graph, skip="initializer")
        used: set[str] = set()
        for tensor in model.graph.initializer:
            external = external_data.is_external(tensor)
            if external and weights_dir is not None:
                name, length = self._store(tensor, external_data.read_tensor(tensor, weights_dir).tobytes())
            elif external or tensor.data_type in _INLINE_ONLY or large_models.tensor_bytes(tensor) < threshold:
                light.graph.initializer.add().CopyFrom(tensor)
                continue
            else:
                name, length = self._store(tensor)
            used.add(name)
            light.graph.initializer.append(large_models.external_reference(tensor, name, 0, length))
        return light, used

    def _store(self, tensor: onnx.TensorProto, payload: bytes | None = None) -> tuple[str, int]:
        """The file holding `tensor`'s bytes (or `payload`), written now if no file holds them yet, and their length."""
        if payload is None:
            payload = tensor.raw_data or numpy_helper.to_array(tensor).tobytes()
        digest = hashlib.sha256(f"{tensor.data_type}|{list(tensor.dims)}|".encode())
        digest.update(payload)
        name = f"{digest.hexdigest()}.bin"
        folder = self.folder
        if name in self._sizes:
            self._sizes.move_to_end(name)
            return name, len(payload)
        partial = folder / f".{name}.partial"
        try:
            partial.write_bytes(payload)
            os.replace(partial, folder / name)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise OutputError(f"cannot write the weights of a model over 2 GiB to {folder} for ONNX Runtime "
                              f"({exc.strerror or exc})",
                              hint=_HINT) from None
        self._sizes[name] = len(payload)
        self.written += len(payload)
        return name, len(payload)

    def _trim(self, used: set[str]) -> None:
        """Remove least recently used files not in `used` while the folder holds over twice their bytes."""
        budget = 2 * sum(self._sizes[name] for name in used)
        total = sum(self._sizes.values())
        for name in [n for n in self._sizes if n not in used]:
            if total <= budget:
                break
            total -= self._sizes.pop(name)
            (self.folder / name).unlink(missing_ok=True)


def _remove(folder: Path, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


# The sessions of this process share one folder (trtq.runtime.session, trtq.runtime.runners).
shared = WeightFiles()
