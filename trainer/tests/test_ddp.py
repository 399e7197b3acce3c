import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from trainer.checkpoint import load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child_pids(pid):
    """The processes whose parent is `pid` (from /proc)."""
    children = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except FileNotFoundError:  # gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the parenthesised command name
            children.append(int(entry))
    return children


def torchrun(nproc, module, flags, timeout=240):
    # --redirects/--tee: Debian's torch 1.13 on Python 3.11 parses their default "0" to None and crashes (its
    # Std.from_str iterates an IntFlag, which no longer yields the zero member); "2" (stderr) parses.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "--redirects=2", "--tee=2", "-m", module, *flags]
    # PYTHONFAULTHANDLER: SIGABRT makes every process print its Python stacks (where a hung rank waits)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    # its own process group: on a timeout the workers go too (killing torchrun alone left them spinning, orphaned)
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for worker in child_pids(process.pid):  # torchrun stays up to pass on what its workers print as they abort
            os.kill(worker, signal.SIGABRT)
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s; its output, then every process's Python stacks:\n"
                    f"{stdout[-3000:]}\n{stderr[-8000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_process_vae_run_trains_and_only_the_master_logs_and_saves(tmp_path):
    out_dir = tmp_path / "ddp"
    result = torchrun(2, "trainer.train_vae", [f"--out_dir={out_dir}", "--max_steps=3", "--batch_size=2",
                                               "--block_out_channels=[8,16,32]", "--log_every=1",
                                               "--eval_every=3", "--device=cpu"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("world size 2") == 1  # the banner comes from the master only
    assert result.stdout.count("step 3/3") == 1
    records = [json.loads(line) for line in (out_dir / "progress.jsonl").read_text().strip().split("\n")]
    assert [r["step"] for r in records] == [1, 2, 3]
    checkpoint = load_checkpoint(str(out_dir / "ckpt.pt"))
    assert checkpoint["step"] == 3 and len(checkpoint["rng"]) == 2  # one rng state per rank
    assert sorted(os.listdir(out_dir)) == ["ckpt.pt", "progress.jsonl"]
