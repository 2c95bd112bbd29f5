"""ONNX Runtime vs torch eager throughput of every available model, same network, same batch, same run.

For each registry model whose weights are here (the FID Inception with random weights saved in the
official layout when the real file is absent: speed does not depend on weight values, and the JSON
says so), on one batch of real photos (scikit-image samples, preprocessed as the model does):
  * torch eager (``torch.no_grad``, ``torch.set_num_threads(threads)``), with ``OMP_WAIT_POLICY=PASSIVE``
    unless ``--torch-spinning``: on a shared machine torch's spinning OpenMP threads run it several
    times slower, which would flatter ONNX Runtime (whose session does not spin either);
  * ONNX Runtime fp32: lookalike's own :class:`~lookalike.models.embedder.Embedder` (the batch
    split across ``threads`` one-thread sessions), its single session (``ORT_ENABLE_ALL``,
    ``threads`` intra-op threads, one inter-op thread, sequential execution, no spinning), the
    same with spinning threads, and the Embedder at other batch sizes;
  * ONNX Runtime int8: static QDQ quantisation (per-channel int8 weights, uint8 activations),
    calibrated on other real photos, and its effect on the features of 30 photos and edited
    variants (cosine to the fp32 features; are the top-5 neighbour lists unchanged?).
The runners are interleaved within each repetition and the medians reported, so load from other
processes hits them alike. ``gflop_per_s`` (2 × the convolutions' and linear layers' multiply-adds
per image × img/s) says how close each runner comes to ``matmul_gflop_per_s``, the rate of a large
fp32 matrix product (NumPy's BLAS) on the same threads: the machine's practical arithmetic ceiling.
Prints JSON; ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bench import emit

EVAL_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "horse", "hubble_deep_field",
               "immunohistochemistry", "retina")
CALIBRATION_PHOTOS = ("moon", "text", "cat", "page", "clock", "brick", "grass", "gravel", "colorwheel", "logo")


def photo(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.dtype != np.uint8:
        arr = (arr * 255).astype(np.uint8) if arr.max() <= 1 else arr.astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def eval_images() -> list[Image.Image]:
    """30 images: 10 photos, each with a mirrored and a centre-cropped copy (its true neighbours)."""
    out = []
    for name in EVAL_PHOTOS:
        img = photo(name)
        w, h = img.size
        out += [img, ImageOps.mirror(img), img.crop((w // 10, h // 10, w - w // 10, h - h // 10))]
    return out


def calibration_images() -> list[Image.Image]:
    """20 images disjoint from the evaluation set: other photos and brightened evaluation ones."""
    return ([photo(n) for n in CALIBRATION_PHOTOS]
            + [ImageEnhance.Brightness(photo(n)).enhance(1.2) for n in EVAL_PHOTOS])


def random_inception_weights(folder: Path) -> Path:
    """A random FIDInceptionV3 state dict with the official keys (loads with ``strict=True``)."""
    import torch

    from lookalike.models import inception_fid

    torch.manual_seed(0)
    path = folder / "random-inception.pth"
    torch.save(inception_fid.FIDInceptionV3().state_dict(), path)
    return path


def quantize_int8(fp32: Path, out: Path, calibration: np.ndarray) -> None:
    """Static QDQ int8 quantisation of ``fp32`` calibrated on ``calibration`` (N, 3, S, S) inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.batches, None)

    pre = out.with_name(out.stem + "-pre.onnx")
    quant_pre_process(os.fspath(fp32), os.fspath(pre))
    quantize_static(os.fspath(pre), os.fspath(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def top5(features: np.ndarray) -> np.ndarray:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :5]


def compare(features: np.ndarray, reference: np.ndarray) -> dict:
    """Cosine of each feature vector to its reference, and how many top-5 neighbour lists are unchanged."""
    cos = (features * reference).sum(1) / (np.linalg.norm(features, axis=1) * np.linalg.norm(reference, axis=1))
    same = (top5(features) == top5(reference)).all(axis=1)
    return {"cosine_min": round(float(cos.min()), 4), "cosine_median": round(float(np.median(cos)), 4),
            "top5_lists_unchanged": f"{int(same.sum())}/{len(same)}"}


def multiply_adds(net, x: np.ndarray) -> int:
    """Multiply-adds of the convolutions and linear layers of ``net`` for one input image."""
    import torch

    total = 0

    def count(module, _inputs, output) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        else:
            k = module.in_features
        total += output.numel() * k

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.from_numpy(x[:1]))
    for hook in hooks:
        hook.remove()
    return total


def matmul_gflop_per_s(threads: int, reps: int, n: int = 2048) -> float:
    """The machine's practical fp32 ceiling: NumPy's BLAS n x n matrix product on ``threads``, median of ``reps``."""
    from threadpoolctl import threadpool_limits

    a, b = np.random.rand(2, n, n).astype(np.float32)
    times = []
    with threadpool_limits(threads, "blas"):
        for _ in range(reps + 1):
            started = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - started)
    return round(2 * n ** 3 / statistics.median(times[1:]) / 1e9, 1)


def bench_model(name: str, args, tmp: Path) -> dict:
    import torch

    from lookalike.models import fid_weights
    from lookalike.models.embedder import Embedder, ort_session
    from lookalike.models.export import build_torch, onnx_file
    from lookalike.models.registry import REGISTRY, resolve

    base = REGISTRY[name]
    weights, note = None, None
    if base.family == "inception-fid" and not base.weights_present():
        weights = random_inception_weights(tmp)
        note = (f"random weights in the official layout ({fid_weights.WEIGHTS_FILENAME} absent); speed does not "
                "depend on weight values, feature quality figures do")
    spec = resolve(name, weights=weights)
    fp32 = onnx_file(spec)
    net = build_torch(spec).eval()
    images = eval_images()
    x_eval = np.stack([spec.preprocessing(img) for img in images])
    batch = x_eval[: args.batch]
    embedder = Embedder(spec, args.threads, "cpu")
    runners = {"torch_eager": lambda: net(torch.from_numpy(batch)).numpy(), "ort_fp32": lambda: embedder.embed(batch)}
    sessions = {"ort_fp32_one_session": embedder.session,
                "ort_fp32_spinning": ort_session(fp32, args.threads, ["CPUExecutionProvider"], spinning=True)}
    result = {"model": name, "layer": spec.layer, "dim": spec.dim, "input_size": spec.preprocessing.size,
              "onnx_fp32_mb": round(fp32.stat().st_size / 1e6, 1)}
    if note:
        result["weights"] = note
    if name in args.int8:
        int8 = tmp / f"{name}-int8.onnx"
        quantize_int8(fp32, int8, np.stack([spec.preprocessing(img) for img in calibration_images()]))
        sessions["ort_int8"] = ort_session(int8, args.threads, ["CPUExecutionProvider"])
        result["onnx_int8_mb"] = round(int8.stat().st_size / 1e6, 1)
    for key, sess in sessions.items():
        runners[key] = lambda s=sess: s.run(None, {"input": batch})[0]
    sizes = {f"ort_fp32_batch{n}": n for n in args.other_batches if n != args.batch}
    for key, n in sizes.items():
        x = np.resize(x_eval, (n, *x_eval.shape[1:]))  # real photos, repeated to fill the batch
        runners[key] = lambda x=x: embedder.embed(x)
    rates: dict[str, list[float]] = {key: [] for key in runners}
    with torch.no_grad():
        for run in runners.values():  # warm-up
            run()
        for _ in range(args.reps):
            for key, run in runners.items():
                started = time.perf_counter()
                run()
                rates[key].append(sizes.get(key, len(batch)) / (time.perf_counter() - started))
        torch_features = net(torch.from_numpy(x_eval)).numpy()
    result["img_per_s"] = {key: round(statistics.median(r), 2) for key, r in rates.items()}
    torch_rate = result["img_per_s"]["torch_eager"]
    result["speedup_vs_torch_eager"] = {key: round(r / torch_rate, 2) for key, r in result["img_per_s"].items()
                                        if key != "torch_eager"}
    macs = multiply_adds(net, x_eval)
    result["gmac_per_image"] = round(macs / 1e9, 3)
    result["gflop_per_s"] = {key: round(2 * macs * r / 1e9, 1) for key, r in result["img_per_s"].items()}
    fp32_features = embedder.embed(x_eval)
    result["ort_fp32_vs_torch"] = {"max_abs_diff": float(np.abs(fp32_features - torch_features).max()),
                                   **compare(fp32_features, torch_features)}
    if "ort_int8" in sessions:
        result["ort_int8_vs_fp32"] = compare(sessions["ort_int8"].run(None, {"input": x_eval})[0], fp32_features)
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="registry names [default: every model whose weights are here, "
                                                    "the FID Inception always]")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--other-batches", type=int, nargs="*", default=[1, 32],
                        help="also time lookalike's ONNX Runtime session at these batch sizes")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions; medians are reported")
    parser.add_argument("--int8", nargs="*", default=["efficientnet-lite0", "inception-v3-fid"],
                        help="models to also quantise to int8")
    parser.add_argument("--torch-spinning", action="store_true", help="leave torch's OpenMP threads spinning "
                                                                       "(the libgomp default)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if not args.torch_spinning:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read when torch loads OpenMP: before the first torch import

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LOOKALIKE_CACHE"] = str(Path(tmp, "cache"))  # fresh exports, nothing left behind
        import torch

        from lookalike.models.registry import REGISTRY

        torch.set_num_threads(args.threads)
        names = args.models or [n for n, s in REGISTRY.items() if s.family == "inception-fid" or s.weights_present()]
        load_before = os.getloadavg()
        models = [bench_model(name, args, Path(tmp)) for name in names]
        matmul = matmul_gflop_per_s(args.threads, args.reps)
    report = {"benchmark": "models", "batch": args.batch, "threads": args.threads, "reps": args.reps,
              "cpu_count": os.cpu_count(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
              "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
              "matmul_gflop_per_s": matmul, "models": models}
    emit(report, args.out)


if __name__ == "__main__":
    main()
