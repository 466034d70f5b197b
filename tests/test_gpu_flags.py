""".ci/gpu-flags: which accelerator `make setup` builds llama-cpp-python for.

Fake `nvidia-smi`, `nvcc` and `glslc` scripts in a temporary folder stand for the
toolchains; PATH holds only that folder and CUDA_HOME points at an empty one, so
the machine's own CUDA toolkit (or its absence) does not decide anything.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".ci" / "gpu-flags"
BASE = ("-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF "
        "-DGGML_AMX_BF16=OFF")


def _module():
    loader = importlib.machinery.SourceFileLoader("gpu_flags", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_flags", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_flags"] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


gpu_flags = _module()


def fake(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


SMI_OK = 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0123)"'
SMI_NO_DRIVER = ('echo "NVIDIA-SMI has failed because it couldn\'t communicate with the '
                 'NVIDIA driver."; exit 9')
NVCC = 'echo "Cuda compilation tools, release 12.8"'


def run(tmp_path: Path, **env: str) -> tuple[int, dict[str, str], str]:
    environ = {"PATH": str(tmp_path / "bin"), "CUDA_HOME": str(tmp_path / "no-cuda"),
               "HOME": str(tmp_path), **env}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--base-args", BASE], env=environ,
                          capture_output=True, text=True, timeout=60)
    values = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        values[key] = " ".join(shlex.split(value))
    return proc.returncode, values, proc.stderr


def test_gpu_and_toolkit_give_a_cuda_build_with_the_cpu_flags_kept(tmp_path):
    fake(tmp_path / "bin", "nvidia-smi", SMI_OK)
    fake(tmp_path / "bin", "nvcc", NVCC)
    rc, values, err = run(tmp_path)
    assert rc == 0, err
    assert values["HEARTH_ACCEL"] == "cuda"
    args = values["CMAKE_ARGS"].split()
    assert "-DGGML_CUDA=on" in args
    assert set(BASE.split()) <= set(args)  # the AMX crash fix stays in the CPU part
    assert "-DCMAKE_CUDA_ARCHITECTURES=native" in args  # built for the GPU that is here
    assert "CUDACXX" not in values  # nvcc is on PATH
    assert "cuda" in err and "NVIDIA H200" in err  # it says what it chose and why


def test_nothing_found_gives_the_portable_cpu_build(tmp_path):
    (tmp_path / "bin").mkdir()
    rc, values, err = run(tmp_path)
    assert rc == 0, err
    assert values["HEARTH_ACCEL"] == "cpu"
    assert values["CMAKE_ARGS"] == BASE
    assert "llama.cpp build: cpu" in err


def test_a_toolkit_without_a_gpu_builds_for_the_cpu(tmp_path):
    # A CI image with the CUDA toolkit and no GPU (this very machine, say).
    fake(tmp_path / "bin", "nvidia-smi", SMI_NO_DRIVER)
    fake(tmp_path / "bin", "nvcc", NVCC)
    rc, values, err = run(tmp_path)
    assert values["HEARTH_ACCEL"] == "cpu"
    assert "nvidia-smi sees no GPU" in err and "HEARTH_GPU=cuda" in err


def test_a_gpu_without_the_toolkit_says_what_to_install(tmp_path):
    fake(tmp_path / "bin", "nvidia-smi", SMI_OK)
    rc, values, err = run(tmp_path)
    assert values["HEARTH_ACCEL"] == "cpu"
    assert "NVIDIA H200 is present but the CUDA toolkit (nvcc) is not" in err


def test_nvcc_in_cuda_home_is_found_and_named_for_cmake(tmp_path):
    fake(tmp_path / "bin", "nvidia-smi", SMI_OK)
    nvcc = fake(tmp_path / "cuda" / "bin", "nvcc", NVCC)
    rc, values, err = run(tmp_path, CUDA_HOME=str(tmp_path / "cuda"))
    assert values["HEARTH_ACCEL"] == "cuda"
    assert values["CUDACXX"] == str(nvcc)


@pytest.mark.parametrize("kind", ["cpu", "CPU "])
def test_hearth_gpu_cpu_overrides_a_gpu(tmp_path, kind):
    fake(tmp_path / "bin", "nvidia-smi", SMI_OK)
    fake(tmp_path / "bin", "nvcc", NVCC)
    rc, values, err = run(tmp_path, HEARTH_GPU=kind)
    assert values["HEARTH_ACCEL"] == "cpu"
    assert values["CMAKE_ARGS"] == BASE
    assert "HEARTH_GPU=cpu" in err


def test_hearth_gpu_cuda_without_a_toolkit_builds_it_and_warns(tmp_path):
    (tmp_path / "bin").mkdir()
    rc, values, err = run(tmp_path, HEARTH_GPU="cuda")
    assert values["HEARTH_ACCEL"] == "cuda"
    assert "-DGGML_CUDA=on" in values["CMAKE_ARGS"].split()
    # No GPU to build for: llama.cpp's own list of architectures, not `native`.
    assert "CMAKE_CUDA_ARCHITECTURES" not in values["CMAKE_ARGS"]
    assert "no nvcc found" in err


def test_hearth_gpu_vulkan_and_metal(tmp_path):
    (tmp_path / "bin").mkdir()
    _, values, _ = run(tmp_path, HEARTH_GPU="vulkan")
    assert values["HEARTH_ACCEL"] == "vulkan"
    assert values["CMAKE_ARGS"] == BASE + " -DGGML_VULKAN=on"
    _, values, _ = run(tmp_path, HEARTH_GPU="metal")
    assert values["CMAKE_ARGS"] == "-DGGML_METAL=on"  # x86 flags do not apply


def test_an_unknown_hearth_gpu_is_refused(tmp_path):
    (tmp_path / "bin").mkdir()
    rc, values, err = run(tmp_path, HEARTH_GPU="rocm")
    assert rc == 2 and not values
    assert "HEARTH_GPU='rocm'" in err and "cpu, cuda, metal, vulkan" in err


def test_the_vulkan_sdk_is_detected_by_glslc_and_its_header(tmp_path):
    fake(tmp_path / "bin", "glslc", "exit 0")
    header = tmp_path / "sdk" / "include" / "vulkan" / "vulkan.h"
    header.parent.mkdir(parents=True)
    header.write_text("/* vulkan */\n")
    rc, values, err = run(tmp_path, VULKAN_SDK=str(tmp_path / "sdk"))
    assert values["HEARTH_ACCEL"] == "vulkan"
    assert values["CMAKE_ARGS"] == BASE + " -DGGML_VULKAN=on"
    # glslc alone, without the headers, is not the SDK.
    environ = {"PATH": str(tmp_path / "bin"), "CUDA_HOME": str(tmp_path / "no-cuda")}
    assert gpu_flags.choose(environ, base_args=BASE, system="Linux", machine="x86_64",
                            include_dirs=[]).kind == "cpu"


def test_apple_silicon_gets_metal_and_intel_macs_do_not(tmp_path):
    environ = {"PATH": str(tmp_path), "CUDA_HOME": str(tmp_path / "no-cuda")}
    choice = gpu_flags.choose(environ, base_args=BASE, system="Darwin", machine="arm64",
                              include_dirs=[])
    assert (choice.kind, choice.cmake_args) == ("metal", "-DGGML_METAL=on")
    assert gpu_flags.choose(environ, base_args=BASE, system="Darwin", machine="x86_64",
                            include_dirs=[]).kind == "cpu"
    assert gpu_flags.choose(environ, base_args=BASE, system="Linux", machine="aarch64",
                            include_dirs=[]).kind == "cpu"


def test_the_makefile_passes_hearth_gpu_and_the_cpu_flags_to_the_script(tmp_path):
    # `make -n` prints the recipes without running them: the accelerator recorded and
    # the flags handed to the llama-cpp-python build come from .ci/gpu-flags.
    if not any((Path(d) / "make").exists() for d in os.environ.get("PATH", "").split(":")):
        pytest.skip("make not installed")
    proc = subprocess.run(["make", "-n", "setup", "HEARTH_GPU=vulkan",
                           f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert '"vulkan" > ' in text  # the accelerator file records the override
    assert "HEARTH_GPU='vulkan' python3 .ci/gpu-flags --base-args '" + BASE + "'" in text
    assert "llama-cpp-python" in text
