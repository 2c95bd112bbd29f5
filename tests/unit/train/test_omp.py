"""OMP_WAIT_POLICY is set for training only, not by importing the CLI or the torch-free train modules."""

import importlib
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


def test_importing_omp_sets_a_passive_wait_policy_unless_one_is_set(monkeypatch):
    from lookalike.train import omp

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    importlib.reload(omp)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice stays
    importlib.reload(omp)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
