"""make_readers: where samples come from, the eval split, caps, and the errors for missing data."""

from __future__ import annotations

import numpy as np
import pytest

from tests import assets
from tests.data.helpers import config, spec, two_input_model
from trtq.data import make_readers, split_indices
from trtq.errors import EXIT_BAD_INPUT, EXIT_USAGE, ConfigError, DataError

DYNAMIC = [spec(("N", 3, 32, 32))]
N_PHOTOS = len(assets.COLOR_PHOTOS)


def test_no_data_without_flag_is_refused():
    # A missing --calib is a usage error (exit 2), not bad data (issue 15 changed this from exit 4).
    with pytest.raises(ConfigError) as err:
        make_readers(config(), DYNAMIC)
    assert err.value.message == "no calibration data given"
    assert "--calib" in err.value.hint and "--allow-random-data" in err.value.hint
    assert err.value.exit_code == EXIT_USAGE


def test_missing_path(tmp_path):
    with pytest.raises(DataError) as err:
        make_readers(config({"calib": str(tmp_path / "nope")}), DYNAMIC)
    assert err.value.message == f"data path {tmp_path / 'nope'} does not exist"
    assert "--calib" in err.value.hint and "--allow-random-data" in err.value.hint


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as err:
        make_readers(config({"calib": str(tmp_path)}), DYNAMIC)
    assert err.value.message.startswith(f"data folder {tmp_path}/ holds no images (jpg/jpeg/png")
    assert "--allow-random-data" in err.value.hint and err.value.exit_code == EXIT_BAD_INPUT


def test_unsupported_file_and_mixed_folder(tmp_path):
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(DataError, match=r"data file .*data.csv is not a supported kind \(.csv\)"):
        make_readers(config({"calib": str(tmp_path / "data.csv")}), DYNAMIC)
    np.save(tmp_path / "a.npy", np.zeros((3, 32, 32), np.float32))
    (tmp_path / "b.png").write_bytes((assets.photo("coffee.png")).read_bytes())
    with pytest.raises(DataError, match="mixes NumPy files"):
        make_readers(config({"calib": str(tmp_path)}), DYNAMIC)


def test_random_data_only_with_flag_and_recorded():
    plan = make_readers(config({"allow_random_data": True, "random_samples": 6, "batch_size": 4}), DYNAMIC)
    assert any("random samples" in w for w in plan.warnings)
    assert "random" in plan.description and plan.eval is None
    assert [b.feeds["x"].shape for b in plan.calib] == [(4, 3, 32, 32), (2, 3, 32, 32)]


def test_eval_fraction_split_and_max_samples(photo_dir):
    changes = {"calib": str(photo_dir), "batch_size": 4, "max_samples": 5}
    plan = make_readers(config(changes, {"resize": "exact"}), DYNAMIC, default_eval_fraction=0.2)
    all_keys = sorted(assets.COLOR_PHOTOS)
    calib, held = split_indices(all_keys, 0.2, 0)
    assert plan.eval.keys == [all_keys[i] for i in held] and len(held) == 3  # round(14 * 0.2) = 3
    assert plan.calib.keys == [all_keys[i] for i in calib][:5]  # the first 5 of the calibration split
    assert not set(plan.calib.keys) & set(plan.eval.keys)
    assert [len(b.keys) for b in plan.eval] == [3]
    assert "evaluation: 3 held out" in plan.description
    explicit = make_readers(config({**changes, "eval_fraction": 0.0}), DYNAMIC, default_eval_fraction=0.2)
    assert explicit.eval is None


def test_separate_eval_source(photo_dir, tmp_path):
    np.save(tmp_path / "eval.npy", np.zeros((4, 3, 32, 32), np.float32))
    plan = make_readers(config({"calib": str(photo_dir), "eval": str(tmp_path / "eval.npy")}, {"resize": "exact"}),
                        DYNAMIC, default_eval_fraction=0.2)
    assert plan.calib.num_samples == N_PHOTOS and plan.eval.keys == [f"eval.npy:{i}" for i in range(4)]
    with pytest.raises(ConfigError) as err:
        make_readers(config({"calib": str(photo_dir), "eval": str(tmp_path), "eval_fraction": 0.1}), DYNAMIC)
    assert "both --eval" in err.value.message and err.value.exit_code == EXIT_USAGE


def test_fixed_model_batch_overrides_batch_size(photo_dir):
    plan = make_readers(config({"calib": str(photo_dir), "batch_size": 8}, {"resize": "exact"}),
                        [spec((2, 3, 32, 32))])
    assert plan.calib.batch_size == 2
    assert any("fixed at 2" in w for w in plan.warnings)
    assert all(len(b.keys) == 2 for b in plan.calib) and plan.calib.num_samples == N_PHOTOS  # 14 = 7 x 2


def test_images_for_multi_input_model_need_npz(photo_dir, tmp_path):
    inputs = two_input_model(tmp_path)
    with pytest.raises(ConfigError, match=r"the model has 2 inputs \(image, scale\)"):
        make_readers(config({"calib": str(photo_dir)}), inputs)
