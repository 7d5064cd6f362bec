"""The training loop: paired baseline/XML runs, checkpoints, resume, validation-based selection."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from xbml import __version__
from xbml.atomic import write_json, write_text
from xbml.datasets.device_decode import batch_to_device
from xbml.datasets.manifest import read_manifest
from xbml.datasets.torch_data import ManifestImages, training_batches
from xbml.config import validate_values
from xbml.errors import CheckpointError, DataError
from xbml.inference import compute_embeddings, image_options
from xbml.os_errors import save_torch
from xbml.losses.base_losses import build_base_loss
from xbml.metric_names import RANK_METRICS
from xbml.models import build_model
from xbml.regularizers import BuildContext, build_regularizers, summarise
from xbml.samplers import ClassDisjointHalvesSampler
from xbml.training import distributed as dist
from xbml.training.cpu_slots import cpu_slot
from xbml.training.checkpoint import config_fingerprint, load_checkpoint, save_checkpoint
from xbml.training.health import diverged, embedding_problem, non_finite_tensor
from xbml.training.device import (
    autocast, select_device, set_threads, torch_threads, use_bf16, use_channels_last,
)
from xbml.training.objective import Objective
from xbml.training.run_log import JsonlLog, read_jsonl

log = logging.getLogger(__name__)


def _lr_lambda(optim_cfg: dict, iterations: int):
    warmup, schedule = optim_cfg["warmup_iterations"], optim_cfg["schedule"]
    final = optim_cfg["final_lr_fraction"]

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, iterations - warmup))
        if schedule == "cosine":
            return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "exponential":
            return final**progress
        return 1.0

    return factor


def _trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def _optimizer(objective: Objective, cfg: dict) -> torch.optim.Optimizer:
    optim_cfg = cfg["optim"]
    lr, wd = optim_cfg["lr"], optim_cfg["weight_decay"]
    # frozen parameters (frozen BatchNorm) are left out: no update and no weight decay
    groups = [{"params": _trainable(objective.model), "lr": lr, "name": "model"}]
    base_params = _trainable(objective.base_loss)
    if base_params:  # the proxies of a proxy base loss
        groups.append({"params": base_params, "lr": lr * optim_cfg["base_loss_lr_multiplier"], "name": "base_loss"})
    for name, regularizer in objective.regularizers.items():
        params = _trainable(regularizer)
        if params:  # XML's prototypes and class vectors; XBM's memory is not trained
            groups.append({"params": params, "lr": lr * cfg[name]["lr_multiplier"], "name": name})
    # Adam/AdamW fused: one kernel per step instead of ~10 small ops per parameter tensor, 0.4
    # against 1.3-1.6 ms per glyph step on one CPU thread (the default's step is ~41 ms)
    factory = {
        "adamw": lambda groups, **kw: torch.optim.AdamW(groups, fused=True, **kw),
        "adam": lambda groups, **kw: torch.optim.Adam(groups, fused=True, **kw),
        "rmsprop": torch.optim.RMSprop,
        "sgd": lambda groups, **kw: torch.optim.SGD(groups, momentum=0.9, **kw),
    }[optim_cfg["name"]]  # the name was validated with the config (xbml.config.OPTIMIZERS)
    return factory(groups, lr=lr, weight_decay=wd)


def freeze_batchnorm(model: torch.nn.Module) -> None:
    """BatchNorm layers keep their parameters (no gradient) and, in `_train_mode`, their statistics."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.requires_grad_(False)


class Trainer:
    def __init__(self, cfg: dict, out_dir: str | Path, threads: int = 0):
        validate_values(cfg)  # a config built in code, not by load_config, is checked too
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.ckpt_path = self.out_dir / "checkpoints" / "last.pt"
        self.rank, self.world = dist.rank(), dist.world_size()
        set_threads(torch_threads(threads or cfg["train"]["threads"], cfg["data"]["workers"]))
        self.device = dist.device_for_rank(select_device(cfg["train"]["device"]))
        self.bf16 = use_bf16(cfg["train"]["amp"], self.device)
        self.channels_last = use_channels_last(cfg["train"]["channels_last"], self.device)

        data_cfg = cfg["data"]
        self.manifest = read_manifest(data_cfg["prepared"])
        # with data.fold (cross-validation) the held-out fold validates, the other folds train
        fold = data_cfg["fold"]
        train_rows = self.manifest.fold_indices("train", fold, data_cfg["max_classes"])
        self.val_rows = self.manifest.fold_indices("val", fold, data_cfg["max_classes"])
        self.val_set = None
        if len(train_rows) == 0:
            raise DataError(f"{data_cfg['prepared']} has no training images")
        self.train_classes, contiguous = np.unique(self.manifest.labels[train_rows], return_inverse=True)
        self.in_channels = int(self.manifest.info.get("channels", 3))
        self.train_set = ManifestImages(
            self.manifest, train_rows, contiguous, data_cfg["image_size"], data_cfg["resize"],
            train=True, augment=data_cfg["train_augment"], **image_options(data_cfg),
        )
        self.sampler = ClassDisjointHalvesSampler(
            contiguous, cfg["sampler"]["classes_per_batch"], cfg["sampler"]["images_per_class"], cfg["seed"]
        )
        self.objective = self._build_objective()
        self.trainable = _trainable(self.objective)
        # what a uniform guess scores, logged beside each regulariser's loss
        self.chances = {f"{name}_chance": reg.chance for name, reg in self.objective.regularizers.items()
                        if reg.chance is not None}
        self.optimizer = _optimizer(self.objective, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(cfg["optim"], cfg["train"]["iterations"])
        )
        self.fingerprint = config_fingerprint(cfg)
        self.iteration = 0
        self.best = {"iteration": 0, "map_at_r": -1.0, "state": None, "metrics": None}

    def _build_objective(self) -> Objective:
        cfg = self.cfg
        # the network is built first from the global seed, each regulariser's parameters from
        # a generator of its own: runs with and without one start from the same weights
        torch.manual_seed(cfg["seed"])
        model = build_model(cfg["model"], self.in_channels)
        if cfg["model"]["freeze_bn"]:
            freeze_batchnorm(model)
        num_classes = len(self.train_classes)
        base = build_base_loss(cfg["loss"], num_classes, cfg["model"]["embedding_dim"])
        regularizers = build_regularizers(BuildContext(model, base, cfg, num_classes, self.world))
        weights = {name: cfg[name]["weight"] for name in regularizers}
        objective = Objective(model, base, regularizers, weights).to(self.device)
        if self.channels_last:
            objective.model.to(memory_format=torch.channels_last)
        return objective

    # -- checkpoints ---------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "iteration": self.iteration,
            "planned_iterations": self.cfg["train"]["iterations"],
            "fingerprint": self.fingerprint,
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "best_iteration": self.best["iteration"],
            "best_map_at_r": self.best["map_at_r"],
            "best_state": self.best["state"],
            "best_metrics_json": None if self.best["metrics"] is None else json.dumps(self.best["metrics"]),
        }

    def resume(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        state = load_checkpoint(self.ckpt_path)
        if state.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"checkpoint {self.ckpt_path} was written with a different configuration; "
                f"delete {self.ckpt_path.parent} to start this configuration from scratch, or rerun with the old one"
            )
        self._check_schedule(state)
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_torch"])
        self.iteration = int(state["iteration"])
        self.best = {
            "iteration": int(state["best_iteration"]),
            "map_at_r": float(state["best_map_at_r"]),
            "state": state["best_state"],
            "metrics": None if state["best_metrics_json"] is None else json.loads(state["best_metrics_json"]),
        }
        log.info("resumed from %s at iteration %d", self.ckpt_path, self.iteration)
        return True

    def _check_schedule(self, state: dict) -> None:
        """A checkpoint must lie on the requested schedule: not past its end, and (where the
        learning rate depends on the length) planned for the same length."""
        done, total = int(state["iteration"]), self.cfg["train"]["iterations"]
        planned = state.get("planned_iterations")
        where = f"checkpoint {self.ckpt_path} is at iteration {done}"
        if done > total:
            raise CheckpointError(
                f"{where}, past train.iterations={total}; rerun with train.iterations >= {done}, "
                f"or delete {self.ckpt_path.parent} to train {total} iterations from scratch"
            )
        if self.cfg["optim"]["schedule"] != "constant" and planned is not None and planned != total:
            raise CheckpointError(
                f"{where} of a {self.cfg['optim']['schedule']} schedule planned for {planned} iterations, but "
                f"train.iterations={total} asks for another schedule; rerun with train.iterations={planned}, "
                f"or delete {self.ckpt_path.parent} to train {total} iterations from scratch"
            )

    def save(self) -> None:
        if self.rank == 0:
            self._check_finite()  # a poisoned state never replaces the last good checkpoint
            save_checkpoint(self.ckpt_path, self._state())

    def _diverged(self, what: str, iteration: int | None = None):
        return diverged(what, iteration or self.iteration, self.cfg["optim"]["lr"], self.ckpt_path,
                        self._checkpoint_iteration())

    def _check_finite(self, state: dict | None = None) -> None:
        name = non_finite_tensor(self.objective.state_dict() if state is None else state)
        if name is not None:
            raise self._diverged(f"{name} holds NaN or infinity")

    # -- validation ------------------------------------------------------------------------------
    def validate(self) -> dict | None:
        if len(self.val_rows) == 0:
            return None
        from xbml.evaluation.retrieval_metrics import retrieval_metrics

        if self.val_set is None:  # built once: validation runs many times per training
            data_cfg = self.cfg["data"]
            self.val_set = ManifestImages(
                self.manifest, self.val_rows, self.manifest.labels[self.val_rows],
                data_cfg["image_size"], data_cfg["resize"], **image_options(data_cfg),
            )
        self._check_finite()  # an overflowed parameter is the cause; degenerate embeddings its symptom
        emb = compute_embeddings(
            self.objective.model, self.val_set, self.cfg["eval"]["batch_size"], self.device,
            workers=self.cfg["data"]["workers"], channels_last=self.channels_last, bf16=self.bf16,
        )
        problem = embedding_problem(emb)
        if problem is not None:
            raise self._diverged(f"the validation embeddings {problem}")
        return retrieval_metrics(emb, self.val_set.targets)

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> dict:
        from tqdm.auto import tqdm

        tcfg = self.cfg["train"]
        total = tcfg["iterations"]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.resume()
        # working logs live beside the checkpoint and survive a kill; the run folder gets
        # its copies only when training completes (a scheduler may delete partial outputs)
        work = self.ckpt_path.parent
        train_log, val_log = JsonlLog(work / "train_log.jsonl"), JsonlLog(work / "val_log.jsonl")
        if self.rank == 0:
            for lg in (train_log, val_log):
                lg.truncate_after(self.iteration) if resumed else lg.path.unlink(missing_ok=True)
        model = dist.wrap(self.objective, self.device)
        self._train_mode()
        batches = training_batches(
            self.train_set, dist.RankedSampler(self.sampler, self.rank, self.world), self.iteration, total,
            self.cfg["data"]["workers"], pin_memory=self.device.type == "cuda", channels_last=self.channels_last,
        )
        bar = tqdm(
            total=total, initial=self.iteration, desc=f"train {self.out_dir.parent.name}/{self.out_dir.name}", unit="it",
            disable=not tcfg["progress"] or self.rank != 0, mininterval=1.0 if sys.stderr.isatty() else 10.0,
            file=sys.stderr,
        )
        start = time.perf_counter()
        split = self.sampler.split
        for images, labels in batches:
            t0 = time.perf_counter()
            images = batch_to_device(images, self.device, self.channels_last)
            labels = labels.to(self.device, non_blocking=True)
            with autocast(self.device, self.bf16):
                terms = model(images, labels, split, self.iteration)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise self._diverged(f"the loss is {loss.item()}", self.iteration + 1)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg["optim"]["clip_grad_norm"] > 0:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg["optim"]["clip_grad_norm"])
            self.optimizer.step()
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            self.iteration += 1
            if self.rank == 0:
                record = {"iteration": self.iteration, "lr": lr, "time_s": round(time.perf_counter() - t0, 5)}
                record.update({k: float(v.detach()) for k, v in terms.items()})
                record.update(self.chances)
                train_log.write(record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
            if self.iteration % tcfg["eval_every"] == 0 or self.iteration == total:
                self._validate_and_select(val_log)
                self._train_mode()
            if self.iteration % tcfg["checkpoint_every"] == 0 or self.iteration == total:
                train_log.flush()
                val_log.flush()
                self.save()
            dist.barrier()
        bar.close()
        train_log.close()
        val_log.close()
        return self._finish(time.perf_counter() - start)

    def _train_mode(self) -> None:
        self.objective.train()
        if self.cfg["model"]["freeze_bn"]:
            for m in self.objective.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def _checkpoint_iteration(self) -> int:
        if not self.ckpt_path.exists():
            return 0
        try:
            return int(load_checkpoint(self.ckpt_path)["iteration"])
        except CheckpointError:
            return -1

    def _validate_and_select(self, val_log: JsonlLog) -> None:
        if self.rank != 0:
            return
        metrics = self.validate()
        if metrics is None:
            return
        record = {"iteration": self.iteration, **{k: metrics[k] for k in RANK_METRICS}}
        val_log.write(record)
        if metrics["map_at_r"] > self.best["map_at_r"]:
            self.best = {
                "iteration": self.iteration,
                "map_at_r": metrics["map_at_r"],
                "state": {k: v.detach().cpu().clone() for k, v in self.objective.model.state_dict().items()},
                "metrics": record,
            }

    def _regularizer_summaries(self) -> dict:
        """Per regulariser: its loss over the last 10% of iterations against chance, whether it
        learned, its diagnostics there (xbml.regularizers.summarise); {} for a baseline."""
        if not self.objective.regularizers:
            return {}
        records = read_jsonl(self.out_dir / "train_log.jsonl")
        return {name: summarise(reg, self.cfg[name]["weight"], records)
                for name, reg in self.objective.regularizers.items()}

    def _finish(self, seconds: float) -> dict:
        if self.rank != 0:
            return {}
        model_state = self.objective.model.state_dict()
        selected = self.iteration
        if self.best["state"] is not None:
            model_state, selected = self.best["state"], self.best["iteration"]
        self._check_finite(model_state)  # never a model.pt with an overflowed tensor
        blob = {
            "state_dict": {k: v.detach().cpu() for k, v in model_state.items()},
            # what the report's pictures need of each regulariser (XML: the final prototypes)
            "regularizer_state": {name: state for name, reg in self.objective.regularizers.items()
                                  for state in [reg.picture_state()] if state is not None},
            "config": self.cfg,
            "in_channels": self.in_channels,
            "train_classes": self.train_classes.tolist(),
            "selected_iteration": selected,
            "xbml_version": __version__,
        }
        work = self.ckpt_path.parent
        for name in ("train_log.jsonl", "val_log.jsonl"):
            source = work / name
            write_text(self.out_dir / name, source.read_text() if source.exists() else "")
        save_torch(blob, self.out_dir / "model.pt")
        summary = {
            "iterations": self.iteration,
            "selected_iteration": selected,
            "selected_by": "validation MAP@R" if self.best["state"] is not None else "last iteration (no validation classes)",
            "val_at_selected": self.best["metrics"],
            "device": str(self.device),
            "bf16": self.bf16,
            "channels_last": self.channels_last,
            "threads": torch.get_num_threads(),
            "world_size": self.world,
            "wall_time_s_this_process": round(seconds, 2),
            "config_fingerprint": self.fingerprint,
            "regularizers": self._regularizer_summaries(),
        }
        write_json(self.out_dir / "train_summary.json", summary)
        return summary


def train(cfg: dict, out_dir: str | Path, threads: int = 0) -> dict:
    dist.init()
    try:
        trainer = Trainer(cfg, out_dir, threads)
        # one CPU training per core at a time (xbml.training.cpu_slots); not for GPUs, and not
        # across the ranks of one torchrun, which must all run to meet at their barriers
        take_slot = trainer.device.type == "cpu" and trainer.world == 1
        with cpu_slot(torch.get_num_threads()) if take_slot else contextlib.nullcontext():
            return trainer.fit()
    finally:
        dist.shutdown()
