"""Read a GGUF file's header without loading the model.

llama.cpp answers a bad file with a bare "Failed to load model"; reading the
header ourselves lets Hearth say *what* is wrong (not GGUF, truncated, which
architecture) and lets ``hearth doctor`` describe a model in milliseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
MAX_DIMS = 4  # GGML_MAX_DIMS
# No metadata string is near this (a chat template: a few KiB); a corrupt length in a
# file of gigabytes would be read into memory whole.
MAX_STRING = 16 << 20

# ggml tensor types: (elements per block, bytes per block). Used to check that
# the file really holds all the tensor data its header promises.
GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
    8: (32, 34), 9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144),
    13: (256, 176), 14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74),
    18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The file is missing, not GGUF, or damaged. The message names the path."""


@dataclass
class GGUFInfo:
    path: Path
    file_size: int
    version: int
    tensor_count: int
    metadata: dict[str, Any] = field(default_factory=dict)
    bos_token: str = ""
    eos_token: str = ""
    # Token id -> text for every id the metadata names (tokenizer.ggml.*_token_id).
    special_tokens: dict[int, str] = field(default_factory=dict)
    # Token text -> id for the FIM tokens llama.cpp recognises by their text.
    fim_texts: dict[str, int] = field(default_factory=dict)
    # Elements in all tensors (the parameter count) and, per ggml type, the
    # number of elements stored in that type.
    parameters: int = 0
    tensor_types: dict[int, int] = field(default_factory=dict)
    # Every tensor's name -> (bytes, shape): what offloading each part costs.
    tensors: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or self.path.stem)

    @property
    def context_length(self) -> int | None:
        return _count(self.metadata.get(f"{self.architecture}.context_length"))

    @property
    def block_count(self) -> int | None:
        return _count(self.metadata.get(f"{self.architecture}.block_count"))

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None


def _count(value: Any) -> int | None:
    """A count the metadata gives, or None when it is not one (a string, a float)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path, size: int):
        self.fh, self.path, self.size = fh, path, size

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise GGUFError(f"{self.path}: file is truncated (header ends early); "
                            "download or copy it again")
        return data

    def scalar(self, kind: int) -> Any:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > min(self.size, MAX_STRING):
            raise GGUFError(f"{self.path}: corrupt header (string of {n} bytes)")
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, kind: int, keep: bool = True, pick: tuple[int, ...] = ()) -> Any:
        if kind in _SCALARS:
            return self.scalar(kind)
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            (elem, count) = struct.unpack("<IQ", self.read(12))
            if count > self.size:  # each item takes a byte at least
                raise GGUFError(f"{self.path}: corrupt header (array of {count} items)")
            keep = keep and count <= _KEEP_ARRAYS  # also an array inside a kept one
            if elem in _SCALARS and not keep:
                self.fh.seek(struct.calcsize(_SCALARS[elem]) * count, 1)
                return None
            picked: dict[int, Any] = {}
            items = []
            for i in range(count):
                v = self.value(elem, keep=keep)  # an array of arrays is skipped whole too
                if keep:
                    items.append(v)
                elif i in pick:
                    picked[i] = v
            return items if keep else picked
        raise GGUFError(f"{self.path}: corrupt header (unknown value type {kind})")

    def scan_strings(self, pick: set[int],
                     texts: frozenset[str]) -> tuple[dict[int, str], dict[str, int]]:
        """Walk a string array: the items at `pick`, and where each of `texts` is."""
        (elem, count) = struct.unpack("<IQ", self.read(12))
        picked: dict[int, str] = {}
        found: dict[str, int] = {}
        if elem != _STRING:
            self.fh.seek(-12, 1)
            self.value(_ARRAY, keep=False)
            return picked, found
        for i in range(count):
            v = self.string()
            if i in pick:
                picked[i] = v
            if v in texts and v not in found:
                found[v] = i
        return picked, found


# Large arrays are skipped, not kept: a vocabulary is ~50k strings.
_KEEP_ARRAYS = 64

# Fill-in-the-middle tokens that llama.cpp finds by their text when the metadata
# does not name them (Qwen, StarCoder/SmolLM, DeepSeek, CodeLlama, CodeGemma, GLM).
FIM_TEXTS = {
    "pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uff5cfim\u2581begin\uff5c>",
            "<PRE>", "\u2581<PRE>", "<|code_prefix|>"),
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uff5cfim\u2581hole\uff5c>",
            "<SUF>", "\u2581<SUF>", "<|code_suffix|>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uff5cfim\u2581end\uff5c>",
            "<MID>", "\u2581<MID>", "<|code_middle|>"),
}
_FIM_TEXT_SET = frozenset(t for texts in FIM_TEXTS.values() for t in texts)


def read_gguf(path: str | Path) -> GGUFInfo:
    """Parse the header; raise GGUFError with a fix when the file is not usable."""
    p = Path(path).expanduser()
    if not p.exists():
        raise GGUFError(f"{p}: no such file; set model.path to an existing .gguf file "
                        "or model.preset to a bundled model")
    if not p.is_file():
        raise GGUFError(f"{p}: not a file; model.path must name a .gguf file")
    size = p.stat().st_size
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise GGUFError(f"{p}: cannot open ({exc.strerror})") from exc
    with fh:
        try:
            return _parse(fh, p, size)
        except GGUFError:  # (a ValueError itself)
            raise
        except (ValueError, OverflowError, ArithmeticError, MemoryError, struct.error) as exc:
            # Numbers no real file holds (an alignment of 0, a count of 2**63): one such
            # file in a model store took every `hearth models` command down.
            raise GGUFError(f"{p}: corrupt header ({type(exc).__name__}: {exc})") from None


def _parse(fh: BinaryIO, p: Path, size: int) -> GGUFInfo:
    r = _Reader(fh, p, size)
    if fh.read(4) != MAGIC:
        raise GGUFError(f"{p}: not a GGUF model file (wrong magic bytes); "
                        "Hearth needs a llama.cpp GGUF file")
    version = r.scalar(4)
    if version < 2:
        raise GGUFError(f"{p}: GGUF version {version} is too old; convert it again")
    tensor_count, kv_count = struct.unpack("<QQ", r.read(16))
    info = GGUFInfo(p, size, version, tensor_count)
    tokens_at = -1
    for _ in range(kv_count):
        key = r.string()
        kind = r.scalar(4)
        if kind == _ARRAY:
            pos = fh.tell()
            (elem, count) = struct.unpack("<IQ", r.read(12))
            fh.seek(pos)
            if key == "tokenizer.ggml.tokens":
                tokens_at = pos  # come back for BOS/EOS once their ids are known
            kept = r.value(kind, keep=count <= _KEEP_ARRAYS)
            info.metadata[key] = kept if count <= _KEEP_ARRAYS else f"<{count} items>"
        else:
            info.metadata[key] = r.value(kind)
    if tokens_at >= 0:
        ids = {int(v) for k, v in info.metadata.items()
               if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")
               and isinstance(v, int) and not isinstance(v, bool)}
        resume = fh.tell()
        fh.seek(tokens_at)
        picked, info.fim_texts = r.scan_strings(ids, _FIM_TEXT_SET)
        info.special_tokens = dict(sorted(picked.items()))
        fh.seek(resume)
        bos, eos = (_count(info.metadata.get(f"tokenizer.ggml.{k}_token_id"))
                    for k in ("bos", "eos"))
        info.bos_token = picked.get(bos, "") if bos is not None else ""
        info.eos_token = picked.get(eos, "") if eos is not None else ""
    # Tensor infos: check the data they describe is all there.
    end = 0
    for _ in range(tensor_count):
        name = r.string()
        (n_dims,) = struct.unpack("<I", r.read(4))
        if n_dims > MAX_DIMS:
            raise GGUFError(f"{p}: corrupt header (a tensor of {n_dims} dimensions)")
        dims = struct.unpack(f"<{n_dims}Q", r.read(8 * n_dims))
        ggml_type, offset = struct.unpack("<IQ", r.read(12))
        n = 1
        for d in dims:
            n *= d
        info.parameters += n
        info.tensor_types[ggml_type] = info.tensor_types.get(ggml_type, 0) + n
        block = GGML_BLOCKS.get(ggml_type)
        nbytes = (n // block[0]) * block[1] if block else 0
        end = max(end, offset + nbytes)
        # (an unknown type is sized as 2 bytes an element: f16, the common case)
        info.tensors[name] = (nbytes if block else n * 2, tuple(dims))
    align = info.metadata.get("general.alignment", 32)
    if _count(align) is None or align < 1 or align & (align - 1):
        raise GGUFError(f"{p}: corrupt header (alignment {align!r})")
    data_start = -(-fh.tell() // align) * align
    if data_start + end > size:
        missing = data_start + end - size
        raise GGUFError(f"{p}: file is truncated ({missing} bytes of tensor data "
                        "missing); download or copy it again")
    return info


def find_tokens(path: str | Path, wanted: set[str] | frozenset[str]) -> set[str]:
    """Which of ``wanted`` are token strings of the file's vocabulary.

    Reads the whole vocabulary (a few hundred thousand short strings: ~0.2 s for
    262k tokens), so callers keep the answer per file. An unreadable file or one
    without a vocabulary has none of them.
    """
    p = Path(path).expanduser()
    try:
        size = p.stat().st_size
        fh = p.open("rb")
    except OSError:
        return set()
    found: set[str] = set()
    with fh:
        r = _Reader(fh, p, size)
        try:
            if fh.read(4) != MAGIC:
                return found
            r.scalar(4)
            _tensors, kv_count = struct.unpack("<QQ", r.read(16))
            for _ in range(kv_count):
                key = r.string()
                kind = r.scalar(4)
                if key != "tokenizer.ggml.tokens" or kind != _ARRAY:
                    r.value(kind, keep=kind != _ARRAY)
                    continue
                elem, count = struct.unpack("<IQ", r.read(12))
                if elem != _STRING:
                    return found
                for _ in range(count):
                    token = r.string()
                    if token in wanted:
                        found.add(token)
                return found
        except (GGUFError, struct.error, KeyError):
            return found
    return found
