"""Run output on process 0 only: TensorBoard scalars (tensorboardX), a tqdm bar per epoch,
printed lines. Every method is a no-op on other processes."""
from __future__ import annotations

import os
import sys

import jax


class Logger:
    def __init__(self, workdir: str, enabled: bool | None = None, progress: bool = True):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.progress = progress
        self.writer = None
        self.bar = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(os.path.join(workdir, "tb"))

    def print(self, *args) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else print)(" ".join(str(a) for a in args))
            sys.stdout.flush()

    def scalars(self, step: int, values: dict, prefix: str = "") -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(prefix + k, float(v), step)

    def start_epoch(self, epoch: int, epochs: int, total: int, initial: int = 0) -> None:
        if self.enabled and self.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{epochs}", unit="step",
                            dynamic_ncols=True, leave=True, file=sys.stderr)

    def advance(self, n: int = 1, **postfix) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()},
                                     refresh=False)
            self.bar.update(n)

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.end_epoch()
        if self.writer is not None:
            self.writer.close()
