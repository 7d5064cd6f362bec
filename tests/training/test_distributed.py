"""One training job on several processes: `torchrun --nproc_per_node N -m xbml train ...`.

Two CPU processes with the gloo backend stand in for two GPUs: rank r trains on the sampler's
batch i * 2 + r at iteration i and DDP averages the gradients, so two processes take the step a
single process would take on the mean gradient of both batches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

import pytest
import torch

from conftest import PYTHON, ROOT, make_blob_dataset, tiny_train_overrides
from xbml.config import load_config
from xbml.datasets.torch_data import training_batches
from xbml.errors import ConfigError
from xbml.training import distributed as dist
from xbml.training.trainer import Trainer, train

# variables torchrun sets for its workers; a test run inside another torchrun job must not inherit them
_LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                  "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


@pytest.fixture(autouse=True)
def _single_process_env(monkeypatch):
    for var in _LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, overrides: list[str], out, standalone: bool = False) -> list[str]:
    # --standalone (a rendezvous on a free local port) is how the workflow's train rule launches
    # a multi-GPU job (docs/slurm.md); an explicit master port is the other common form
    rendezvous = ["--standalone"] if standalone else ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), *rendezvous,
           "-m", "xbml", "train", "--threads", "1", "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    return cmd


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
    env.update(OMP_NUM_THREADS="1", DVC_NO_ANALYTICS="1")
    return env


def _run(cmd, timeout=300) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun's agent and its workers at once, as a scheduler ending the job does.

    torchrun starts each worker in a session of its own, so a process-group kill misses them.
    """
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)
    proc.wait()


def _blob(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_close(a: dict, b: dict, what: str):
    assert a.keys() == b.keys(), what
    for k in a:
        if a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7), f"{what}: {k} differs"
        else:
            assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def _assert_same(a: dict, b: dict, what: str):
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def test_ranked_sampler_interleaves_the_batches_over_ranks(blob_dataset):
    cfg = load_config(None, tiny_train_overrides(blob_dataset))
    sampler = Trainer(cfg, blob_dataset.parent / "unused").sampler
    for world in (1, 2, 3):
        for rank in range(world):
            ranked = dist.RankedSampler(sampler, rank, world)
            for i in range(4):
                idx, seeds = ranked.batch(i)
                ref_idx, ref_seeds = sampler.batch(i * world + rank)
                assert (idx == ref_idx).all() and (seeds == ref_seeds).all()
    # without torchrun everything is single-process
    assert dist.world_size() == 1 and dist.rank() == 0
    module = torch.nn.Linear(2, 2)
    assert dist.wrap(module, torch.device("cpu")) is module


def test_more_ranks_than_visible_gpus_is_a_config_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"local rank 1 but only 1 GPU\(s\) are visible"):
        dist.device_for_rank(torch.device("cuda"))
    # CPU ranks (gloo) share the CPU
    assert dist.device_for_rank(torch.device("cpu")) == torch.device("cpu")


def _reference_two_rank_steps(cfg: dict, out, iterations: int) -> Trainer:
    """What two DDP ranks compute, in one process: mean gradient of the batches 2i and 2i+1.

    DDP keeps rank 0's buffers (BatchNorm running statistics): the reference restores them
    before rank 0's batch so that they too come from rank 0's batches alone.
    """
    trainer = Trainer(cfg, out)
    objective = trainer.objective
    objective.train()
    world = 2
    for it in range(iterations):
        trainer.optimizer.zero_grad(set_to_none=True)
        buffers = {n: b.detach().clone() for n, b in objective.named_buffers()}
        for rank in (1, 0):
            if rank == 0:
                with torch.no_grad():
                    for n, b in objective.named_buffers():
                        b.copy_(buffers[n])
            sampler = dist.RankedSampler(trainer.sampler, rank, world)
            images, labels = next(iter(training_batches(trainer.train_set, sampler, it, it + 1, 0, False)))
            terms = objective(images, labels, trainer.sampler.split)
            (terms["loss"] / world).backward()
        trainer.optimizer.step()
        trainer.scheduler.step()
    return trainer


def test_two_processes_average_the_gradients_of_different_batches(tmp_path):
    prepared = make_blob_dataset(tmp_path / "prepared")  # no validation classes: model.pt = last step
    # SGD: the step is linear in the gradient, so averaging (not summing, not rank 0 alone) shows
    overrides = tiny_train_overrides(prepared, iterations=2) + [
        "optim.name=sgd", "optim.lr=0.05", "xml.weight=0.1",
    ]
    cfg = load_config(None, overrides)

    _run(_torchrun(2, overrides, tmp_path / "ddp"))
    # one job, one set of outputs: rank 1 writes nothing
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("model.pt")) == [
        tmp_path.joinpath("ddp/model.pt").relative_to(tmp_path)
    ]
    summary = (tmp_path / "ddp/train_summary.json").read_text()
    assert '"world_size": 2' in summary
    assert len((tmp_path / "ddp/train_log.jsonl").read_text().splitlines()) == 2
    ddp = _blob(tmp_path / "ddp/model.pt")

    # the two ranks' batches really differ (else the comparison below proves nothing)
    trainer = Trainer(cfg, tmp_path / "probe")
    b0 = trainer.sampler.batch(0)
    b1 = dist.RankedSampler(trainer.sampler, 1, 2).batch(0)
    assert not (len(b0[0]) == len(b1[0]) and (b0[0] == b1[0]).all())

    ref = _reference_two_rank_steps(cfg, tmp_path / "ref", iterations=2)
    _assert_close(ddp["state_dict"], {k: v.detach() for k, v in ref.objective.model.state_dict().items()},
                  "model after 2 DDP steps vs mean-gradient reference")
    _assert_close(ddp["regularizer_state"]["xml"], ref.objective.regularizers["xml"].picture_state(),
                  "XML parameters after 2 DDP steps vs mean-gradient reference")

    # and it is not what one process training on batches 0, 1 alone ends with
    train(cfg, tmp_path / "single")
    single = _blob(tmp_path / "single/model.pt")["state_dict"]
    assert any(not torch.allclose(single[k], ddp["state_dict"][k]) for k in single if single[k].is_floating_point())


def test_a_killed_torchrun_job_resumes_from_its_checkpoint(tmp_path):
    prepared = make_blob_dataset(tmp_path / "prepared")
    iterations = 40
    overrides = tiny_train_overrides(prepared, iterations=iterations) + ["xml.weight=0.1", "train.checkpoint_every=5"]
    _run(_torchrun(2, overrides, tmp_path / "straight", standalone=True))

    cmd = _torchrun(2, overrides, tmp_path / "killed", standalone=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed/checkpoints/last.pt"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists():
                try:
                    if torch.load(ckpt, weights_only=True)["iteration"] >= 10:
                        break
                except Exception:  # noqa: BLE001 - caught mid-rename; look again
                    pass
            time.sleep(0.05)
        assert proc.poll() is None, "run finished before it could be killed; make it longer"
    finally:
        _kill_tree(proc)
    killed_at = torch.load(ckpt, weights_only=True)["iteration"]
    assert 10 <= killed_at < iterations
    assert not (tmp_path / "killed/model.pt").exists()

    out = _run(cmd)
    assert f"resumed from {ckpt} at iteration {killed_at}" in out.stderr
    straight, resumed = _blob(tmp_path / "straight/model.pt"), _blob(tmp_path / "killed/model.pt")
    _assert_same(straight["state_dict"], resumed["state_dict"], "resumed DDP run vs uninterrupted DDP run")
    _assert_same(straight["regularizer_state"]["xml"], resumed["regularizer_state"]["xml"],
                 "resumed DDP run vs uninterrupted DDP run (XML)")
    assert len((tmp_path / "killed/train_log.jsonl").read_text().splitlines()) == iterations
