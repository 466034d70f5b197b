"""`hearth doctor`: what this machine, install and configuration can do.

One line per check. FAIL means Hearth cannot work until it is fixed; the
command then exits non-zero.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .gguf_info import GGUFError, read_gguf
from .models import ModelNotFound, resolve_model_path
from .settings import Settings, SettingsSources, cache_dir


@dataclass
class Check:
    status: str  # ok | warn | FAIL
    name: str
    detail: str


# Runs in a child process: a llama.cpp build that uses CPU instructions this
# machine cannot execute (AMX in some VMs, AVX-512 elsewhere) dies with a signal,
# and the doctor must live to say so.
_PROBE = """
import json, os, shutil, subprocess, sys, time, llama_cpp
t = time.perf_counter()
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=%d, n_gpu_layers=%d,
                      verbose=True)
loaded = time.perf_counter() - t
out = llm.create_completion("def add(a, b):", max_tokens=8, temperature=0)
vram = None
smi = shutil.which("nvidia-smi")
if smi and %d != 0:
    q = subprocess.run([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True, timeout=10).stdout
    for line in q.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == 2 and cells[0] == str(os.getpid()) and cells[1].isdigit():
            vram = int(cells[1]) * 1024 * 1024
print(json.dumps({"load_s": loaded, "total_s": time.perf_counter() - t,
                  "tokens": out["usage"]["completion_tokens"], "vram": vram}))
"""

_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


def parse_offloaded(log: str) -> tuple[int, int] | None:
    """(layers on the GPU, layers in all) from llama.cpp's load log."""
    m = _OFFLOADED.search(log)
    return (int(m.group(1)), int(m.group(2))) if m else None


def probe_gpu_layers(setting: int | None, offload: bool) -> int:
    """The layers the engine would offload: unset = all when the build can."""
    if not offload:
        return 0
    return -1 if setting is None else setting


def _probe(model: Path, threads: int, gpu_layers: int = 0) -> Check:
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE % (threads, gpu_layers, gpu_layers),
                               str(model)], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return Check("FAIL", "generation", "a 8-token test generation took over 180 s")
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return Check("FAIL", "generation",
                     f"llama.cpp crashed ({name}) generating 8 tokens: the build uses CPU "
                     "instructions this machine cannot run. Rebuild it: CMAKE_ARGS="
                     "'-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF' pip install "
                     "--force-reinstall --no-cache-dir llama-cpp-python")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Check("FAIL", "generation", f"test generation failed: {last}")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    layers = parse_offloaded(proc.stderr)
    if layers and layers[0]:
        where = f"{layers[0]}/{layers[1]} layers offloaded to the GPU"
        if stats.get("vram"):
            where += f", {stats['vram'] / 1e6:.0f} MB of GPU memory"
    else:
        where = "on the CPU (0 layers offloaded)"
    return Check("ok", "generation", f"{stats['tokens']} tokens in {stats['total_s']:.2f} s "
                 f"(load {stats['load_s']:.2f} s) in a child process, {where}")


def gpu_check(offload: bool) -> Check:
    """The NVIDIA GPUs nvidia-smi sees and their memory, and whether llama.cpp can use them."""
    from .catalog import nvidia_gpus

    gpus, note = nvidia_gpus()
    if note:
        return Check("warn", "gpu", note)
    if not gpus:
        return Check("ok", "gpu", "no NVIDIA GPU found (nvidia-smi not on PATH or no device)")
    text = "; ".join(f"{g.name}: {g.vram_free / 1e9:.1f} GB free of {g.vram_total / 1e9:.1f} GB"
                     for g in gpus)
    if not offload:
        return Check("warn", "gpu", f"{text}; this llama-cpp-python build cannot use it: "
                     "rebuild it with CUDA (CMAKE_ARGS='-DGGML_CUDA=on' pip install "
                     "--force-reinstall --no-cache-dir llama-cpp-python)")
    return Check("ok", "gpu", text)


def embeddings_check(backend: str = "auto") -> Check:
    """Where and how the embedding model runs (indexer/embeddings.py): torch on the GPU
    when torch sees one; on a CPU what ``index.embeddingBackend`` picks."""
    from ..indexer.embeddings import Embedder

    try:
        import torch
    except ImportError as exc:
        return Check("warn", "embeddings", f"torch is not importable ({exc}): no dense search")
    setting = f"index.embeddingBackend = {backend}"
    if torch.cuda.is_available():
        return Check("ok", "embeddings", f"torch {torch.__version__} on the GPU "
                     f"({torch.cuda.get_device_name(0)}); {setting}")
    built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
    runs = Embedder.auto_backend("cpu") if backend == "auto" else backend
    if runs == "torch":
        return Check("ok", "embeddings", f"torch {torch.__version__} ({built}) on the CPU; "
                     f"{setting}")
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        return Check("warn" if backend == "auto" else "FAIL", "embeddings",
                     f"{setting} wants ONNX Runtime, but {exc.name} is not importable: "
                     + ("torch runs the model instead" if backend == "auto" else
                        "no dense search until it is installed or the setting is torch"))
    weights = "int8 weights" if runs == "onnx-int8" else "float32"
    return Check("ok", "embeddings", f"ONNX Runtime {onnxruntime.__version__} on the CPU, "
                 f"{weights} (exported from the model folder on first use); {setting}")


def backend_checks(settings: Settings, probe: bool = True) -> list[Check]:
    """The routes, and each model server they name: connected (model, server kind,
    context, structured output) or why not. An unreachable server is a warning where
    its routes fall back to another backend, a failure where it is their only one."""
    import dataclasses

    routes = {f.name: getattr(settings.routes, f.name)
              for f in dataclasses.fields(settings.routes)}
    checks = [Check("ok", "routes", ", ".join(f"{task} -> {' then '.join(names)}"
                                                 for task, names in routes.items()))]
    if not probe:
        return checks
    from .engine.remote import RemoteEngine

    for name, config in settings.backends.items():
        engine = RemoteEngine(config)
        try:
            info = engine.connect()
            checks.append(Check("ok", f"backend {name}", info.describe()))
            checks.extend(Check("warn", f"backend {name}", w) for w in info.warnings)
        except Exception as exc:  # every failure is a line of the report, never a crash
            alone = [task for task, names in routes.items() if names == [name]]
            status = "FAIL" if alone else "warn"
            detail = str(exc) + (f" (the only backend of routes.{', routes.'.join(alone)})"
                                 if alone else "")
            checks.append(Check(status, f"backend {name}", detail))
        finally:
            engine.close()
    return checks


def run_checks(root: Path, probe: bool = True) -> list[Check]:
    checks: list[Check] = []
    py = sys.version_info
    checks.append(Check("ok" if py >= (3, 10) else "FAIL", "python",
                        f"{platform.python_version()} at {sys.executable}"))
    checks.append(Check("ok", "machine", f"{platform.machine()}, {os.cpu_count()} CPUs, "
                        f"{platform.system()} {platform.release()}"))

    resolved = SettingsSources(root=root).resolve()
    settings = resolved.settings
    for problem in resolved.problems:
        checks.append(Check("warn", "settings", problem))

    llama_ok = False
    gpu = False
    try:
        import llama_cpp

        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        where = ("GPU offload supported: all layers go to the GPU unless model.gpuLayers says"
                 if gpu else "CPU only (this build has no GPU support)")
        checks.append(Check("ok", "llama-cpp-python", f"{llama_cpp.__version__}; {where}"))
        info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
        checks.append(Check("ok", "llama.cpp features", info.replace(" | ", ", ").rstrip("|, ")))
        llama_ok = True
    except ImportError as exc:
        checks.append(Check("FAIL", "llama-cpp-python", f"not importable: {exc}; run `make setup`"))
    checks.append(gpu_check(gpu))
    checks.append(embeddings_check(settings.index.embedding_backend))

    cache = cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache):
            pass
        checks.append(Check("ok", "cache dir", str(cache)))
    except OSError as exc:
        checks.append(Check("FAIL", "cache dir", f"{cache} is not writable: {exc}; "
                            "set HEARTH_CACHE_DIR"))

    model_path = None
    try:
        model_path = resolve_model_path(settings.model, cache)
        header = read_gguf(model_path)
        checks.append(Check("ok", "model", (
            f"{header.name} [{header.architecture}], {header.file_size / 1e6:.0f} MB, "
            f"trained context {header.context_length}, allocated {settings.model.context_length}, "
            f"{'chat template' if header.chat_template else 'no chat template'} - {model_path}")))
    except (ModelNotFound, GGUFError) as exc:
        checks.append(Check("FAIL", "model", str(exc)))
        model_path = None

    if probe and llama_ok and model_path is not None:
        from .engine.llama import auto_gpu_layers, default_threads

        layers = probe_gpu_layers(settings.model.gpu_layers, gpu)
        if layers == -1 and settings.model.gpu_layers is None:  # as many as the engine fits
            layers = auto_gpu_layers(model_path, read_gguf(model_path), settings.model)[0]
        checks.append(_probe(model_path, settings.model.threads or default_threads(), layers))

    checks.extend(backend_checks(settings, probe))

    git = shutil.which("git")
    if git:
        version = subprocess.run([git, "--version"], capture_output=True, text=True).stdout.strip()
        checks.append(Check("ok", "git", version))
    else:
        checks.append(Check("warn", "git", "not found: commit messages and the demo need git"))
    return checks
