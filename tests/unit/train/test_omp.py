"""OMP_WAIT_POLICY is set for training only, not by importing the CLI or the torch-free train modules."""

import os
import subprocess
import sys

import pytest


def _policy_after(imports: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = f"import os; {imports}; print(os.environ.get('OMP_WAIT_POLICY'))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.slow  # imports torch in subprocesses
def test_only_the_torch_training_modules_set_the_wait_policy():
    assert _policy_after("import lookalike.cli, lookalike.train.config, lookalike.train.tune") == "None"
    assert _policy_after("import lookalike.train.head") == "PASSIVE"
