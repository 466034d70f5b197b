"""model.gpuLayers unset: as many layers as free VRAM holds, and a fallback when a
load runs out of memory (server/engine/llama.py).

No GPU is needed: the fitting is arithmetic on a real GGUF header with made-up VRAM
figures, and the fallback runs against a fake ``llama_cpp.Llama`` that fails above
a number of GPU layers the way a CUDA build out of memory does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hearth_lsp.server.engine import llama as engine_llama
from hearth_lsp.server.engine.base import ModelUnavailable
from hearth_lsp.server.engine.llama import (
    GPU_RESERVE,
    LayerSizes,
    LlamaEngine,
    fallback_layers,
    fit_gpu_layers,
)
from hearth_lsp.server.gguf_info import read_gguf
from hearth_lsp.server.models import _smollm2_path
from hearth_lsp.server.settings import ModelSettings

gguf = pytest.importorskip("gguf")

MB = 1024 * 1024


def tiny_llama(path: Path, blocks: int = 3, embd: int = 64, vocab: int = 256,
               tied: bool = False) -> Path:
    """A llama-shaped GGUF with F32 and F16 tensors of known sizes (no real weights)."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(blocks)
    w.add_context_length(2048)
    w.add_embedding_length(embd)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_feed_forward_length(embd * 2)
    w.add_tensor("token_embd.weight", np.zeros((vocab, embd), dtype=np.float16))
    for i in range(blocks):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.zeros(embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((embd, embd), dtype=np.float16))
        w.add_tensor(f"blk.{i}.ffn_up.weight", np.zeros((embd * 2, embd), dtype=np.float16))
    w.add_tensor("output_norm.weight", np.zeros(embd, dtype=np.float32))
    if not tied:
        w.add_tensor("output.weight", np.zeros((vocab, embd), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_tensor_sizes_per_layer_come_from_the_header(tmp_path):
    path = tiny_llama(tmp_path / "tiny.gguf")
    table = read_gguf(path).tensors
    assert table["blk.1.attn_q.weight"] == (64 * 64 * 2, (64, 64))
    assert table["blk.1.attn_norm.weight"][0] == 64 * 4
    sizes = LayerSizes.of(read_gguf(path), table, n_ctx=1024, n_batch=32)
    per_block = 64 * 4 + 64 * 64 * 2 + 128 * 64 * 2
    assert sizes.blocks == [per_block] * 3
    assert sizes.output == 256 * 64 * 2 + 64 * 4  # the head and its norm
    # f16 K and V: 1024 tokens x 2 KV heads x (16 + 16) values x 2 bytes, per layer.
    assert sizes.kv_per_layer == 1024 * 2 * 32 * 2
    assert sizes.compute > 0


def test_a_tied_output_head_costs_the_token_embeddings(tmp_path):
    # llama.cpp copies token_embd to the GPU to serve as the output head.
    path = tiny_llama(tmp_path / "tied.gguf", tied=True)
    sizes = LayerSizes.of(read_gguf(path), read_gguf(path).tensors, n_ctx=1024, n_batch=32)
    assert sizes.output == 256 * 64 * 2 + 64 * 4


def test_fitting_counts_whole_layers_into_free_memory():
    sizes = LayerSizes(blocks=[100] * 10, output=50, kv_per_layer=10, compute=20)
    fit = lambda free, gpus=1: fit_gpu_layers(sizes, free, gpus, reserve=1000)  # noqa: E731
    assert fit(0) == 0
    assert fit(1000 + 20 + 109) == 0  # not even one layer with its KV cache
    assert fit(1000 + 20 + 110) == 1
    assert fit(1000 + 20 + 3 * 110 + 109) == 3
    assert fit(1000 + 20 + 1100 + 49) == 10  # every layer, but not the output head
    assert fit(1000 + 20 + 1100 + 50) == -1  # all of it
    assert fit(2000 + 20 + 1100 + 50, gpus=2) == -1  # a reserve on each GPU
    assert fit(2000 + 20 + 1100 + 49, gpus=2) == 10


def test_fitting_the_bundled_model_at_the_boundary():
    path = _smollm2_path()
    info = read_gguf(path)
    sizes = LayerSizes.of(info, read_gguf(path).tensors, n_ctx=4096, n_batch=512)
    assert len(sizes.blocks) == info.block_count == 30
    assert sum(sizes.blocks) + sizes.output < info.file_size
    exact = GPU_RESERVE + sizes.needed(12)
    assert fit_gpu_layers(sizes, exact) == 12
    assert fit_gpu_layers(sizes, exact - 1) == 11
    assert fit_gpu_layers(sizes, GPU_RESERVE + sizes.needed(31)) == -1
    assert fit_gpu_layers(sizes, GPU_RESERVE) == 0
    # More context, bigger KV cache: fewer layers in the same memory.
    longer = LayerSizes.of(info, read_gguf(path).tensors, n_ctx=32768, n_batch=512)
    assert fit_gpu_layers(longer, exact) < 12


def test_fallback_plan():
    assert fallback_layers(-1, 30) == [-1, 15, 0]
    assert fallback_layers(99, 30) == [99, 15, 0]
    assert fallback_layers(10, 30) == [10, 5, 0]
    assert fallback_layers(1, 30) == [1, 0]
    assert fallback_layers(0, 30) == [0]


# --------------------------------------------------------- loading, out of memory


class FakeLlama:
    """Stands for llama_cpp.Llama on a GPU with room for `room` layers."""

    room = 0
    tried: list[int] = []
    cpu_fails = False

    def __init__(self, *, n_gpu_layers: int, n_ctx: int, **_kw):
        FakeLlama.tried.append(n_gpu_layers)
        too_many = (31 if n_gpu_layers < 0 else n_gpu_layers) > FakeLlama.room  # 30 + head
        if (n_gpu_layers and too_many) or (n_gpu_layers == 0 and FakeLlama.cpu_fails):
            if n_gpu_layers:
                engine_llama._native._receive(
                    "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 812.50 MiB on "
                    "device 0: cudaMalloc failed: out of memory\n")
            raise ValueError(f"Failed to load model from file: {_kw.get('model_path')}")
        self._n_ctx = n_ctx

    def n_ctx(self) -> int:
        return self._n_ctx

    def close(self) -> None:
        pass


@pytest.fixture
def fake_gpu(monkeypatch):
    import llama_cpp

    FakeLlama.tried, FakeLlama.room, FakeLlama.cpu_fails = [], 0, False
    monkeypatch.setattr(llama_cpp, "Llama", FakeLlama)
    monkeypatch.setattr(engine_llama, "gpu_offload_supported", lambda: True)
    monkeypatch.setattr(engine_llama, "free_vram", lambda: None)  # no nvidia-smi
    return monkeypatch


def test_out_of_memory_falls_back_to_fewer_layers(fake_gpu):
    FakeLlama.room = 20
    engine = LlamaEngine(_smollm2_path(), ModelSettings())
    assert FakeLlama.tried == [-1, 15]
    assert engine.info.gpu_layers == 15
    assert engine.info.where == "GPU (15/30 layers offloaded)"
    [warning] = engine.info.warnings
    assert "loading with all of 30 layers on the GPU failed" in warning
    assert "cudaMalloc failed: out of memory" in warning  # llama.cpp's reason
    assert warning.endswith("trying 15 layers")


def test_then_the_cpu(fake_gpu):
    FakeLlama.room = 0
    engine = LlamaEngine(_smollm2_path(), ModelSettings(gpu_layers=12))
    assert FakeLlama.tried == [12, 6, 0]
    assert engine.info.gpu_layers == 0 and engine.info.where.startswith("CPU")
    first, second = engine.info.warnings
    assert "with 12 of 30 layers" in first and first.endswith("trying 6 layers")
    assert "with 6 of 30 layers" in second and second.endswith("running on CPU")


def test_a_model_the_cpu_cannot_load_either_is_unavailable(fake_gpu):
    FakeLlama.cpu_fails = True
    with pytest.raises(ModelUnavailable, match="not even on the CPU"):
        LlamaEngine(_smollm2_path(), ModelSettings())
    assert FakeLlama.tried == [-1, 15, 0]


def test_cpu_only_is_tried_once(fake_gpu):
    FakeLlama.cpu_fails = True
    with pytest.raises(ModelUnavailable, match="could not load"):
        LlamaEngine(_smollm2_path(), ModelSettings(gpu_layers=0))
    assert FakeLlama.tried == [0]


def test_unset_gpu_layers_fit_the_free_vram(fake_gpu):
    FakeLlama.room = 30
    path = _smollm2_path()
    sizes = LayerSizes.of(read_gguf(path), read_gguf(path).tensors, 4096, 512)
    free = GPU_RESERVE + sizes.needed(12) + 1000
    fake_gpu.setattr(engine_llama, "free_vram", lambda: (free, 1))
    engine = LlamaEngine(path, ModelSettings())
    assert FakeLlama.tried == [12]  # the fit, not all-or-nothing
    assert engine.info.gpu_layers == 12
    [note] = engine.info.warnings
    assert "12 of 30 layers fit" in note and "the rest run on the CPU" in note


def test_unset_gpu_layers_with_room_for_everything_offload_all(fake_gpu):
    FakeLlama.room = 31
    fake_gpu.setattr(engine_llama, "free_vram", lambda: (80 * 1024 * MB, 1))
    engine = LlamaEngine(_smollm2_path(), ModelSettings())
    assert FakeLlama.tried == [-1]
    assert engine.info.warnings == []


def test_a_full_gpu_runs_on_the_cpu_and_says_so(fake_gpu):
    fake_gpu.setattr(engine_llama, "free_vram", lambda: (100 * MB, 1))
    engine = LlamaEngine(_smollm2_path(), ModelSettings())
    assert FakeLlama.tried == [0]
    assert "no layer fits" in engine.info.warnings[0]


def test_an_explicit_setting_is_not_refitted(fake_gpu):
    FakeLlama.room = 30
    fake_gpu.setattr(engine_llama, "free_vram", lambda: (100 * MB, 1))
    LlamaEngine(_smollm2_path(), ModelSettings(gpu_layers=25))
    assert FakeLlama.tried == [25]


def test_a_build_without_gpu_support_never_offloads(fake_gpu):
    fake_gpu.setattr(engine_llama, "gpu_offload_supported", lambda: False)
    engine = LlamaEngine(_smollm2_path(), ModelSettings())
    assert FakeLlama.tried == [0] and engine.info.warnings == []
