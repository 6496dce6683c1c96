"""How much work fits on this machine: limits on jobs, epochs, seeds and batch size, checked before any run.

The memory a training needs is estimated from its parameters before it starts, from figures
measured on this project's runs (below), against a share of the machine's memory; work that does
not fit is refused in one line naming the limit.
"""

from __future__ import annotations

import os
from pathlib import Path

from madness.errors import UserError
from madness.model import ARCHITECTURES

GIB = 2**30
# The work one command starts plans for half the machine's memory: the rest is the system's, a
# tracking server's, the other users'.
MEMORY_SHARE = 0.5
# A train process with TensorFlow and MLflow loaded peaks at 1.03 GiB (large network, synthetic
# league, /usr/bin/time -v); a sweep's jobs are such processes.
PROCESS_BYTES = int(1.5 * GIB)
# Each network of a pair (seeds) stays in memory until the pair's model is logged: Keras' model
# and its compiled training program.
NETWORK_BYTES = 32 * 2**20
# Per epoch, each network keeps its two losses (64 bytes as Python floats); the first network's
# curves are also logged as MLflow metrics (332 bytes an epoch, measured with tracemalloc) and
# drawn: 1 KiB covers both.
LOSS_BYTES_PER_EPOCH = 128
CURVE_BYTES_PER_EPOCH = 1024
# Per row of a mini-batch, in float32: the features and every layer's activations, their gradients
# and Adam's temporaries (x 3); 64 inputs stand for the widest feature table.
BATCH_ROW_BYTES = 4 * 3 * (64 + sum(ARCHITECTURES["large"]) + 1)
LARGEST_BATCH = 2**31 - 1  # TensorFlow indexes a batch's rows with 32-bit integers


def machine_memory() -> int:
    """Return the bytes of memory this process may use: the machine's, or its container's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def _size(count: float) -> str:
    return f"{count / GIB:,.1f} GiB" if count >= GIB / 10 else f"{count / 2**20:,.0f} MiB"


def check_work(epochs: int, seeds: int, batch_size: int, jobs: int = 1, memory: int | None = None) -> None:
    """Refuse, in one line naming the limit, `jobs` trainings at once of `seeds` networks for
    `epochs` epochs in batches of `batch_size` that would not fit in this machine's share of
    memory (`memory`: the machine's bytes, read when None)."""
    memory = machine_memory() if memory is None else memory
    budget = int(memory * MEMORY_SHARE)
    where = f"this machine's share ({_size(budget)}, half of its {_size(memory)})"
    most_jobs = budget // PROCESS_BYTES
    if jobs > most_jobs:
        raise UserError(
            f"jobs={jobs} would need about {_size(jobs * PROCESS_BYTES)} ({_size(PROCESS_BYTES)} a training "
            f"process); at most {most_jobs} fit in {where}"
        )
    room = budget // jobs - PROCESS_BYTES  # what one job's training may hold beside its process
    per_job = f"{_size(room)} a job beside its process, in {where}"
    per_epoch = LOSS_BYTES_PER_EPOCH + CURVE_BYTES_PER_EPOCH
    if epochs * per_epoch + NETWORK_BYTES > room:
        raise UserError(
            f"epochs={epochs} would need about {_size(epochs * per_epoch)} for its loss curves "
            f"({per_epoch} bytes an epoch); at most {(room - NETWORK_BYTES) // per_epoch:,} epochs fit in {per_job}"
        )
    network = NETWORK_BYTES + epochs * LOSS_BYTES_PER_EPOCH
    most_seeds = (room - epochs * CURVE_BYTES_PER_EPOCH) // network
    if seeds > most_seeds:
        raise UserError(
            f"seeds={seeds} would need about {_size(seeds * network)} for its networks ({_size(network)} each "
            f"at epochs={epochs}); at most {most_seeds:,} fit in {per_job}"
        )
    most_rows = min(room // BATCH_ROW_BYTES, LARGEST_BATCH)
    if batch_size > most_rows:
        raise UserError(
            f"batch_size={batch_size} would need about {_size(batch_size * BATCH_ROW_BYTES)} "
            f"({BATCH_ROW_BYTES:,} bytes a row); at most {most_rows:,} rows fit in {per_job}"
        )
