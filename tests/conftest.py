"""Suite-wide settings.

Tensors in the tests are small, and on a busy 2-core machine OpenMP's worker
threads cost far more than they save (a 16-node training step went from 3 ms to
130 ms with 2 threads under load), so tests run torch single-threaded.

Hypothesis: no per-example deadline (a loaded machine makes any wall-clock limit a
coin toss; the suite's pytest-timeout still bounds a test) and no "too slow" health
check, for the same reason. Tests that set their own ``settings`` keep them.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

settings.register_profile("p2pfl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("p2pfl")
