"""Fine-tuning an embedding on folder-per-class data with NormSoftmax, and exporting it as a model directory.

``data`` and ``config`` are torch-free; ``head``, ``loop``, ``export`` and ``run`` import torch.
"""

import os

# Idle OpenMP workers must sleep, not spin: on a CPU shared with other processes, spinning torch
# threads made training steps ~1.7x slower (measured on 2 shared cores). Read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
