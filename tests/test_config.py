"""Config: defaults < YAML/presets (in order) < flags; clear errors for bad keys and values."""

from __future__ import annotations

import pytest

from trtq import config as cfg
from trtq.errors import EXIT_USAGE, ConfigError


def test_defaults_are_sane():
    c = cfg.Config()
    assert c.calibration.method == "auto"
    assert c.calibration.num_bins == 2048
    assert c.data.batch_size == 8
    assert c.data.allow_random_data is False


def test_preset_then_file_then_flags(tmp_path):
    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text("preprocess:\n  height: 320\ncalibration:\n  method: percentile\n")
    c = cfg.load_config(["imagenet", str(yaml_file)], {"method": "mse", "batch_size": None})
    assert c.preprocess.mean == [0.485, 0.456, 0.406]  # from the preset
    assert c.preprocess.height == 320  # the file overrides the preset
    assert c.preprocess.width == 224  # untouched preset value
    assert c.calibration.method == "mse"  # the flag overrides the file
    assert c.data.batch_size == 8  # None means 'flag not given'


def test_every_bundled_preset_loads():
    names = cfg.preset_names()
    assert {"imagenet", "tf", "letterbox", "entropy", "minmax", "percentile", "mse"} <= set(names)
    for name in names:
        cfg.load_config([name])


def test_unknown_key_suggests_nearest(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("calibration:\n  num_binz: 1024\n")
    with pytest.raises(ConfigError) as err:
        cfg.load_config([str(f)])
    assert "calibration.num_binz" in err.value.message
    assert "calibration.num_bins" in err.value.hint
    assert err.value.exit_code == EXIT_USAGE


def test_key_in_wrong_section_is_found(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("data:\n  num_bins: 1024\n")
    with pytest.raises(ConfigError) as err:
        cfg.load_config([str(f)])
    assert "calibration.num_bins" in err.value.hint


def test_unknown_section(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("calibraton:\n  method: minmax\n")
    with pytest.raises(ConfigError, match="unknown config section 'calibraton'") as err:
        cfg.load_config([str(f)])
    assert "calibration" in err.value.hint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data:\n  batch_size: eight\n", "'data.batch_size' must be an integer"),
        ("data:\n  batch_size: true\n", "'data.batch_size' must be an integer"),
        ("calibration:\n  percentile: high\n", "'calibration.percentile' must be a number"),
        ("data:\n  skip_bad_files: 1\n", "'data.skip_bad_files' must be true or false"),
        ("preprocess:\n  mean: 5\n", "'preprocess.mean' must be a list"),
        ("calibration:\n  method: entropyy\n", "invalid value 'entropyy'"),
        ("calibration: minmax\n", "must be a mapping"),
        ("- a\n- b\n", "must be a mapping of sections"),
    ],
)
def test_wrong_types_name_the_key(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        cfg.load_config([str(f)])


def test_invalid_choice_suggests_valid_value(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("calibration:\n  method: entropyy\n")
    with pytest.raises(ConfigError) as err:
        cfg.load_config([str(f)])
    assert "entropy" in err.value.hint


def test_malformed_yaml_names_the_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("data:\n  batch_size: 4\n  calib: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d"):
        cfg.load_config([str(f)])


def test_missing_file_and_unknown_preset():
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load_config(["/no/such/file.yaml"])
    with pytest.raises(ConfigError) as err:
        cfg.load_config(["imagenett"])
    assert "imagenet" in err.value.hint


def test_comma_separated_list_override():
    c = cfg.load_config([], {"exclude_op_types": "Softmax, Resize", "mean": "0.5,0.5,0.5"})
    assert c.quantize.exclude_op_types == ["Softmax", "Resize"]
    assert c.preprocess.mean == [0.5, 0.5, 0.5]


def test_yaml_round_trip():
    c = cfg.load_config(["imagenet"], {"method": "percentile", "percentile": 99.9})
    import yaml

    again = cfg.apply_mapping(cfg.Config(), yaml.safe_load(cfg.to_yaml(c)))
    assert again == c
