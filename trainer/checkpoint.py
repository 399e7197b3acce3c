"""Checkpoints that resume exactly.

A training checkpoint holds model_args (the model's args dataclass as a dict), model (state dict), optimizer
(state dict), step, config and rng (rng_state()), plus whatever else a script needs. It is written to a temporary
file beside the target and moved into place with os.replace, so a crash or SIGTERM mid-write never leaves a
truncated checkpoint behind.

TrainingCheckpoints wraps what every training script does with them: resume, save every few minutes, at the end and
on SIGTERM.
"""
import json
import os
import random
import signal
import time
from dataclasses import asdict

import numpy as np
import torch

from trainer import distributed


def save_checkpoint(path, **payload):
    """Write `payload` to `path` atomically (tmp file + os.replace)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = f"{path}.tmp.{os.getpid()}"
    try:
        torch.save(payload, tmp_path)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint written by save_checkpoint (or any of the trainer's .pt files: they hold configs, dataclass
    dicts and RNG states, which torch >= 2.6's default weights_only loading refuses)."""
    return torch.load(path, map_location=map_location, weights_only=False)


def half_weights(state: dict) -> dict:
    """A state dict with its floating-point tensors in float16: how finished weights are stored (half the bytes in
    the repo); load_state_dict copies them into the float32 model."""
    return {key: value.half() if value.is_floating_point() else value for key, value in state.items()}


def config_changes(saved: dict, config: dict, defaults: dict) -> dict:
    """{key: value in config} of every key whose value differs from the saved config's. A key the saved config lacks
    (added to the code after the checkpoint was written) counts as unchanged while it has its default."""
    return {key: config.get(key) for key in sorted(set(saved) | set(config))
            if saved.get(key, defaults.get(key)) != config.get(key, defaults.get(key))}


def rng_state():
    """Every random generator a training step may touch, to store in a checkpoint."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore what rng_state() returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopRequest:
    """Turns SIGTERM (and any other of `signals`, e.g. SIGINT) into a flag that the training loop checks after each
    step, so it saves a checkpoint and exits instead of dying mid-step (Kubernetes and torchrun send SIGTERM before
    killing)."""

    def __init__(self, signals=(signal.SIGTERM,)):
        self.signal_name = None
        for signum in signals:
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self):
        return self.signal_name is not None


class TrainingCheckpoints:
    """Resume from, and save to, <out_dir>/ckpt.pt for one training run; only the master process writes.

        checkpoints = TrainingCheckpoints(out_dir, model, optimizer, model_args, config, dist_info, every_s=120)
        step = checkpoints.resume()
        while step < max_steps:
            ... one optimizer step ...; step += 1
            if checkpoints.after_step(step, final=step == max_steps):
                sys.exit(143)  # SIGTERM: saved, stop now
    """

    def __init__(self, out_dir, model, optimizer, model_args, config, dist_info, every_s,
                 stop_signals=(signal.SIGTERM,), extra=None, defaults=None):
        self.path = os.path.join(out_dir, "ckpt.pt")
        self.extra = dict(extra or {})  # more top-level checkpoint entries (their defaults), saved and resumed
        self.model, self.optimizer, self.model_args = model, optimizer, model_args
        self.config, self.dist_info, self.every_s = config, dist_info, every_s
        self.defaults = defaults or {}  # the config's defaults: a key newer than a checkpoint had its default
        self.stop = StopRequest(stop_signals)
        self.last_save = time.time()
        self.history = []  # [{"step", "changes"}]: config changes made when resuming, so a run's recipe stays honest

    def resume(self):
        """Load the checkpoint when there is one; the step to continue from (0 for a fresh run)."""
        if not os.path.exists(self.path):
            return 0
        checkpoint = load_checkpoint(self.path, map_location=self.dist_info.device)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        rng = checkpoint["rng"]  # one state per rank of the run that saved it
        set_rng_state(rng[self.dist_info.rank % len(rng)])
        self.history = checkpoint.get("history", [])
        self.extra.update({key: checkpoint[key] for key in self.extra if key in checkpoint})
        changes = config_changes(checkpoint["config"], self.config, self.defaults)
        if changes:
            self.history.append({"step": checkpoint["step"], "changes": changes})
        if self.dist_info.is_master:
            print(f"resuming from {self.path} at step {checkpoint['step']}"
                  + (f" with config changes {changes}" if changes else ""), flush=True)
        return checkpoint["step"]

    def save(self, step):
        rng = distributed.all_gather_object(rng_state(), self.dist_info)  # each rank resumes its own noise stream
        if self.dist_info.is_master:
            save_checkpoint(self.path, model_args=asdict(self.model_args), model=self.model.state_dict(),
                            optimizer=self.optimizer.state_dict(), step=step, config=self.config, rng=rng,
                            history=self.history, **self.extra)
        self.last_save = time.time()

    def after_step(self, step, final):
        """Save when due (every every_s seconds, after the final step, on SIGTERM to any rank). True when the run
        must stop now because of SIGTERM; the checkpoint is then written and the process group closed."""
        stop_now = distributed.any_rank(self.stop.requested, self.dist_info)
        # saving gathers every rank's RNG state: the ranks must agree on when, and their clocks differ
        due = distributed.any_rank(time.time() - self.last_save > self.every_s, self.dist_info)
        if stop_now or final or due:
            self.save(step)
        if stop_now:
            if self.dist_info.is_master:
                print(f"stopped by {self.stop.signal_name or 'SIGTERM on another rank'} at step {step}; "
                      f"checkpoint saved to {self.path}", flush=True)
            distributed.cleanup()
        return stop_now


def reproduce_commands(module, config_file, config, history):
    """The commands that retrain a run from scratch, one per phase when its config was changed on resume (history):
    each phase stops at the step where the next began, on the final run's learning-rate schedule."""
    base = ["/usr/bin/python3", "-m", module, config_file]
    decay_steps = config["lr_decay_steps"] or config["max_steps"]
    commands, overrides = [], {}
    for entry in history:
        flags = [f"--{k}={_flag(v)}" for k, v in overrides.items()]
        commands.append(" ".join(base + flags + [f"--max_steps={entry['step']}", f"--lr_decay_steps={decay_steps}"]))
        overrides.update({k: v for k, v in entry["changes"].items() if k not in ("max_steps", "lr_decay_steps")})
    commands.append(" ".join(base + [f"--{k}={_flag(v)}" for k, v in overrides.items()]))
    return commands


def _flag(value):
    return value if isinstance(value, str) else json.dumps(value).replace(" ", "")


def write_artifact(out, name, state, model, train_config, metrics, train_module, eval_command, extra=None):
    """A committed artifact (models/base/<name>.pt: float32 weights, model_args, step, config and `extra`) and its
    record <name>.json (model_args, steps, recipe, metrics, `extra`, history and the commands that remake it:
    reproduce_commands of `train_module` on trainer/configs/<name>.json, then `eval_command`)."""
    extra = extra or {}
    save_checkpoint(out, model_args=state["model_args"],
                    model={k: v.float().contiguous() for k, v in model.state_dict().items()},
                    step=state["step"], config=train_config, **extra)
    history = state.get("history", [])
    record = {"model": name, "checkpoint": os.path.basename(out), "model_args": state["model_args"],
              "steps": state["step"], "recipe": train_config, **extra, "metrics": metrics, "history": history,
              "reproduce": reproduce_commands(train_module, f"trainer/configs/{name}.json", train_config, history)
              + [eval_command]}
    record_path = os.path.splitext(out)[0] + ".json"
    with open(record_path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"wrote {out} and {record_path}")
