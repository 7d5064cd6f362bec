"""Batches of C classes x m images whose first and second halves have disjoint classes.

Batch i is a pure function of (seed, i): resuming at iteration i needs no sampler
state, and a baseline and an XML run with the same seed see the same batches.
Each element carries its own augmentation seed for the same reason.
"""

from __future__ import annotations

import numpy as np

from xbml.errors import ConfigError


class ClassDisjointHalvesSampler:
    def __init__(self, labels, classes_per_batch: int, images_per_class: int, seed: int):
        if classes_per_batch < 2 or classes_per_batch % 2:
            raise ConfigError("classes_per_batch must be even and >= 2 (two class-disjoint halves)")
        labels = np.asarray(labels)
        self.classes, inverse = np.unique(labels, return_inverse=True)
        if len(self.classes) < classes_per_batch:
            raise ConfigError(
                f"the training split has {len(self.classes)} classes but sampler.classes_per_batch is "
                f"{classes_per_batch}; lower it or use more classes"
            )
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(self.classes)))[:-1]
        self.members = np.split(order, bounds)
        self.classes_per_batch = classes_per_batch
        self.images_per_class = images_per_class
        self.seed = seed

    @property
    def batch_size(self) -> int:
        return self.classes_per_batch * self.images_per_class

    @property
    def split(self) -> int:
        """Rows [:split] are the first sub-batch, [split:] the second."""
        return self.batch_size // 2

    def batch(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        """(dataset indices, per-element augmentation seeds) of batch `iteration`."""
        rng = np.random.default_rng([self.seed, iteration])
        chosen = rng.choice(len(self.classes), size=self.classes_per_batch, replace=False)
        m = self.images_per_class
        # without replacement when the class is big enough, so a batch holds distinct images
        rows = [
            rng.choice(self.members[c], size=m, replace=len(self.members[c]) < m) for c in chosen
        ]
        indices = np.concatenate(rows)
        seeds = rng.integers(0, 2**31 - 1, size=len(indices))
        return indices, seeds

    def __iter__(self):
        i = 0
        while True:
            yield self.batch(i)
            i += 1
