"""Progress of a training run: one human line on stdout and one JSON line in progress.jsonl per log call.

The JSON line is {"step", "total", "elapsed_s", "eta_s", "it_per_s", ...metrics}; the service's job runner and the
README's numbers read it. A NaN or infinite metric stops the run: it raises NonFiniteMetricError, naming the metric
and the step, instead of training on garbage.
"""
import json
import math
import os
import time


class NonFiniteMetricError(RuntimeError):
    """A logged metric is NaN or infinite."""


class ProgressLog:
    def __init__(self, path, total, is_master=True, start_step=0, json_stdout=False):
        self.path = path
        self.total = total
        self.is_master = is_master
        self.json_stdout = json_stdout  # print the JSON record instead of the human line (for a job runner)
        self.start_step = start_step  # the step the run (re)started at: it/s and ETA count from here
        self.start_time = time.time()
        if is_master and path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def log(self, step, **metrics):
        """Record `metrics` at `step` (the number of steps done). Raises NonFiniteMetricError on NaN/inf."""
        values = {name: _to_float(value) for name, value in metrics.items()}
        for name, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteMetricError(f"{name} is {value} at step {step}: stopping the run (check the learning "
                                           "rate, the data and the last checkpoint)")
        elapsed = time.time() - self.start_time
        steps_done = step - self.start_step
        it_per_s = steps_done / elapsed if elapsed > 0 and steps_done > 0 else 0.0
        eta = (self.total - step) / it_per_s if it_per_s > 0 else float("nan")
        record = {"step": step, "total": self.total, "elapsed_s": round(elapsed, 3),
                  "eta_s": round(eta, 1) if math.isfinite(eta) else None, "it_per_s": round(it_per_s, 4), **values}
        if not self.is_master:
            return record
        if self.json_stdout:
            print(json.dumps(record), flush=True)
        else:
            shown = " ".join(f"{name} {value:.4g}" for name, value in values.items())
            print(f"step {step}/{self.total} | {shown} | {it_per_s:.2f} it/s | eta {_format_duration(eta)}",
                  flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return record


class TimeBudget:
    """Fits a run into budget_s seconds of wall-clock time, counted from construction (0: no budget).

    Once `calibration_steps` steps have run it measures the seconds per step (the first WARMUP_STEPS excluded: CUDA
    and allocator warm-up) and lowers the run's total, once, so that the remaining steps take `reserve` of the time
    left (the rest is for evaluations and the end). Used on a lent GPU, whose speed is not known in advance.
    `agree` (DDP: every process calls fit at the same step) turns each process's total into one they all use, e.g. the
    rounded mean over the processes, so that no process stops before the others."""

    WARMUP_STEPS = 10

    def __init__(self, budget_s: float, start_step: int, calibration_steps: int = 50, reserve: float = 0.85,
                 agree=lambda total: total):
        self.budget_s, self.start_step, self.agree = budget_s, start_step, agree
        self.calibration_steps, self.reserve = max(calibration_steps, self.WARMUP_STEPS + 1), reserve
        self.started = time.time()
        self.warm_at = None
        self.fitted = budget_s <= 0

    def fit(self, step: int, total: int) -> int:
        """The run's total after `step` steps: `total`, or lower once calibrated."""
        if self.fitted:
            return total
        done = step - self.start_step
        if done == self.WARMUP_STEPS:
            self.warm_at = time.time()
        if done < self.calibration_steps or self.warm_at is None:
            return total
        self.fitted = True
        now = time.time()
        per_step = (now - self.warm_at) / (done - self.WARMUP_STEPS)
        affordable = int(self.reserve * (self.budget_s - (now - self.started)) / per_step)
        return int(self.agree(max(step, min(total, step + affordable))))


def _to_float(value):
    return float(value.item() if hasattr(value, "item") else value)


def _format_duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def cosine_lr(step, peak_lr, warmup_steps, decay_steps, min_lr_ratio):
    """The learning rate at `step` (0-based): linear warmup to peak_lr, then cosine decay to peak_lr * min_lr_ratio
    at decay_steps, flat after. A pure function of the step, so a resumed run continues the same schedule."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, decay_steps - warmup_steps))
    return peak_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
