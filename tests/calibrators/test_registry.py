"""A range algorithm registered from user code works end to end: config, CLI (entry point), calibration,
cache header and cache reuse that notices a changed parameter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.image_models import conv_classifier, save
from trtq.cache import read_cache
from trtq.calibration.stats_files import load_stats
from trtq.calibrators import TensorStats, algorithms, auto_candidates, choose_method, register_algorithm
from trtq.calibrators.registry import algorithm, available_methods, unregister_algorithm
from trtq.config import CalibrationConfig, Config, DataConfig, apply_mapping
from trtq.errors import ConfigError
from trtq.onnx_model.model import fingerprint, load_model
from trtq.pipeline.calibrate import calibrate


def half_percentile(stats: TensorStats, *, percentile: float = 99.99, factor: float = 0.5) -> float:
    """Half the percentile range: a deliberately different, histogram-reading method."""
    return factor * algorithms.percentile(stats, percentile=percentile)


@pytest.fixture()
def halfp():
    register_algorithm("halfp", config=("percentile",))(half_percentile)
    yield "halfp"
    unregister_algorithm("halfp")


def _config(tmp_path, **cal) -> Config:
    data = DataConfig(allow_random_data=True, random_samples=8, seed=1)
    return Config(data=data, calibration=CalibrationConfig(cache=str(tmp_path / "c.cache"), **cal))


def test_metadata_comes_from_the_signature_and_the_registration(halfp):
    info = algorithm(halfp)
    assert info.defaults == {"percentile": 99.99, "factor": 0.5}
    assert [p.type for p in info.parameters] == ["float", "float"]
    assert info.uses_bins and info.statistics == "histogram" and not info.auto_candidate
    assert halfp in available_methods() and halfp not in auto_candidates()
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm(halfp)(half_percentile)


def test_config_accepts_the_method_and_refuses_its_bad_settings(halfp, tmp_path):
    config = apply_mapping(Config(), {"calibration": {"method": halfp}})
    assert config.calibration.method == halfp
    with pytest.raises(ConfigError, match="invalid value 'halfq'") as info:
        apply_mapping(Config(), {"calibration": {"method": "halfq"}})
    assert "halfp" in info.value.hint
    model = save(conv_classifier(), tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="--percentile must be in"):
        calibrate(model, _config(tmp_path, method=halfp, percentile=120.0), show_progress=False)


def test_calibration_with_a_user_method_and_cache_reuse(halfp, tmp_path):
    model = save(conv_classifier(), tmp_path / "m.onnx")
    stats = tmp_path / "s.npz"
    first = calibrate(model, _config(tmp_path, method=halfp, percentile=99.0, save_stats=str(stats)),
                      show_progress=False)
    table = read_cache(tmp_path / "c.cache")
    assert (tmp_path / "c.cache").read_text().startswith("TRT-") and "EntropyCalibration2" in \
        (tmp_path / "c.cache").read_text().splitlines()[0]
    assert table.provenance.algorithm == halfp
    assert table.provenance.algorithm_params == {"percentile": 99.0, "factor": 0.5}
    observers = load_stats([stats], list(table.amax), fingerprint=fingerprint(load_model(model))).stats
    for name, amax in table.amax.items():
        assert amax == pytest.approx(0.5 * algorithms.percentile(observers[name], percentile=99.0), rel=1e-6)
    assert not first.reused
    assert calibrate(model, _config(tmp_path, method=halfp, percentile=99.0), show_progress=False).reused
    bins = calibrate(model, _config(tmp_path, method=halfp, percentile=99.0, num_bins=512), show_progress=False)
    assert not bins.reused and "--num-bins 2048, now 512" in bins.not_reused
    param = calibrate(model, _config(tmp_path, method=halfp, percentile=99.5, num_bins=512), show_progress=False)
    assert not param.reused and "percentile 99.0 -> 99.5" in param.not_reused


def test_an_auto_candidate_is_compared_by_auto(tmp_path):
    register_algorithm("zero", uses_bins=False, auto_candidate=True)(lambda stats: 0.0)
    try:
        assert auto_candidates()[-1] == "zero"
        stats = TensorStats()
        stats.update(np.random.default_rng(0).normal(size=10000).astype("float32"))
        choice = choose_method(stats)
        assert set(choice.errors) == {"minmax", "entropy", "percentile", "mse", "zero"}
        assert choice.method != "zero" and choice.errors["zero"] > choice.errors[choice.method]
    finally:
        unregister_algorithm("zero")


PLUGIN = '''
from trtq.calibrators import algorithms, register_algorithm

@register_algorithm("halfmax", uses_bins=False)
def halfmax(stats, *, factor: float = 0.5):
    return factor * algorithms.minmax(stats)
'''

RUN = '''
import json, sys
from click.testing import CliRunner
from trtq.cli import main
args = ["-q", "calibrate", sys.argv[1], "--allow-random-data", "--random-samples", "8", "--cache", sys.argv[2]]
out = [CliRunner().invoke(main, ["calibrate", "--help"]).output]
for extra in (["--method", "halfmax"], ["--method", "halfmax"], ["--method", "halfmax", "--num-bins", "64"]):
    result = CliRunner().invoke(main, args + extra)
    out.append([result.exit_code, result.output])
print(json.dumps(out))
'''


def test_an_entry_point_plugin_works_from_the_cli(tmp_path):
    # A package installed with a `trtq.algorithms` entry point: a module and its dist-info on the path.
    site = tmp_path / "site"
    (site / "trtq_halfmax-0.1.dist-info").mkdir(parents=True)
    (site / "trtq_halfmax.py").write_text(textwrap.dedent(PLUGIN))
    (site / "trtq_halfmax-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: trtq-halfmax\n"
                                                                   "Version: 0.1\n")
    (site / "trtq_halfmax-0.1.dist-info" / "entry_points.txt").write_text("[trtq.algorithms]\n"
                                                                         "halfmax = trtq_halfmax\n")
    model = save(conv_classifier(), tmp_path / "m.onnx")
    cache = tmp_path / "m.cache"
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", RUN, str(model), str(cache)], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, result.stderr
    help_text, first, second, third = json.loads(result.stdout.splitlines()[-1])
    assert "halfmax" in help_text
    assert first[0] == 0 and "halfmax" in first[1]
    assert read_cache(cache).provenance.algorithm == "halfmax"
    assert second[0] == 0 and "reused" in second[1]
    # uses_bins=False: another --num-bins does not make this method's cache stale.
    assert third[0] == 0 and "reused" in third[1]

