"""Shared by the benchmarks: the machine's description and docs/benchmarks.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import random
import re
import subprocess
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Figures written by the scripts in `bench/`; each script rewrites only its own
section. Ratios compare Hearth with the raw library in the same run, on the
same machine, so they travel better than absolute numbers.
"""


def load_average() -> str:
    """The 1-minute load average now: how busy the (shared) machine was."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def wait_for_quiet(max_wait_s: float | None = None, threshold: float = 0.7) -> str:
    """Wait (at most ``max_wait_s``, default $BENCH_QUIET_WAIT_S or 300) until the
    1-minute load average drops under ``threshold``: other jobs on this shared VM
    skew every timing. Returns the load average when the benchmark starts."""
    import time

    if max_wait_s is None:
        max_wait_s = float(os.environ.get("BENCH_QUIET_WAIT_S", "300"))
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        try:
            if os.getloadavg()[0] < threshold:
                break
        except OSError:
            break
        time.sleep(10)
    return load_average()


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]), idle


def busy_fraction(seconds: float = 0.5) -> float:
    """Share of all CPUs busy over ``seconds`` (0..1), whoever uses them."""
    import time

    try:
        total0, idle0 = _cpu_times()
        time.sleep(seconds)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def quiet_moment(max_wait_s: float = 20, busy: float = 0.25) -> bool:
    """Before one timed step: wait (at most ``max_wait_s``) until other processes leave
    the CPUs mostly idle. Returns whether it was quiet when the step started."""
    import time

    deadline = time.monotonic() + max_wait_s
    while True:
        if busy_fraction() < busy:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)


def _process_cpu(pid: int) -> int:
    """Jiffies of CPU used so far by process ``pid`` (all its threads) and its children
    that have finished (e.g. a pool of parsing workers), 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(v) for v in fields[11:15])


class OtherLoad:
    """CPU used by processes other than ``pids`` while the block runs, as a share of
    the whole machine (0..1): how much a neighbour disturbed one timed step.

        with OtherLoad([os.getpid(), server_pid]) as load: ...
        load.share
    """

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.share = 0.0

    def __enter__(self) -> OtherLoad:
        self._busy0, self._idle0 = _cpu_times()
        self._ours0 = sum(_process_cpu(p) for p in self.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        total1, idle1 = _cpu_times()
        ours1 = sum(_process_cpu(p) for p in self.pids)
        elapsed = max(1, total1 - self._busy0)
        busy = elapsed - (idle1 - self._idle0)
        self.share = max(0.0, (busy - (ours1 - self._ours0)) / elapsed)


def llama_build() -> str:
    """llama-cpp-python's version, its CPU features and whether it can offload to a GPU."""
    try:
        import llama_cpp
    except ImportError:
        return "llama-cpp-python not installed"
    features = llama_cpp.llama_print_system_info().decode().strip(" |")
    gpu = "GPU offload supported" if llama_cpp.llama_supports_gpu_offload() else \
        "no GPU offload in this build"
    return f"llama-cpp-python {llama_cpp.__version__} ({gpu}; {features})"


def torch_device() -> str:
    try:
        import torch
    except ImportError:
        return "torch not installed"
    if torch.cuda.is_available():
        return f"torch {torch.__version__}, CUDA device {torch.cuda.get_device_name(0)}"
    return f"torch {torch.__version__}, no CUDA device"


def commit() -> str:
    """HEAD, and the files of server/, indexer/ and bench/ that differ from it (the
    benchmarks import the working tree)."""
    root = str(DOC.parent.parent)
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "server",
                                "indexer", "bench"], capture_output=True, text=True
                               ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    paths = [line[3:] for line in dirty if line[3:]]
    if not paths:
        return f"commit {head}"
    shown = ", ".join(paths[:6]) + (f" and {len(paths) - 6} more" if len(paths) > 6 else "")
    return f"commit {head} plus uncommitted changes to {shown}"


def machine_description(*, model_where: str | None = None, embeddings: bool = False,
                        load_before: str | None = None) -> str:
    """One paragraph: CPU, memory, the llama.cpp build and where the model really ran.

    ``model_where`` is the loaded model's ModelInfo.where ("CPU (2 threads)" or
    "GPU (n/m layers offloaded)"), read from the engine, not assumed.
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        match = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        if match:
            mem = f", {int(match.group(1)) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    parts = [f"Machine: {cpu}, {os.cpu_count()} CPUs{mem}, Python {platform.python_version()}, "
             f"{platform.system()} {platform.release()}; {llama_build()}"]
    if model_where:
        parts.append(f"the model ran on {model_where} (read from the loaded engine)")
    if embeddings:
        parts.append(f"embeddings: {torch_device()}")
    load = f"load average {load_before} before the run, {load_average()} after" if load_before \
        else f"load average {load_average()} after the run"
    parts.append(f"{load}; {commit()}. Run on {datetime.date.today().isoformat()}")
    return "; ".join(parts) + "."


NOISE = ("The VM is shared and noisy: other jobs (test suites) may run on the same 2 "
         "cores during a benchmark, so absolute times vary from run to run; the load "
         "average is recorded with each section. Ratios taken in the same run are "
         "the figures to compare.")


def read_section(name: str) -> str:
    """The body of section ``name`` as the last run wrote it ("" when there is none)."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = DOC.read_text() if DOC.exists() else ""
    m = re.search(re.escape(start) + r"\n(.*?)\n?" + re.escape(end), text, flags=re.S)
    return m.group(1) if m else ""


def write_section(name: str, body: str) -> None:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = DOC.read_text() if DOC.exists() else HEADER
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def bootstrap_interval(a: list[float], b: list[float], seed: int,
                       rounds: int = 2000) -> tuple[float, float]:
    """95% paired bootstrap interval of mean(a) - mean(b) (same queries, resampled)."""
    rng = random.Random(seed)
    n = len(a)
    diffs = []
    for _ in range(rounds):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(sum(a[i] - b[i] for i in idx) / n)
    diffs.sort()
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]
