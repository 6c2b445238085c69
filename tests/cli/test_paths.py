"""Path options and arguments (trtq.cli.paths): a bad path is one `error:` line with the documented exit
code (README "Exit codes": 4 bad model, data or cache; 5 an output cannot be written, a file or folder
in the way), found before any work, and --print-config still reads no file."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.image_models import conv_classifier, image_args, save
from trtq.cli import main
from trtq.errors import EXIT_BAD_INPUT, EXIT_OUTPUT


@pytest.fixture()
def work(tmp_path):
    """A model, a folder of images, a plain file and a folder."""
    from PIL import Image

    model = save(conv_classifier(), tmp_path / "conv.onnx")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (40, 40), (i * 40, 80, 160)).save(images / f"{i}.png")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    return tmp_path, model, images


def _run(*args):
    result = CliRunner().invoke(main, ["-q", *map(str, args)])
    lines = result.output.strip().splitlines()
    return result.exit_code, lines


def _one_error(result, code, text):
    exit_code, lines = result
    assert exit_code == code, lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], lines


@pytest.mark.parametrize("command", [["build"], ["calibrate"], ["quantize"], ["inspect"], ["lint"], ["optimize"],
                                     ["prune"], ["bench"]])
def test_a_folder_given_as_the_model_is_bad_input_in_one_line(work, command):
    tmp, _, _ = work
    _one_error(_run(*command, tmp / "adir"), EXIT_BAD_INPUT,
               f"model file {tmp / 'adir'} is a folder, not a file; check the path to the .onnx")


def test_compare_names_which_model_is_wrong(work):
    tmp, model, images = work
    _one_error(_run("compare", model, tmp / "adir", "--data", images), EXIT_BAD_INPUT,
               f"model file {tmp / 'adir'} is a folder, not a file; check the path to the Q/DQ .onnx model")


@pytest.mark.parametrize(("command", "flag"), [("compare", "-o"), ("calibrate", "-o"), ("build", "-o")])
def test_an_output_folder_that_is_a_file_cannot_be_written(work, command, flag):
    tmp, model, images = work
    args = ["compare", model, model, "--data", images] if command == "compare" else [command, model, "--calib",
                                                                                      images]
    _one_error(_run(*args, *image_args(), flag, tmp / "afile"), EXIT_OUTPUT, f"{tmp / 'afile'} is a file, not a folder")


@pytest.mark.parametrize("flag", ["--save-stats", "--timing-cache", "--cache"])
def test_an_output_file_that_is_a_folder_cannot_be_written(work, flag):
    tmp, model, images = work
    _one_error(_run("build", model, "--calib", images, *image_args(), "-o", tmp / "out", flag, tmp / "adir"),
               EXIT_OUTPUT, f"cannot write {flag} {tmp / 'adir'}: it is a folder; give a file name")
    assert not (tmp / "out").exists()  # found before any work


def test_quantize_output_and_cache_commands_check_their_files(work):
    tmp, model, _ = work
    _one_error(_run("quantize", model, "--cache", tmp / "afile", "-o", tmp / "adir"), EXIT_OUTPUT,
               f"cannot write -o {tmp / 'adir'}: it is a folder")
    _one_error(_run("cache", "show", tmp / "adir"), EXIT_BAD_INPUT,
               f"calibration cache {tmp / 'adir'} is a folder, not a file")
    _one_error(_run("cache", "convert", tmp / "afile", tmp / "adir"), EXIT_OUTPUT, "it is a folder")


def test_missing_inputs_are_found_before_any_output_is_written(work):
    tmp, model, images = work
    out = tmp / "out"
    _one_error(_run("build", model, "--calib", images, *image_args(), "-o", out, "--labels", tmp / "nope.txt"),
               EXIT_BAD_INPUT, f"labels file {tmp / 'nope.txt'} does not exist")
    _one_error(_run("build", model, "--calib", images, *image_args(), "-o", out, "--eval", tmp / "nope"),
               EXIT_BAD_INPUT, f"data path {tmp / 'nope'} does not exist; give --eval an image folder")
    _one_error(_run("calibrate", model, "--load-stats", f"{tmp / 'afile'},{tmp / 'nope.npz'}"), EXIT_BAD_INPUT,
               f"statistics file {tmp / 'nope.npz'} does not exist")
    assert not out.exists()


def test_labels_folders_is_a_word_not_a_path(work):
    tmp, model, images = work
    code, lines = _run("build", model, "--calib", images, *image_args(), "-o", tmp / "out", "--labels", "folders",
                       "--eval-fraction", "0")
    assert code == 0, lines


def test_print_config_reads_no_path(work):
    tmp, _, _ = work
    code, lines = _run("build", tmp / "adir", "--calib", tmp / "nope", "--labels", tmp / "nope.txt",
                       "--save-stats", tmp / "adir", "--print-config")
    assert code == 0 and f"  calib: {tmp / 'nope'}" in lines
