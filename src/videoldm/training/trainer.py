"""One accelerate trainer for every stage: mixed precision, accumulation, EMA, checkpoints, resume, DDP.

`train(config, resume=True)` runs `config.stage` to `train.max_steps` and exports a complete model folder to
`output_dir/model/`. Resuming from the newest checkpoint reproduces the uninterrupted run: batches and noise
are functions of (seed, step, micro-step, rank) and the checkpoint holds model, optimiser, LR scheduler, EMA
and RNG states.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from videoldm.training import cache as C
from videoldm.training.batches import step_generator
from videoldm.training.checkpoint import latest_checkpoint, load_checkpoint, replace_dir, save_checkpoint
from videoldm.training.config import OptimConfig, RunConfig
from videoldm.training.samples import probe_direction, write_samples
from videoldm.training.shards import LatentShards, open_shards
from videoldm.training.stages import Stage, build_stage

logger = logging.getLogger(__name__)

# Fault injection for the resume test: SIGKILL this process right after the given step (and its checkpoint).
FAULT_ENV = "VIDEOLDM_KILL_AFTER_STEP"


def make_optimizer(params: list[torch.nn.Parameter], opt: OptimConfig) -> tuple[torch.optim.AdamW, Any]:
    """The stages' optimiser and learning-rate schedule: AdamW with `opt`'s settings, constant after a linear
    warm-up of `opt.warmup_steps`. fused=True: one kernel for the whole update instead of a for-loop of elementwise
    ops per parameter (measured +5% per key-frame step on a 2-core CPU: benchmarks/results/train_speed.md)."""
    optimizer = torch.optim.AdamW(params, lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay, fused=True)
    return optimizer, get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=opt.warmup_steps)


class Trainer:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.out = config.output_dir
        if config.train.num_threads:
            torch.set_num_threads(config.train.num_threads)
        self.accelerator = Accelerator(
            mixed_precision=config.train.mixed_precision,
            log_with="tensorboard",
            project_dir=str(self.out),
        )
        if torch.cuda.is_available():  # TF32 matmuls on GPUs: ~fp32 accuracy for diffusion training, much faster
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(config.train.seed)  # the same fresh weights on every rank
        self.stage: Stage = build_stage(config)
        if self.stage.vae is not None:  # frozen VAE: encodes the latent cache on the training device
            self.stage.vae.to(self.accelerator.device)
        trainable = self.stage.trainable()
        self.params = [p for p in trainable.parameters() if p.requires_grad]
        self.names = [n for n, p in trainable.named_parameters() if p.requires_grad]
        opt = config.optim
        # The schedule is stepped once per optimiser step by us, not by accelerate (it would step once per process).
        self.optimizer, self.lr_scheduler = make_optimizer(self.params, opt)
        self.ema = EMAModel(self.params, decay=config.train.ema_decay) if config.train.ema_decay else None
        # An adversary (the decoder stage's video discriminator) gets its own optimiser (Stage.adversary).
        self.adversary = self.stage.adversary
        self.adversary_optimizer = None
        if self.adversary is not None and self.accelerator.num_processes > 1:
            # The discriminator is not wrapped for DDP: ranks would train different adversaries.
            raise NotImplementedError(
                f"stage {config.stage!r} runs on one process; got {self.accelerator.num_processes}"
            )
        if self.adversary is not None:
            self.adversary_optimizer = torch.optim.AdamW(
                self.adversary.parameters(), lr=opt.disc_lr, betas=(0.5, 0.9), weight_decay=0.0, fused=True
            )
        self.step = 0

    # ---------------------------------------------------------------------------------------------- setup
    def build_cache(self) -> C.VideoCache | LatentShards:
        """Rank 0 builds (or reuses) the cache; the others wait and read it. With `data.shards`: the shards,
        checked against the model and the config (every rank reads them itself)."""
        if self.config.data.shards is not None:
            return open_shards(self.stage, self.config)
        return C.prepare_cache(
            self.stage,
            self.config,
            is_main=self.accelerator.is_main_process,
            wait=self.accelerator.wait_for_everyone,
        )

    def resume(self) -> None:
        checkpoint = latest_checkpoint(self.out)
        if checkpoint is None:
            logger.info("no checkpoint in %s: starting from step 0", self.out)
            return
        self.step, weights, states = load_checkpoint(checkpoint)
        missing = [n for n in self.names if n not in weights]
        if missing:
            raise ValueError(f"{checkpoint}: checkpoint lacks trainable parameters {missing[:3]}")
        with torch.no_grad():
            for name, param in zip(self.names, self.params, strict=True):
                param.copy_(weights[name])
        self.optimizer.load_state_dict(states["optimizer"])
        if self.adversary is not None:
            self.adversary.load_state_dict(states["adversary"])
            self.adversary_optimizer.load_state_dict(states["adversary_optimizer"])
        self.lr_scheduler.load_state_dict(states["lr_scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(states["ema"])
        self.accelerator.print(f"resumed from {checkpoint} at step {self.step}")
        self._apply_config_hyperparameters()

    def _apply_config_hyperparameters(self) -> None:
        """The config's optimiser settings win over the checkpoint's (which load_state_dict restored): a resumed
        run with a new `optim.lr` trains at it. The moment estimates and the step count are kept."""
        opt = self.config.optim
        wanted = {"lr": opt.lr, "betas": tuple(opt.betas), "weight_decay": opt.weight_decay}
        changes = apply_hyperparameters(self.optimizer, self.lr_scheduler, wanted, prefix="optim.")
        if self.adversary_optimizer is not None:
            changes += apply_hyperparameters(self.adversary_optimizer, None, {"lr": opt.disc_lr}, prefix="optim.disc_")
        if changes:
            message = f"optimiser settings changed since the checkpoint, using the config's: {', '.join(changes)}"
            logger.warning(message)
            self.accelerator.print(message)

    # ---------------------------------------------------------------------------------------------- loop
    def fit(self, *, resume: bool = False) -> Path:
        cfg = self.config.train
        acc = self.accelerator
        acc.print(f"stage {self.config.stage}: {acc.num_processes} process(es) on {acc.device}, output {self.out}")
        cache = self.build_cache()
        if resume:
            self.resume()
        module, optimizer = self.accelerator.prepare(self.stage.module, self.optimizer)
        if self.ema is not None:  # its shadow weights were made before prepare() moved the model
            self.ema.to(self.accelerator.device)
        self.accelerator.init_trackers("logs", config=_flat(self.config.to_dict()))
        bar = tqdm(
            **progress_settings(step=self.step, max_steps=cfg.max_steps, max_minutes=cfg.max_minutes),
            desc=f"train {self.config.stage}",
            disable=not self.accelerator.is_main_process,
        )
        fault = int(os.environ.get(FAULT_ENV, "0"))
        began = time.monotonic()
        deadline = began + 60 * cfg.max_minutes if cfg.max_minutes else None
        while self.step < cfg.max_steps:
            started = time.perf_counter()
            loss = self._optimisation_step(module, optimizer, cache)
            self.step += 1
            # A time budget's bar advances by seconds spent (at most to its end), else by one step.
            bar.update(1 if deadline is None else min(bar.total, time.monotonic() - began) - bar.n)
            lr = f"{self.lr_scheduler.get_last_lr()[0]:.2e}"
            bar.set_postfix(
                loss=f"{loss:.4f}", lr=lr, **({} if deadline is None else {"step": f"{self.step}/{cfg.max_steps}"})
            )
            if self.step % cfg.log_every == 0:
                self.accelerator.log(
                    {
                        "loss": loss,
                        "lr": self.lr_scheduler.get_last_lr()[0],
                        "s_per_step": time.perf_counter() - started,
                    },
                    step=self.step,
                )
            if cfg.sample_every and self.step % cfg.sample_every == 0 and acc.is_main_process:
                write_samples(self.stage, cache, self.step, self.out / "samples", acc.device)
            if cfg.probe_every and self.step % cfg.probe_every == 0 and acc.is_main_process:
                self._probe(cache)
            out_of_time = deadline is not None and self._all_ranks_agree(time.monotonic() > deadline)
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_steps or out_of_time:
                self.checkpoint()
            if fault and self.step == fault:
                os.kill(os.getpid(), signal.SIGKILL)
            if out_of_time:
                acc.print(f"max_minutes={cfg.max_minutes} reached: stopping at step {self.step}")
                break
        bar.close()
        model = self.export(cache)
        self.accelerator.end_training()  # also ends the process group: last
        return model

    def _probe(self, cache: C.VideoCache) -> None:
        """The direction probe on the current weights: one line printed, its fractions logged as probe/*."""
        started = time.perf_counter()
        result = probe_direction(self.stage, cache)
        if result is None:
            self.accelerator.print(f"step {self.step}: direction probe skipped: no shapes-world captions in the data")
            return
        self.accelerator.print(f"step {self.step}: {result.line()} ({time.perf_counter() - started:.0f} s)")
        self.accelerator.log({f"probe/{k}": v for k, v in result.summary().items()}, step=self.step)

    def _optimisation_step(self, module, optimizer, cache: C.VideoCache) -> float:
        cfg = self.config.train
        rank = self.accelerator.process_index
        total = 0.0
        self.stage.begin_step(self.step)
        for micro in range(cfg.gradient_accumulation_steps):
            batch = self.stage.batch(cache, step_generator(cfg.seed, self.step, micro, rank))
            batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
            last = micro == cfg.gradient_accumulation_steps - 1
            with self.accelerator.no_sync(module) if not last else contextlib.nullcontext():
                with self.accelerator.autocast():
                    loss = module(**batch) / cfg.gradient_accumulation_steps
                self.accelerator.backward(loss)
            total += loss.item()
            self._adversary_step(batch)
        if self.config.optim.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.params, self.config.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.lr_scheduler.step()
        if self.ema is not None:
            self.ema.step(self.params)
        return total

    def _adversary_step(self, batch: dict[str, torch.Tensor]) -> None:
        """One discriminator update on the clips and reconstructions of the generator pass just made."""
        if self.adversary is None:
            return
        self.adversary_optimizer.zero_grad(set_to_none=True)  # the generator pass left gradients on it
        with self.accelerator.autocast():
            loss = self.stage.adversary_loss(batch, self.step)
        if loss is None:
            return
        self.accelerator.backward(loss)
        self.adversary_optimizer.step()
        self.adversary_optimizer.zero_grad(set_to_none=True)

    # ---------------------------------------------------------------------------------------------- outputs
    def checkpoint(self) -> None:
        self._check_ranks_in_sync()
        if self.accelerator.is_main_process:
            states = {"optimizer": self.optimizer.state_dict(), "lr_scheduler": self.lr_scheduler.state_dict()}
            if self.adversary is not None:
                states["adversary"] = self.adversary.state_dict()
                states["adversary_optimizer"] = self.adversary_optimizer.state_dict()
            if self.ema is not None:
                states["ema"] = self.ema.state_dict()
            weights = dict(zip(self.names, self.params, strict=True))
            save_checkpoint(
                self.out, step=self.step, weights=weights, states=states, keep=self.config.train.keep_checkpoints
            )
        self.accelerator.wait_for_everyone()

    def _all_ranks_agree(self, flag: bool) -> bool:
        """True when rank 0 says so (ranks' clocks differ; they must stop at the same step)."""
        if self.accelerator.num_processes == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.accelerator.device)
        return bool(self.accelerator.gather(value)[0].item())

    def _check_ranks_in_sync(self) -> None:
        """DDP ranks must hold identical weights; a cheap checksum per rank, compared across ranks."""
        if self.accelerator.num_processes == 1:
            return
        checksum = torch.stack([p.detach().double().sum() for p in self.params]).sum().reshape(1)
        sums = self.accelerator.gather(checksum.to(self.accelerator.device))
        if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-9, atol=0):
            raise RuntimeError(f"DDP ranks diverged at step {self.step}: parameter checksums {sums.tolist()}")

    def export(self, cache: C.VideoCache) -> Path:
        """Write `output_dir/model/` (EMA weights if EMA is on), atomically."""
        final = self.out / "model"
        if self.accelerator.is_main_process:
            tmp = self.out / f".model.tmp-{os.getpid()}"
            if self.ema is not None:
                self.ema.store(self.params)
                self.ema.copy_to(self.params)
            self.stage.export(tmp, cache)
            if self.ema is not None:
                self.ema.restore(self.params)
            replace_dir(tmp, final)
        self.accelerator.wait_for_everyone()
        return final


def apply_hyperparameters(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR | None,
    wanted: dict[str, Any],
    *,
    prefix: str,
) -> list[str]:
    """Set `wanted` (lr, betas, weight_decay) on every param group of a loaded optimiser; returns the changes as
    "optim.lr 0.001 -> 0.0002". `lr` is the base lr: the scheduler's `base_lrs` (a LambdaLR restores them from
    its state dict, and every later step computes base_lr * lambda(step) from them) and the group's `initial_lr`
    change with it, and the group's current lr becomes the new base lr times the schedule's factor now."""
    changes = []
    for key, value in wanted.items():
        old = scheduler.base_lrs[0] if key == "lr" and scheduler is not None else optimizer.param_groups[0][key]
        if (tuple(old) if isinstance(old, list | tuple) else old) != value:
            changes.append(f"{prefix}{key} {old} -> {value}")
        for group in optimizer.param_groups:
            if key != "lr":
                group[key] = value
            elif scheduler is None:
                group["lr"] = value
    if "lr" in wanted and scheduler is not None:
        lr = wanted["lr"]
        scheduler.base_lrs = [lr] * len(optimizer.param_groups)
        for i, group in enumerate(optimizer.param_groups):
            group["initial_lr"] = lr
            group["lr"] = lr * scheduler.lr_lambdas[i](scheduler.last_epoch)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports
    return changes


def progress_settings(*, step: int, max_steps: int, max_minutes: float | None) -> dict[str, Any]:
    """The progress bar's tqdm arguments. Without a time budget it counts steps to `max_steps`. With one, the
    run ends at the budget long before `max_steps` (often a large "until the budget stops it" number), so the
    bar counts the budget's seconds instead: its ETA is the time left. The step count goes in the postfix."""
    if not max_minutes:  # as the deadline in fit(): None or 0 is no budget
        return {"total": max_steps, "initial": step, "unit": "step"}
    return {
        "total": max(1, round(60 * max_minutes)),
        "initial": 0,  # the budget is this process's wall time, also when resuming
        "unit": "s",
        "bar_format": "{l_bar}{bar}| {n:.0f}/{total} s of the time budget [{elapsed}<{remaining}{postfix}]",
    }


def _flat(d: dict, prefix: str = "") -> dict:
    """TensorBoard hparams take flat scalars and strings."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


def train(config: RunConfig, *, resume: bool = False) -> Path:
    """Run one stage; returns the exported model folder."""
    config.output_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(config).fit(resume=resume)
