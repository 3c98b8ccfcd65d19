"""Per-sample random streams, so that what a training step draws does not depend on how its batch is split.

torch's global generator is seeded per rank (`ZooModule.on_train_batch_start`), so a draw made for a batch depends
on which samples share the rank: two ranks of B samples draw differently from one process with the same 2B. A
generator per sample, seeded from (run seed, step, the sample's position in the global batch), gives every sample
the same points, shuffles and region picks whatever the number of processes.
"""

from __future__ import annotations

import numpy as np
import torch


def sample_generators(seed: int, step: int, first: int, count: int, device: torch.device) -> list[torch.Generator]:
    """Generators on `device` for positions `first .. first + count - 1` of step `step`'s global batch."""
    generators = []
    for position in range(first, first + count):
        # SeedSequence mixes the three numbers into independent streams (neighbouring seeds would correlate).
        state = np.random.SeedSequence([seed, step, position]).generate_state(1, np.uint64)[0]
        generators.append(torch.Generator(device=device).manual_seed(int(state)))
    return generators
