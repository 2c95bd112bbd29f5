"""Imported by the training modules before torch: idle OpenMP workers must sleep, not spin.

On a CPU shared with other processes, spinning torch threads made training steps ~1.7x slower
(measured on 2 shared cores). OpenMP reads ``OMP_WAIT_POLICY`` when torch loads, so it is set here,
where only training gets it, and not by importing :mod:`lookalike.train` (every CLI command does).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
