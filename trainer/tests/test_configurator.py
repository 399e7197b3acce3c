import json
import subprocess
import sys

import pytest

from trainer.configurator import ConfigError, configure

DEFAULTS = {"steps": 10, "lr": 1e-3, "name": "run", "use_ema": False, "channels": [32, 64]}


def write_json(tmp_path, values, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(values) if not isinstance(values, str) else values)
    return str(path)


def test_defaults_are_returned_unchanged_and_not_mutated():
    config = configure(DEFAULTS, [])
    assert config == DEFAULTS and config is not DEFAULTS


def test_json_files_apply_in_order_then_overrides(tmp_path):
    first = write_json(tmp_path, {"steps": 20, "name": "a"}, "first.json")
    second = write_json(tmp_path, {"name": "b", "channels": [8, 16, 32]}, "second.json")
    config = configure(DEFAULTS, [first, second, "--steps=30"])
    assert config == {"steps": 30, "lr": 1e-3, "name": "b", "use_ema": False, "channels": [8, 16, 32]}


def test_overrides_are_parsed_by_the_type_of_the_default():
    config = configure(DEFAULTS, ["--steps=5", "--lr=2e-4", "--name=12", "--use_ema=true", "--channels=[1,2]"])
    assert config == {"steps": 5, "lr": 2e-4, "name": "12", "use_ema": True, "channels": [1, 2]}


def test_an_integer_is_accepted_where_a_float_is_expected(tmp_path):
    assert configure(DEFAULTS, ["--lr=1"])["lr"] == 1.0
    assert isinstance(configure(DEFAULTS, [write_json(tmp_path, {"lr": 2})])["lr"], float)


@pytest.mark.parametrize("argv, words", [
    (["--stpes=5"], ["'stpes'", "unknown"]),
    (["--steps=5.5"], ["steps", "integer"]),
    (["--steps=true"], ["steps", "integer"]),
    (["--use_ema=yes"], ["use_ema", "true or false"]),
    (["--lr=fast"], ["lr", "number"]),
    (["--channels=32"], ["channels", "list"]),
    (["--steps"], ["--key=value"]),
])
def test_bad_overrides_raise_a_config_error_naming_the_key(argv, words):
    with pytest.raises(ConfigError) as error:
        configure(DEFAULTS, argv)
    for word in words:
        assert word in str(error.value)


def test_unknown_key_in_a_file_names_the_key_and_the_file(tmp_path):
    path = write_json(tmp_path, {"steps": 1, "learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"'learning_rate'.*config.json"):
        configure(DEFAULTS, [path])


def test_wrong_type_in_a_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'use_ema'.*true or false"):
        configure(DEFAULTS, [write_json(tmp_path, {"use_ema": 1})])


def test_bad_json_and_missing_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid JSON"):
        configure(DEFAULTS, [write_json(tmp_path, "{steps: 1}")])
    with pytest.raises(ConfigError, match="JSON object"):
        configure(DEFAULTS, [write_json(tmp_path, "[1, 2]")])
    with pytest.raises(ConfigError, match="cannot read"):
        configure(DEFAULTS, [str(tmp_path / "missing.json")])


@pytest.mark.parametrize("module", ["trainer.train_vae", "trainer.train_clip"])
def test_scripts_exit_2_with_the_message_on_stderr(module):
    result = subprocess.run([sys.executable, "-m", module, "--no_such_key=1"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "unknown config key 'no_such_key'" in result.stderr
    assert result.stdout == ""
