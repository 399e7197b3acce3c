import json
import math

import pytest
import torch

from trainer import progress
from trainer.progress import NonFiniteMetricError, ProgressLog, TimeBudget, cosine_lr


def test_log_prints_one_line_and_appends_one_json_record(tmp_path, capsys):
    path = tmp_path / "run" / "progress.jsonl"
    log = ProgressLog(str(path), total=10)
    log.log(2, loss=torch.tensor(0.5), lr=1e-3)
    log.log(4, loss=0.25, lr=1e-3)
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == 2 and lines[1].startswith("step 4/10 | loss 0.25 lr 0.001 |") and "eta" in lines[1]
    records = [json.loads(line) for line in path.read_text().strip().split("\n")]
    assert [r["step"] for r in records] == [2, 4]
    assert set(records[1]) == {"step", "total", "elapsed_s", "eta_s", "it_per_s", "loss", "lr"}
    assert records[1]["total"] == 10 and records[1]["loss"] == 0.25


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor(float("-inf"))])
def test_a_non_finite_metric_stops_the_run_with_a_clear_message(tmp_path, bad):
    log = ProgressLog(str(tmp_path / "progress.jsonl"), total=10)
    with pytest.raises(NonFiniteMetricError, match="loss is .* at step 3"):
        log.log(3, lr=1e-3, loss=bad)
    assert not (tmp_path / "progress.jsonl").exists()


def test_only_the_master_writes(tmp_path, capsys):
    path = tmp_path / "progress.jsonl"
    ProgressLog(str(path), total=5, is_master=False).log(1, loss=1.0)
    assert capsys.readouterr().out == "" and not path.exists()


def test_cosine_lr_warms_up_then_decays_to_the_floor():
    lrs = [cosine_lr(step, 1.0, warmup_steps=10, decay_steps=110, min_lr_ratio=0.1) for step in range(130)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[110] == pytest.approx(0.1) and lrs[129] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now


def test_time_budget_lowers_the_total_once_from_the_measured_step_time(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress, "time", clock)
    budget = TimeBudget(100.0, start_step=5, calibration_steps=20, reserve=0.5)
    clock.now += 4.0  # setup before the first step
    totals = []
    for step in range(6, 26):
        clock.now += 3.0 if step <= 15 else 0.5  # slow warm-up steps, then 0.5 s a step
        totals.append(budget.fit(step, 10000))
    # at step 25: 30 + 5 + 4 = 39 s used, 61 s left; half of it at 0.5 s a step = 61 more steps
    assert totals[:-1] == [10000] * 19 and totals[-1] == 25 + 61
    assert budget.fit(26, 86) == 86 and budget.fit(27, 50) == 50  # fitted once, then the caller's total stands


def test_time_budget_never_raises_the_total_nor_goes_below_the_step(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress, "time", clock)
    generous, spent = TimeBudget(1e6, 0, calibration_steps=11), TimeBudget(1.0, 0, calibration_steps=11)
    for step in range(1, 12):
        clock.now += 1.0
        fitted = generous.fit(step, 40), spent.fit(step, 40)
    assert fitted == (40, 11)
    assert TimeBudget(0, 0).fit(1000, 7) == 7  # no budget


def test_time_budget_lets_the_processes_agree_on_one_total(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress, "time", clock)
    proposals = []
    budget = TimeBudget(100.0, 0, calibration_steps=11, agree=lambda total: proposals.append(total) or 77)
    for step in range(1, 12):
        clock.now += 1.0
        fitted = budget.fit(step, 1000)
    assert fitted == 77 and len(proposals) == 1  # asked once, at the calibration step, with this process's total
