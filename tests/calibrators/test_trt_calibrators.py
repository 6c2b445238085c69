"""TensorRT calibrator subclasses: feeding logic on a fake tensorrt module and fake cuda-python."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.fake_trt import FakeCudart, fake_trt
from trtq.calibrators.trt_calibrators import make_trt_calibrator
from trtq.errors import ConfigError, DataError, MissingDependencyError, TrtqError


def _calibrator(batches, *, kind="entropy", names=("x",), read=lambda: None, written=None, cudart=None,
                trt=None, shapes=None):
    written = written if written is not None else []
    return make_trt_calibrator(kind, batches, read, written.append, list(names), shapes=shapes,
                               trt_module=trt or fake_trt("10.16.1.11"), cudart_module=cudart or FakeCudart())


def _device_array(cudart: FakeCudart, pointer: int, like: np.ndarray) -> np.ndarray:
    return np.frombuffer(bytes(cudart.memory[pointer][: like.nbytes]), dtype=like.dtype).reshape(like.shape)


def test_subclasses_the_requested_tensorrt_base_and_calls_its_init():
    trt = fake_trt("10.16.1.11")
    entropy = _calibrator([], trt=trt)
    minmax = _calibrator([], kind="minmax", trt=trt)
    assert isinstance(entropy, trt.IInt8EntropyCalibrator2)
    assert isinstance(minmax, trt.IInt8MinMaxCalibrator)
    assert entropy.base_init_called and minmax.base_init_called
    assert entropy.kind == "entropy" and minmax.kind == "minmax"
    assert entropy.get_batch_size() == 1


def test_get_batch_copies_each_batch_to_the_device_until_exhausted():
    rng = np.random.default_rng(0)
    batches = [{"x": rng.standard_normal((2, 3, 4, 4))} for _ in range(3)]  # float64 on the host
    cudart = FakeCudart()
    calib = _calibrator(iter(batches), cudart=cudart)
    for batch in batches:
        (pointer,) = calib.get_batch(["x"])
        np.testing.assert_array_equal(_device_array(cudart, pointer, batch["x"].astype(np.float32)),
                                      batch["x"].astype(np.float32))
    assert calib.get_batch(["x"]) is None
    assert calib.get_batch(["x"]) is None  # stays exhausted
    assert calib.batches_served == 3
    assert cudart.mallocs == 1  # same-size batches reuse one buffer


def test_multi_input_pointers_follow_the_order_tensorrt_asks_for():
    image = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    scale = np.array([[0.5, 2.0]], dtype=np.float32)
    ids = np.array([[3, 1, 4]], dtype=np.int64)  # index input: kept as integers
    cudart = FakeCudart()
    calib = _calibrator([{"image": image, "scale": scale, "ids": ids}], names=("image", "scale", "ids"), cudart=cudart)
    pointers = calib.get_batch(["scale", "ids", "image"])
    assert len(set(pointers)) == 3
    np.testing.assert_array_equal(_device_array(cudart, pointers[0], scale), scale)
    np.testing.assert_array_equal(_device_array(cudart, pointers[1], ids), ids)
    np.testing.assert_array_equal(_device_array(cudart, pointers[2], image), image)


def test_missing_input_ends_calibration_with_a_clear_error():
    calib = _calibrator([{"image": np.zeros((1, 3), np.float32)}], names=("image", "mask"))
    assert calib.get_batch(["image", "mask"]) is None
    assert isinstance(calib.error, DataError)
    assert "'mask'" in calib.error.message and "image" in calib.error.message
    assert calib.get_batch(["image", "mask"]) is None  # no retry after a failure
    assert calib.batches_served == 0


def test_buffers_grow_only_for_bigger_batches_and_are_freed():
    cudart = FakeCudart()
    batches = [{"x": np.ones((4, 8), np.float32)}, {"x": np.ones((2, 8), np.float32)},
               {"x": np.full((8, 8), 3.0, np.float32)}]
    with _calibrator(batches, cudart=cudart) as calib:
        first = calib.get_batch(["x"])[0]
        assert calib.get_batch(["x"])[0] == first  # smaller batch fits the buffer
        bigger = calib.get_batch(["x"])[0]
        assert cudart.mallocs == 2 and bigger != first
        assert first not in cudart.memory  # the outgrown buffer was freed
        np.testing.assert_array_equal(_device_array(cudart, bigger, batches[2]["x"]), batches[2]["x"])
    assert cudart.memory == {}
    calib.free()  # a second free is harmless


def test_failed_device_allocation_is_reported():
    calib = _calibrator([{"x": np.ones((1, 2), np.float32)}], cudart=FakeCudart(fail_malloc=True))
    assert calib.get_batch(["x"]) is None
    assert isinstance(calib.error, TrtqError) and "cudaMalloc" in calib.error.message


def test_batches_with_other_shapes_than_opt_are_skipped():
    batches = [{"x": np.ones((8, 3), np.float32)}, {"x": np.ones((5, 3), np.float32)},
               {"x": np.ones((8, 3), np.float32)}]
    calib = _calibrator(batches, shapes={"x": (8, 3)})
    assert calib.get_batch(["x"]) is not None
    assert calib.get_batch(["x"]) is not None
    assert calib.get_batch(["x"]) is None
    assert (calib.batches_served, calib.batches_skipped) == (2, 1)


def test_cache_callbacks_pass_bytes_through():
    written: list[bytes] = []
    calib = _calibrator([], read=lambda: b"TRT-101601-EntropyCalibration2\nx: 3c010204\n", written=written)
    assert calib.read_calibration_cache() == b"TRT-101601-EntropyCalibration2\nx: 3c010204\n"
    assert calib.cache_read
    calib.write_calibration_cache(memoryview(b"TRT-101601-EntropyCalibration2\ny: 3c800000\n"))
    assert written == [b"TRT-101601-EntropyCalibration2\ny: 3c800000\n"]
    assert isinstance(written[0], bytes) and calib.cache_written


def test_no_cache_means_none():
    calib = _calibrator([], read=lambda: None)
    assert calib.read_calibration_cache() is None
    assert not calib.cache_read


def test_cache_reader_errors_are_kept_for_the_caller():
    def broken() -> bytes:
        raise OSError("disk gone")

    calib = _calibrator([], read=broken)
    assert calib.read_calibration_cache() is None
    assert isinstance(calib.error, OSError)


def test_tensorrt_11_has_no_implicit_calibration():
    with pytest.raises(MissingDependencyError) as info:
        _calibrator([], trt=fake_trt("11.4.0.106"))
    assert "TensorRT 11" in info.value.message and "11.4.0.106" in info.value.message
    assert "Q/DQ" in info.value.hint


def test_without_tensorrt_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail, installed or not
    with pytest.raises(MissingDependencyError) as info:
        make_trt_calibrator("entropy", [], lambda: None, lambda data: None, ["x"])
    assert info.value.hint == "pip install 'trtq[tensorrt]'"


def test_bad_arguments():
    with pytest.raises(ConfigError, match="kind 'kl'"):
        _calibrator([], kind="kl")
    with pytest.raises(ConfigError, match="input names"):
        _calibrator([], names=())
