"""The ONNX Runtime embedder, on tiny hand-made ONNX graphs whose outputs are known exactly (an
identity, a transpose, a cast): devices, session settings, pooling, layouts, batches split across
one-thread sessions, and what each failure says."""

import json
import os

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, save
from PIL import Image

from helpers import tiny_model
from lookalike.models import embedder as emb_module
from lookalike.models.embedder import Embedder, ort_session, providers, with_dimension
from lookalike.models.registry import ModelError, resolve

NO_CUDA = "CUDAExecutionProvider" not in ort.get_available_providers()


def graph_model(folder, nodes, inputs, output, sidecar):
    """``folder/net.onnx`` of ``nodes`` from ``inputs`` to ``output`` (value infos), with ``net.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [output]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, folder / "net.onnx")
    (folder / "net.json").write_text(json.dumps(sidecar))
    return resolve(str(folder / "net.onnx"))


def identity(folder, size=4, dim=3):
    """A model whose (N, 3, S, S) output is its input: its embedding is each channel's mean."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, size, size])
    return graph_model(folder, [helper.make_node("Identity", ["input"], ["out"])], [x], y,
                       {"input_size": size, "mean": [0.25, 0.5, 0.75], "std": [0.5, 0.25, 0.125], "dim": dim})


def batch(n, size=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32)


# ---- devices and sessions


def test_devices_choose_onnx_runtimes_providers(monkeypatch):
    assert providers() == providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ModelError) as err:
        providers("tpu")
    assert str(err.value) == "unknown device 'tpu'; choose from: auto, cpu, cuda"
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(ModelError) as err:
        providers("cuda")
    assert str(err.value) == ("--device cuda needs onnxruntime-gpu (pip install onnxruntime-gpu) and a CUDA GPU; "
                              "this ONNX Runtime has no CUDA provider")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers("auto") == providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers("cpu") == ["CPUExecutionProvider"]


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA provider is present")
def test_a_cuda_provider_that_does_not_start_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    spec = identity(tmp_path)
    with pytest.raises(ModelError) as err:
        Embedder(spec, device="cuda")
    assert str(err.value) == ("--device cuda: ONNX Runtime could not start its CUDA provider (check the CUDA and "
                              "cuDNN libraries onnxruntime-gpu needs)")
    assert Embedder(spec, device="auto").session.get_providers() == ["CPUExecutionProvider"]  # auto: CPU will do


def test_sessions_run_ops_one_at_a_time_with_sleeping_threads(tmp_path):
    path = identity(tmp_path).onnx_path
    options = ort_session(path, 3, ["CPUExecutionProvider"]).get_session_options()
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.log_severity_level == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = ort_session(path, 1, ["CPUExecutionProvider"], spinning=True).get_session_options()
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_threads_default_to_the_usable_cpus_and_the_session_to_onnx_runtimes_own(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 5, 7})
    e = Embedder(identity(tmp_path))
    assert e.threads == 5 and e.session.get_session_options().intra_op_num_threads == 0
    e = Embedder(identity(tmp_path), threads=2)
    assert e.threads == 2 and e.session.get_session_options().intra_op_num_threads == 2
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert emb_module._cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert emb_module._cores() == 1


def test_a_file_onnx_runtime_cannot_load_is_one_line(tmp_path):
    spec = identity(tmp_path)
    spec.onnx_path.write_bytes(b"garbage\nmore")
    with pytest.raises(ModelError) as err:
        Embedder(spec)
    message = str(err.value)
    assert message.startswith(f"cannot load ONNX model {spec.onnx_path}: ") and "\n" not in message
    assert "ONNXRuntimeError" in message  # ONNX Runtime's own reason, its first line


# ---- embedding


def test_maps_are_pooled_to_each_channels_mean_in_the_batchs_order(tmp_path):
    e = Embedder(identity(tmp_path), threads=1)
    x = batch(5)
    out = e.embed(x)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, x.mean(axis=(2, 3)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(e.embed(x.astype(np.float64)), out, atol=1e-6)  # cast to the model's float32
    np.testing.assert_allclose(e.embed(np.asfortranarray(x)), out, atol=1e-6)


def test_images_are_preprocessed_before_the_model(tmp_path):
    e = Embedder(identity(tmp_path), threads=1)
    assert e.preprocess is e.spec.preprocessing
    red = Image.new("RGB", (9, 7), (255, 51, 0))
    blue = Image.new("RGB", (4, 4), (0, 0, 255))
    # (x / 255 - mean) / std with mean 0.25, 0.5, 0.75 and std 0.5, 0.25, 0.125
    np.testing.assert_allclose(e.embed_images([red, blue]), [[1.5, -1.2, -6.0], [-0.5, -2.0, 2.0]], atol=1e-5)


def test_an_nhwc_model_gets_its_inputs_channels_last(tmp_path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 4, 3])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, 4, 4])
    spec = graph_model(tmp_path, [helper.make_node("Transpose", ["input"], ["out"], perm=[0, 3, 1, 2])], [x], y,
                       {"input_size": 4, "mean": [0.5] * 3, "std": [0.5] * 3, "layout": "NHWC", "dim": 3})
    e = Embedder(spec, threads=1)
    xs = batch(3)
    np.testing.assert_allclose(e.embed(xs), xs.mean(axis=(2, 3)), atol=1e-6)  # CHW in, CHW back out


def test_other_outputs_are_flattened_to_float32_rows(tmp_path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 2, 2])
    y = helper.make_tensor_value_info("out", TensorProto.DOUBLE, ["N", 3, 4])
    nodes = [helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [3],
                                                                                  [0, 3, 4])),
             helper.make_node("Reshape", ["input", "shape"], ["r"]),
             helper.make_node("Cast", ["r"], ["out"], to=TensorProto.DOUBLE)]
    spec = graph_model(tmp_path, nodes, [x], y, {"input_size": 2, "mean": [0.5] * 3, "std": [0.5] * 3})
    e = Embedder(spec, threads=1)
    assert e.spec.dim == 12 and e.spec.layers == {"output": 12}  # learnt from a zero image
    xs = batch(2, size=2)
    out = e.embed(xs)
    assert out.dtype == np.float32 and out.shape == (2, 12)
    np.testing.assert_array_equal(out, xs.reshape(2, 12))


def test_a_model_that_refuses_the_input_size_says_so(tmp_path):
    spec = identity(tmp_path, size=4)
    (tmp_path / "net.json").write_text(json.dumps({"input_size": 5, "mean": [0.5] * 3, "std": [0.5] * 3}))
    with pytest.raises(ModelError) as err:
        Embedder(resolve(str(spec.onnx_path)))
    message = str(err.value)
    assert message.startswith("ONNX model net.onnx does not accept (N, 3, 5, 5) inputs: [ONNXRuntimeError]")
    assert "\n" not in message


def test_a_batch_split_across_one_thread_sessions_equals_one_image_at_a_time(tmp_path):
    e = Embedder(identity(tmp_path), threads=3)
    x = batch(7)
    e.embed(x[:5])  # fewer than two images per thread: the one session
    assert e._replicas is None
    out = e.embed(x)  # split 3 + 2 + 2
    pool, sessions = e._replicas
    assert len(sessions) == 3 and pool._max_workers == 3
    assert all(s.get_session_options().intra_op_num_threads == 1 for s in sessions)
    assert all(s.get_providers() == ["CPUExecutionProvider"] for s in sessions)
    np.testing.assert_allclose(out, x.mean(axis=(2, 3)), atol=1e-6)
    assert e._replica_sessions() is e._replicas  # made once
    assert pool._threads and all(t.name.startswith("lookalike-ort") for t in pool._threads)
    two = Embedder(identity(tmp_path), threads=2)
    np.testing.assert_allclose(two.embed(x[:4]), x[:4].mean(axis=(2, 3)), atol=1e-6)
    assert len(two._replicas[1]) == 2  # two threads split too
    six = Embedder(identity(tmp_path), threads=3)
    np.testing.assert_allclose(six.embed(x[:6]), x[:6].mean(axis=(2, 3)), atol=1e-6)
    assert six._replicas is not None  # exactly two a thread: split too
    one = Embedder(identity(tmp_path), threads=1)
    one.embed(x)
    assert one._replicas is None  # one thread: never split


def test_with_dimension_loads_only_a_bare_onnx_file(tmp_path):
    spec = identity(tmp_path / "a")
    assert with_dimension(spec) == (spec, None)  # its sidecar gives the dim
    lite0 = resolve("efficientnet-lite0")
    assert with_dimension(lite0) == (lite0, None)
    bare = tiny_model(tmp_path / "b", dim=5)
    meta = json.loads((bare / "lookalike.json").read_text())
    del meta["dim"]
    (bare / "lookalike.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        with_dimension(resolve(str(bare)), device="tpu")
    spec, e = with_dimension(resolve(str(bare)), threads=1)
    assert spec.dim == 5 and e.spec is spec and e.threads == 1


@pytest.mark.slow
def test_default_model_onnx_features_equal_the_torch_network_they_were_exported_from():
    import torch

    from helpers import sample_photo
    from lookalike.models.export import build_torch

    spec = resolve()
    emb = Embedder(spec, threads=1)
    photos = [sample_photo(name) for name in ("chelsea", "coffee", "astronaut", "rocket", "text")]
    batch = np.stack([emb.preprocess(p) for p in photos])
    onnx_out = emb.embed(batch)
    with torch.no_grad():
        torch_out = build_torch(spec)(torch.from_numpy(batch)).numpy()
    assert onnx_out.shape == torch_out.shape == (5, spec.dim)
    assert np.abs(torch_out).max() > 1  # features on their own scale, so the bound below is tight
    assert np.abs(onnx_out - torch_out).max() < 1e-4


def test_on_a_cuda_build_each_session_is_asked_for_the_devices_providers_only(tmp_path, monkeypatch):
    """A stand-in onnxruntime-gpu whose CUDA provider starts: as ONNX Runtime documents, a session
    given no providers uses every one available (CUDA first), and a name it does not have is warned
    about. A ``--device cpu`` session and the one-thread replicas must stay on the CPU, quietly."""
    import warnings

    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    real = ort.InferenceSession

    class CudaBuild:
        def __init__(self, path, options=None, providers=None):
            asked = available if providers is None else list(providers)
            for name in asked:
                if name not in available:
                    warnings.warn(f"Specified provider '{name}' is not in available provider names.")
            self._providers = [p for p in asked if p in available] or ["CPUExecutionProvider"]
            self._session = real(path, options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return self._providers

        def __getattr__(self, name):
            return getattr(self._session, name)

    monkeypatch.setattr(ort, "get_available_providers", lambda: available)
    monkeypatch.setattr(ort, "InferenceSession", CudaBuild)
    spec, x = identity(tmp_path), batch(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cpu = Embedder(spec, threads=2, device="cpu")
        np.testing.assert_allclose(cpu.embed(x), x.mean(axis=(2, 3)), atol=1e-6)  # split: 3 + 3
        assert cpu.session.get_providers() == ["CPUExecutionProvider"]
        assert [s.get_providers() for s in cpu._replicas[1]] == [["CPUExecutionProvider"]] * 2
        for device in ("cuda", "auto"):
            gpu = Embedder(spec, threads=2, device=device)  # its CUDA provider started: accepted, never split
            assert gpu.session.get_providers() == available
            np.testing.assert_allclose(gpu.embed(x), x.mean(axis=(2, 3)), atol=1e-6)
            assert gpu._replicas is None
