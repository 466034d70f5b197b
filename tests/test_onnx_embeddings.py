"""The embedding model on ONNX Runtime (index.embeddingBackend): exported from the
shipped model folder, nothing downloaded; its vectors against torch's.

Speed is bench/index.py's and bench/retrieval.py's business (never asserted here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hearth_lsp.indexer.embeddings import Embedder, EmbeddingModelMissing, bundled_model_dir
from hearth_lsp.indexer.onnx_encoder import (
    FLOAT_FILE,
    OnnxUnavailable,
    export_folder,
    pipeline,
)

pytestmark = pytest.mark.slow

TEXTS = [
    "def parse_price(text):\n    \"\"\"Turn '€12.50' into 1250 cents.\"\"\"\n"
    "    return int(float(text.strip('€')) * 100)",
    "export function circleArea(radius: number): number {\n  return Math.PI * radius ** 2;\n}",
    "class Inventory:\n    def add(self, item): ...",
    "download a web page over HTTP",
    "x",
    "tax rate " * 400,  # past the 256 wordpieces the model reads: cut the same way
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def torch_vectors():
    torch_embedder = Embedder(backend="torch")
    vectors, counts = torch_embedder.embed_counted(TEXTS)
    return vectors, counts, torch_embedder.name


def test_the_float_export_gives_torch_s_vectors_under_torch_s_name(exports, torch_vectors):
    expected, counts, name = torch_vectors
    onnx = Embedder(backend="onnx", cache=exports)
    assert onnx.onnx is not None and "ONNX Runtime" in onnx.where
    vectors, onnx_counts = onnx.embed_counted(TEXTS)
    assert onnx_counts == counts and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * expected).sum(axis=1).min() > 0.999
    # The same vectors: the cache and the collection carry over from torch's.
    assert onnx.name == name and onnx.dimension == 384 and onnx.max_tokens == 256


def test_int8_vectors_are_close_and_kept_apart_from_float_ones(exports, torch_vectors):
    expected, _, name = torch_vectors
    int8 = Embedder(backend="onnx-int8", cache=exports)
    assert "int8" in int8.where
    cosines = (int8.encode(TEXTS) * expected).sum(axis=1)
    assert cosines.mean() > 0.99 and cosines.min() > 0.97
    assert int8.name == f"{name}-int8"


def test_the_default_on_a_cpu_is_the_float_export(exports):
    embedder = Embedder(cache=exports, device="cpu")
    assert embedder.backend == "onnx" and embedder.problem is None


def test_a_damaged_export_is_made_again(exports, torch_vectors):
    folder = export_folder(bundled_model_dir(), exports, Embedder(
        backend="onnx", cache=exports).name)
    (folder / FLOAT_FILE).write_bytes(b"half a file")
    again = Embedder(backend="onnx", cache=exports)
    assert (folder / FLOAT_FILE).stat().st_size > 1_000_000
    assert (again.encode(TEXTS[:2]) * torch_vectors[0][:2]).sum(axis=1).min() > 0.999


def test_the_export_runs_in_a_process_of_its_own(tmp_path):
    # Tracing and optimizing the model takes ~600 MB a process keeps: an indexing
    # server or the daemon would hold it for good. A fresh process that exports (with
    # a folder that has no export yet) must never import the exporter's modules.
    script = (
        "import sys; from pathlib import Path\n"
        "from hearth_lsp.indexer.embeddings import Embedder\n"
        f"e = Embedder(backend='onnx-int8', cache=Path({str(tmp_path)!r}))\n"
        "assert e.onnx is not None\n"
        "print(sorted(m for m in ('torch.onnx', 'onnxruntime.transformers.optimizer',\n"
        "      'onnxruntime.quantization') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
    assert list(tmp_path.glob("onnx/*/" + FLOAT_FILE))  # and the export is there


def test_a_script_without_a_main_guard_gets_its_export_once(tmp_path):
    # A multiprocessing child would run a script's unguarded top level again (and with
    # it a second export); the export's process is a fresh interpreter instead.
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys; from pathlib import Path\n"
        "from hearth_lsp.indexer.embeddings import Embedder\n"
        "print('ran', file=sys.stderr)\n"
        f"e = Embedder(backend='onnx', cache=Path({str(tmp_path / 'cache')!r}))\n"
        "print(e.onnx is not None, 'torch.onnx' in sys.modules)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True False"
    assert done.stderr.count("ran") == 1


def test_an_export_that_fails_in_its_process_says_why(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), folder)
    (folder / "model.safetensors").write_bytes(b"not weights")  # read by the export only
    with pytest.raises(EmbeddingModelMissing, match=r"the export failed \(exit 1: .+\)"):
        Embedder(folder, backend="onnx", cache=tmp_path / "cache")


def test_a_new_export_removes_the_older_exports_of_that_model_only(tmp_path):
    cache = tmp_path / "exports"
    name = Embedder(backend="torch").name
    older = cache / "onnx" / f"{name}-0123456789abcdef"
    other_model = cache / "onnx" / f"{name}-large-0123456789abcdef"
    for folder in (older, other_model):
        folder.mkdir(parents=True)
        (folder / FLOAT_FILE).write_bytes(b"from an earlier torch")
    Embedder(backend="onnx", cache=cache)
    current = export_folder(bundled_model_dir(), cache, name)
    assert (current / FLOAT_FILE).is_file()
    assert not older.exists() and other_model.exists()


@pytest.fixture
def max_pooled(tmp_path) -> Path:
    """The bundled model with a pooling the ONNX path does not do."""
    folder = tmp_path / "max-pooled"
    shutil.copytree(bundled_model_dir(), folder)
    config = folder / "1_Pooling" / "config.json"
    value = json.loads(config.read_text())
    value.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    config.write_text(json.dumps(value))
    return folder


def test_a_pipeline_it_cannot_run_is_refused_with_the_reason(max_pooled, tmp_path):
    assert pipeline(bundled_model_dir()) == "mean"
    with pytest.raises(OnnxUnavailable, match="pooling_mode_max_tokens"):
        pipeline(max_pooled)
    # Asked for by name: a clear error that says what to set instead.
    with pytest.raises(EmbeddingModelMissing, match='embeddingBackend to "torch"'):
        Embedder(max_pooled, backend="onnx-int8", cache=tmp_path / "exports")
    # "auto": torch runs it, and says why.
    embedder = Embedder(max_pooled, cache=tmp_path / "exports", device="cpu")
    assert embedder.backend == "torch" and "pooling_mode_max_tokens" in (embedder.problem or "")
    assert embedder.encode(["def f(): pass"]).shape == (1, 384)
    assert not (tmp_path / "exports").exists()  # refused before any export


def test_an_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="one of auto, torch, onnx, onnx-int8"):
        Embedder(backend="tensorrt")
