"""`--ray` on a real local Ray instance (2 CPUs): the same cache, ranking and chosen layers as one process.

One instance serves the module (started once, shut down at the end). Marked `ray`: CI runs these
(ray is in the dev extra); skip them locally with -m 'not slow and not ray'.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.accuracy_models import image_batches, outlier_classifier
from tests.image_models import conv_classifier, image_args, save
from tests.qdq.helpers import activation_amax
from trtq.accuracy.evaluation import Reference
from trtq.accuracy.fallback import fallback
from trtq.accuracy.gates import Gates
from trtq.accuracy.sensitivity import layer_sensitivity
from trtq.cli import main

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """A local Ray instance of 2 CPUs whose workers can be made to die (tests/cluster/faults.py)."""
    import ray  # in the dev extra: a missing Ray fails here rather than skipping the tests unseen

    from trtq.cluster.ray_runtime import ray_instance
    from trtq.config import ClusterConfig

    faults = tmp_path_factory.mktemp("faults")
    os.environ["TRTQ_TEST_FAULTS"] = str(faults)
    runtime_env = {"env_vars": {"PYTHONPATH": str(ROOT), "TRTQ_TEST_FAULTS": str(faults)},
                   "worker_process_setup_hook": "tests.cluster.faults.install"}
    for attempt in range(2):  # Ray gives a node 30 s to register: a loaded machine can miss that once
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     runtime_env=runtime_env)
            break
        except Exception:
            ray.shutdown()
            if attempt:
                raise
    try:
        with ray_instance(ClusterConfig(ray="local")) as sized:  # joins the instance started above
            yield sized, faults
    finally:
        ray.shutdown()
        os.environ.pop("TRTQ_TEST_FAULTS", None)


def _calibrate(model: Path, photos: Path, cache: Path, *extra: str):
    args = ["-q", "calibrate", str(model), "--calib", str(photos), *image_args(), "--batch-size", "2",
            "--method", "entropy", "--cache", str(cache), *extra]
    return CliRunner().invoke(main, args)


@pytest.fixture()
def calibration(tmp_path, photo_dir):
    """(model, photos, the serial run's cache bytes, its sidecar bytes)."""
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    result = _calibrate(model, photo_dir, tmp_path / "serial.cache")
    assert result.exit_code == 0, result.output
    return model, photo_dir, (tmp_path / "serial.cache").read_bytes(), (tmp_path / "serial.cache.json").read_bytes()


def test_cache_on_ray_is_byte_identical_to_one_process(workers, calibration, tmp_path):
    model, photos, cache, sidecar = calibration
    count, _ = workers
    assert count.count == 2 and count.threads == 1
    result = _calibrate(model, photos, tmp_path / "ray.cache", "--ray")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ray.cache").read_bytes() == cache
    assert (tmp_path / "ray.cache.json").read_bytes() == sidecar


def test_a_worker_killed_mid_run_is_replaced_and_the_cache_is_unchanged(workers, calibration, tmp_path):
    model, photos, cache, _ = calibration
    faults = workers[1]
    (faults / "armed").touch()
    result = _calibrate(model, photos, tmp_path / "ray.cache", "--ray")
    assert (faults / "fired").exists() and not (faults / "armed").exists(), "no worker died"
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ray.cache").read_bytes() == cache


def test_a_bad_file_in_a_shard_fails_with_the_local_error_and_writes_nothing(workers, tmp_path, photo_dir):
    model = save(conv_classifier(), tmp_path / "conv.onnx")
    shutil.copy(next(photo_dir.glob("*")), photo_dir / "zz_broken.jpg")
    (photo_dir / "zz_broken.jpg").write_bytes(b"not a jpeg")
    local = _calibrate(model, photo_dir, tmp_path / "serial.cache")
    on_ray = _calibrate(model, photo_dir, tmp_path / "ray.cache", "--ray")
    assert local.exit_code == on_ray.exit_code == 4
    assert "zz_broken.jpg" in local.output
    assert on_ray.output == local.output
    assert not list(tmp_path.glob("ray.cache*"))


def test_ctrl_c_cancels_the_shards_and_writes_nothing(workers, calibration, tmp_path, monkeypatch):
    from trtq.cluster import calibration as shard_module

    def interrupted(self, position, shard):
        raise KeyboardInterrupt

    monkeypatch.setattr(shard_module._Merged, "add", interrupted)
    result = _calibrate(calibration[0], calibration[1], tmp_path / "ray.cache", "--ray")
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output
    assert not list(tmp_path.glob("ray.cache*"))


@pytest.fixture(scope="module")
def search():
    model = outlier_classifier()
    amax = activation_amax(model, image_batches(0, (3, 8, 8), 16, 2))
    return model, amax, Reference(model, image_batches(1, (3, 8, 8), 16, 4))


def test_sensitivity_ranking_on_ray_is_the_serial_ranking(workers, search):
    from trtq.cluster.tasks import RayMap

    model, amax, reference = search
    serial = layer_sensitivity(model, amax, None, measure_top=None, reference=reference)
    on_ray = layer_sensitivity(model, amax, None, measure_top=None, reference=reference, tasks=RayMap(workers[0]))
    assert [s.node for s in on_ray] == [s.node for s in serial]
    assert on_ray == serial  # the metrics too
    assert serial[0].node == "conv2"


def test_fallback_on_ray_excludes_the_same_layers(workers, search):
    from trtq.cluster.tasks import RayMap

    model, amax, reference = search
    gates = Gates(min_sqnr=40.0)
    serial = fallback(model, amax, None, None, gates, max_excluded=3, reference=reference)
    on_ray = fallback(model, amax, None, None, gates, max_excluded=3, reference=reference, tasks=RayMap(workers[0]))
    assert serial.excluded and [n for n, _ in on_ray.excluded] == [n for n, _ in serial.excluded]
    assert on_ray.steps == serial.steps
