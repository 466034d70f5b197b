"""A sentence-transformers model run by ONNX Runtime instead of torch: the same
vectors (float32 export), or close ones, faster (int8 weights).

Why not sentence-transformers' own ``backend="onnx"``: it needs optimum-onnx, whose
only release (0.1.0) wants transformers < 4.58 while sentence-transformers 6 wants
>= 5, so no install has both. The export it would make is made here, from the model
folder on disk (nothing downloaded):

1. torch.onnx's TorchScript exporter traces the transformer with eager attention
   (the SDPA path traces into a graph ONNX Runtime's optimizer cannot fuse);
2. ONNX Runtime's transformer optimizer fuses BERT's attention, GELU and layer norms
   (2 cores, 600 chunks: 1.19x torch's speed, vectors equal to 1e-7);
3. for ``onnx-int8``, ONNX Runtime's dynamic quantization turns the MatMul weights
   into int8, one scale per output channel; the token-embedding table stays float
   (1.99x torch's speed, cosine to torch's vectors 0.994 on average, 0.988 at worst;
   quantizing every op, per tensor, gave 0.92 and 0.86). The activations are
   quantized on the fly with one scale per batch, so an int8 vector moves a little
   with the other texts in its batch; float vectors do not.

Pooling and normalisation are done here as the folder's modules.json says; only the
usual Transformer -> Pooling (mean or CLS) -> Normalize pipeline is taken, anything
else is refused with the reason (the torch path runs it).

The exported files live in ``<cache>/onnx/<model>-<fingerprint>/``; the fingerprint
covers the folder's config and weights and the exporter's versions, so a changed
model is exported again and a half-written or damaged file is replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# The export (a few seconds here) in its own process gives up past this.
EXPORT_TIMEOUT_S = 900
FLOAT_FILE, INT8_FILE = "model.onnx", "model-int8.onnx"


class OnnxUnavailable(RuntimeError):
    """The ONNX path cannot run this model here; the message says why."""


def _modules(folder: Path) -> list[dict[str, Any]]:
    path = folder / "modules.json"
    if not path.is_file():
        return [{"type": "sentence_transformers.models.Transformer", "path": ""}]
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OnnxUnavailable(f"{path} cannot be read: {exc}") from exc
    if not isinstance(value, list):
        raise OnnxUnavailable(f"{path} is not a list of modules")
    return value


def pipeline(folder: Path) -> str:
    """The pooling ("mean" or "cls") of a folder whose modules.json is the usual
    Transformer -> Pooling -> optional Normalize; OnnxUnavailable otherwise. (Vectors
    are always made unit length: the index asks for them so, with either backend.)"""
    modules = _modules(folder)
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds[:1] != ["Transformer"] or any(k not in ("Pooling", "Normalize") for k in kinds[1:]):
        raise OnnxUnavailable(f"its modules ({' -> '.join(kinds)}) are not Transformer -> "
                              "Pooling -> Normalize")
    pooling = "mean"
    for module, kind in zip(modules, kinds, strict=True):
        if kind == "Pooling":
            try:
                config = json.loads((folder / str(module.get("path", "")) / "config.json")
                                    .read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise OnnxUnavailable(f"its pooling config cannot be read: {exc}") from exc
            modes = sorted(k for k, v in config.items() if k.startswith("pooling_mode") and v)
            if modes == ["pooling_mode_mean_tokens"]:
                pooling = "mean"
            elif modes == ["pooling_mode_cls_token"]:
                pooling = "cls"
            else:
                raise OnnxUnavailable(f"its pooling ({', '.join(modes) or 'none'}) is neither "
                                      "mean nor CLS")
    return pooling


def fingerprint(folder: Path) -> str:
    """Changes when the model or the exporter does."""
    import onnxruntime
    import torch

    digest = hashlib.sha256()
    digest.update(f"{torch.__version__} {onnxruntime.__version__} v1".encode())
    for name in ("config.json", "modules.json", "1_Pooling/config.json"):
        path = folder / name
        if path.is_file():
            digest.update(path.read_bytes())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        stat = path.stat()
        digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def export_folder(folder: Path, cache: Path, name: str) -> Path:
    return cache / "onnx" / f"{name}-{fingerprint(folder)}"


def _export_float(folder: Path, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True,
                                      attn_implementation="eager").eval()
    segments = int(getattr(config, "type_vocab_size", 0) or 0)  # BERT has them, others not
    names = [n for n in INPUTS if n != "token_type_ids" or segments > 0]

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            return self.model(**dict(zip(names, args, strict=True))).last_hidden_state

    # Two texts of different lengths: the trace sees padding and a mask.
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    sample = {"input_ids": ids, "attention_mask": (ids != 0).long(),
              "token_type_ids": torch.zeros_like(ids)}
    # The tracer warns of Python branches taken as constants: the shapes it fixes are
    # the batch's and the length's, both marked dynamic below.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Hidden(), tuple(sample[n] for n in names), str(target),
            input_names=names, output_names=["hidden"], opset_version=17, dynamo=False,
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]})
    if config.model_type == "bert":
        from onnxruntime.transformers import optimizer

        fused = optimizer.optimize_model(
            str(target), model_type="bert", num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size), opt_level=1)
        fused.save_model_to_file(str(target))


def _export_int8(float_file: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(float_file), str(target), weight_type=QuantType.QInt8,
                     per_channel=True, op_types_to_quantize=["MatMul"],
                     # the fused graph's contrib ops leave shape inference without a type
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def exported(folder: Path, cache: Path, name: str, *, int8: bool) -> Path:
    """The exported file for ``folder`` (made now when missing: a few seconds, once)."""
    where = export_folder(folder, cache, name)
    target = where / (INT8_FILE if int8 else FLOAT_FILE)
    if target.is_file():
        return target
    where.mkdir(parents=True, exist_ok=True)
    # Written in a folder of its own and moved in whole: two processes exporting at
    # once, or one killed half way, never leave a half file under the final name.
    with tempfile.TemporaryDirectory(dir=where, prefix=".export-") as tmp:
        float_file = where / FLOAT_FILE
        make_float = not float_file.is_file()
        if make_float:
            log.info("exporting %s to ONNX in %s", folder, where)
        _in_child(str(folder), tmp, str(float_file), make_float, int8)
        if make_float:
            os.replace(Path(tmp) / FLOAT_FILE, float_file)
            _forget_older(where, name)
        if int8:
            os.replace(Path(tmp) / INT8_FILE, target)
    return target


def _in_child(folder: str, tmp: str, float_file: str, make_float: bool, int8: bool) -> None:
    """The export, in a process of its own: tracing and optimizing the model takes ~600 MB
    that a process does not give back (a server or the daemon that exported stayed
    ~600 MB larger); the child's is gone when it exits. A fresh interpreter, not a
    multiprocessing child: that would run a calling script's unguarded top level again.
    Its stderr (the exporter's and the quantizer's warnings) is shown only if it fails."""
    argv = [sys.executable, "-m", __name__, folder, tmp, float_file,
            str(int(make_float)), str(int(int8))]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, errors="replace",
                              timeout=EXPORT_TIMEOUT_S)
    except OSError as exc:  # no process to be had: the export costs this one memory
        log.warning("exporting in this process (no process of its own: %s)", exc)
        _export_steps(folder, tmp, float_file, make_float, int8)
        return
    except subprocess.TimeoutExpired as exc:
        raise OnnxUnavailable(f"the export took more than {EXPORT_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        last = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:]
        raise OnnxUnavailable(f"the export failed (exit {done.returncode}"
                              + (f": {last[0].strip()}" if last else "") + ")")


def _export_steps(folder: str, tmp: str, float_file: str, make_float: bool,
                  int8: bool) -> None:
    """In the child: the float file (when missing), then the int8 one from it."""
    source = Path(tmp) / FLOAT_FILE if make_float else Path(float_file)
    if make_float:
        _export_float(Path(folder), source)
    if int8:
        _export_int8(source, Path(tmp) / INT8_FILE)


def _forget_older(current: Path, name: str) -> None:
    """Exports of ``name`` from before (an updated model or torch or ONNX Runtime gives
    a new fingerprint): ~90 MB each that nothing would read again."""
    older = re.compile(re.escape(name) + r"-[0-9a-f]{16}")
    for other in current.parent.iterdir():
        if other != current and other.is_dir() and older.fullmatch(other.name):
            log.info("removing an older ONNX export: %s", other)
            shutil.rmtree(other, ignore_errors=True)


class OnnxEncoder:
    """``encode(texts)``: the folder's sentence vectors, from ONNX Runtime."""

    def __init__(self, folder: Path, cache: Path, name: str, *, int8: bool,
                 tokenizer: Any) -> None:
        try:
            import onnx  # noqa: F401  (the exporter needs it)
            import onnxruntime as ort
        except ImportError as exc:
            raise OnnxUnavailable(f"{exc.name} is not installed (pip install onnx "
                                  "onnxruntime)") from exc
        self.pooling = pipeline(folder)
        self.tokenizer = tokenizer
        try:
            self.session = self._open(ort, exported(folder, cache, name, int8=int8))
        except OnnxUnavailable:
            raise
        except Exception as exc:  # a damaged file: made again, once
            log.warning("the ONNX export of %s cannot be loaded (%s); exporting it again",
                        name, exc)
            shutil.rmtree(export_folder(folder, cache, name), ignore_errors=True)
            try:
                self.session = self._open(ort, exported(folder, cache, name, int8=int8))
            except Exception as again:
                raise OnnxUnavailable(f"exporting {folder} to ONNX failed: {again}") from again
        self.inputs = [i.name for i in self.session.get_inputs()]

    @staticmethod
    def _open(ort: Any, path: Path) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        # Without this ONNX Runtime's threads spin for a while after each run, taking
        # the cores from llama.cpp decoding in the same process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], max_tokens: int) -> Any:
        import numpy as np

        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_tokens,
                             return_tensors="np")
        feed = {n: np.asarray(enc[n], dtype=np.int64) if n in enc else
                np.zeros_like(enc["input_ids"], dtype=np.int64) for n in self.inputs}
        hidden = self.session.run(None, feed)[0]
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            mask = feed["attention_mask"][..., None].astype(np.float32)
            vectors = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors


__all__ = ["OnnxEncoder", "OnnxUnavailable", "exported", "pipeline"]


if __name__ == "__main__":  # _in_child's process
    folder_arg, tmp_arg, float_arg, make_float_arg, int8_arg = sys.argv[1:]
    _export_steps(folder_arg, tmp_arg, float_arg, make_float_arg == "1", int8_arg == "1")
