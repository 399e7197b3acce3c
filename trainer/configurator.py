"""Configuration for the training scripts, nanoGPT style without exec.

A script keeps its defaults as plain module-level values and calls

    config = configure(defaults, sys.argv[1:])

Positional arguments are JSON files holding only the keys that differ from the defaults (applied in order); then
`--key=value` overrides. Every value is checked against the type of its default; unknown keys and bad values raise
ConfigError naming the key. A job from the service arrives as such a JSON file, never as code to execute.
"""
import json
import sys


class ConfigError(ValueError):
    """A config file or override that does not fit the script's defaults."""


def configure(defaults, argv):
    """Return a new dict: `defaults` updated by the JSON files and --key=value overrides in `argv`."""
    config = dict(defaults)
    for arg in argv:
        if arg.startswith("--"):
            key, sep, text = arg[2:].partition("=")
            if not sep:
                raise ConfigError(f"override {arg!r} must be written --key=value")
            _check_known(key, defaults, source=arg)
            config[key] = _parse_override(key, text, defaults[key])
        else:
            for key, value in _read_json_file(arg).items():
                _check_known(key, defaults, source=arg)
                config[key] = _check_type(key, value, defaults[key], source=arg)
    return config


def configure_or_exit(defaults, argv):
    """configure(), but a ConfigError ends the process with exit code 2 and the message on stderr."""
    try:
        return configure(defaults, argv)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        sys.exit(2)


def _read_json_file(path):
    try:
        with open(path) as f:
            values = json.load(f)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path!r}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {path!r} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path!r} must hold a JSON object, got {type(values).__name__}")
    return values


def _check_known(key, defaults, source):
    if key not in defaults:
        raise ConfigError(f"unknown config key {key!r} (from {source}); known keys: {', '.join(sorted(defaults))}")


def _parse_override(key, text, default):
    if isinstance(default, str):
        return text
    if isinstance(default, bool):
        if text not in ("true", "false"):
            raise ConfigError(f"--{key} expects true or false, got {text!r}")
        return text == "true"
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"--{key} expects {_type_name(default)}, got {text!r}") from None
    return _check_type(key, value, default, source=f"--{key}")


def _check_type(key, value, default, source):
    """Accept `value` when it has the default's type (an int is accepted, and converted, where a float is expected)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif default is None:
        ok = True
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{key!r} (from {source}) expects {_type_name(default)}, got {json.dumps(value)}")
    return value


def _type_name(default):
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a JSON list",
            dict: "a JSON object"}.get(type(default), type(default).__name__)
