"""Suite-wide settings.

Tensors in the tests are small, and on a busy 2-core machine OpenMP's worker
threads cost far more than they save (a 16-node training step went from 3 ms to
130 ms with 2 threads under load), so tests run torch single-threaded.
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)
