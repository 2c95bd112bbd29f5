"""Fine-tuning an embedding on folder-per-class data with NormSoftmax, and exporting it as a model directory.

``data``, ``config`` and ``tune`` are torch-free at import; ``head``, ``loop``, ``export`` and ``run``
import torch (after :mod:`~lookalike.train.omp`).
"""
