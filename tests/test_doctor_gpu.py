"""`hearth doctor`'s GPU lines say what this machine has, never a fixed "CPU".

A fake `nvidia-smi` on PATH stands in for a GPU; what doctor says about llama.cpp
and torch is checked against what those libraries themselves report here.
"""

from __future__ import annotations

import os
import stat

import pytest

from hearth_lsp.server import doctor
from hearth_lsp.server.catalog import nvidia_gpus


def fake_nvidia_smi(folder, output: str, code: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\nexit {code}\n")  # builtins only
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return folder


def checks_by_name(root) -> dict[str, doctor.Check]:
    return {c.name: c for c in doctor.run_checks(root, probe=False)}


def offload_supported() -> bool:
    llama_cpp = pytest.importorskip("llama_cpp")
    return bool(llama_cpp.llama_supports_gpu_offload())


def test_a_gpu_seen_by_nvidia_smi_is_reported_with_its_memory(tmp_path, monkeypatch):
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "NVIDIA H200, 143771, 140000")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    gpus, note = nvidia_gpus()
    assert note is None and [g.name for g in gpus] == ["NVIDIA H200"]
    check = checks_by_name(tmp_path)["gpu"]
    assert "NVIDIA H200: 146.8 GB free of 150.8 GB" in check.detail
    if offload_supported():
        assert check.status == "ok"
    else:  # a CPU-only llama.cpp next to a GPU: say how to rebuild
        assert check.status == "warn" and "-DGGML_CUDA=on" in check.detail


def test_no_gpu_and_a_failing_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert doctor.gpu_check(False).detail.startswith("no NVIDIA GPU found")
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "NVIDIA-SMI has failed: no driver", code=9)
    monkeypatch.setenv("PATH", str(bin_dir))
    check = doctor.gpu_check(False)
    assert check.status == "warn" and "nvidia-smi failed: NVIDIA-SMI has failed" in check.detail


def test_embeddings_line_says_where_and_how_the_model_runs(tmp_path):
    torch = pytest.importorskip("torch")
    detail = checks_by_name(tmp_path)["embeddings"].detail
    assert ("on the GPU" in detail) == torch.cuda.is_available()
    assert detail.endswith("index.embeddingBackend = auto")
    if torch.cuda.is_available():
        assert f"torch {torch.__version__}" in detail
    else:  # "auto" on a CPU: the float ONNX export
        onnxruntime = pytest.importorskip("onnxruntime")
        assert f"ONNX Runtime {onnxruntime.__version__} on the CPU, float32" in detail
    torch_line = doctor.embeddings_check("torch").detail
    assert f"torch {torch.__version__}" in torch_line and torch_line.endswith("= torch")


def test_probe_uses_the_layers_the_engine_would():
    assert doctor.probe_gpu_layers(None, offload=True) == -1
    assert doctor.probe_gpu_layers(12, offload=True) == 12
    assert doctor.probe_gpu_layers(None, offload=False) == 0
    assert doctor.probe_gpu_layers(-1, offload=False) == 0
    log = "llama_model_load: ...\nload_tensors: offloaded 31/31 layers to GPU\n"
    assert doctor.parse_offloaded(log) == (31, 31)
    assert doctor.parse_offloaded("load_tensors: CPU_Mapped model buffer") is None


@pytest.mark.slow
def test_doctor_probe_reports_where_the_layers_went(tmp_path, smollm2_path):
    offload = offload_supported()
    check = doctor._probe(smollm2_path, threads=2,
                          gpu_layers=doctor.probe_gpu_layers(None, offload))
    assert check.status == "ok", check.detail
    if offload:
        assert "layers offloaded to the GPU" in check.detail
    else:
        assert "on the CPU (0 layers offloaded)" in check.detail
