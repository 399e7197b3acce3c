"""The model package's manifest: model.json with sha256s, sizes and the training record (docs/contracts.md).

export.py writes the graphs and the tokenizer into a package folder and then calls write_manifest(); everything
that describes where the weights came from (recipe, steps, seed, git commit, metrics) is gathered here from the
checkpoint, so the service can show it in /models without knowing anything about training.
"""
import hashlib
import json
import os
import subprocess

FORMAT_VERSION = 1
PACKAGE_FILES = ("text_encoder.onnx", "generator.onnx", "tokenizer/vocab.json", "tokenizer/merges.txt")


def file_entry(path):
    """{"sha256": hex digest, "bytes": size} of one file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "bytes": os.path.getsize(path)}


def git_commit(repo_dir=None):
    """The commit the exporting code runs from, with "-dirty" when tracked files differ; None outside a git tree."""
    repo_dir = repo_dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True,
                              check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir,
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if status else head


def training_record(checkpoint, metrics=None):
    """The manifest's training record from a checkpoint payload (checkpoint.py).

    recipe: the checkpoint's config; steps: its step (and, for a run that continued another, init: that run's
    lineage entry and total_steps: the steps of the whole chain); seed: the run's torch_seed where the recipe has one,
    else its seed; metrics: the caller's evaluation numbers (e.g. the <name>.json beside a committed checkpoint), else what the
    checkpoint carries; git_commit: the code that exported the package (trained_at_commit as well, when the
    checkpoint recorded the commit it was trained at)."""
    config = checkpoint.get("config") or {}
    record = {
        "recipe": config,
        "steps": int(checkpoint.get("step", 0)),
        "seed": int(config.get("torch_seed", config.get("seed", 0))),  # the parameter-init / noise seed of the run
        "git_commit": git_commit() or "unknown",
        "metrics": metrics if metrics is not None else dict(checkpoint.get("metrics") or {}),
    }
    if checkpoint.get("git_commit"):
        record["trained_at_commit"] = checkpoint["git_commit"]
    if checkpoint.get("init"):  # the run continued an earlier one (init_from): its lineage and the steps of all
        record["init"] = checkpoint["init"]
        record["total_steps"] = record["steps"] + earlier_steps(checkpoint["init"])
    return record


def lineage_entry(path: str, checkpoint: dict) -> dict:
    """The `init` entry of a run that continued the checkpoint at `path` (init_from): the chain earlier_steps sums."""
    return {"path": path, "sha256": file_entry(path)["sha256"], "steps": checkpoint["step"],
            "recipe": checkpoint["config"], "init": checkpoint.get("init")}


def earlier_steps(init) -> int:
    """Steps of the chain of runs a run continued (an init_from lineage entry {"steps", "init", ...}, recursively)."""
    return init["steps"] + earlier_steps(init["init"]) if init else 0


def write_manifest(package_dir, fields, files=PACKAGE_FILES):
    """Write package_dir/model.json: `fields` (every key of the contract but files) plus files with sha256 + bytes.

    Returns the manifest dict. Refuses to write when a listed file is missing, so a half-exported folder never
    looks like a package to the registry."""
    missing = [name for name in files if not os.path.isfile(os.path.join(package_dir, name))]
    if missing:
        raise FileNotFoundError(f"package {package_dir} lacks {', '.join(missing)}")
    fields = dict(fields)
    training = fields.pop("training")
    manifest = {"format_version": FORMAT_VERSION, **fields,
                "files": {name: file_entry(os.path.join(package_dir, name)) for name in files},
                "training": training}
    tmp_path = os.path.join(package_dir, f"model.json.tmp.{os.getpid()}")
    with open(tmp_path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.replace(tmp_path, os.path.join(package_dir, "model.json"))
    return manifest


def verify_files(package_dir):
    """The names of the files whose sha256 or size no longer matches model.json (empty when the package is intact)."""
    with open(os.path.join(package_dir, "model.json")) as f:
        manifest = json.load(f)
    return [name for name, entry in manifest["files"].items()
            if not os.path.isfile(os.path.join(package_dir, name))
            or file_entry(os.path.join(package_dir, name)) != entry]
