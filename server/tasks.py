"""Task runners: pure prompt/parse code + the generation worker, no LSP.

The LSP handlers and the CLI both call these; they know nothing of pygls.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import docstring
from .engine.base import Completion, ModelInfo, ModelUnavailable
from .engine.worker import GenerationWorker, Priority, wait_for
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DocstringResult:
    function: docstring.FunctionTarget
    text: str
    edit: docstring.Edit
    completion: Completion


async def ready_engine(worker: GenerationWorker) -> ModelInfo:
    """The loaded model's info, waiting for a load in progress."""
    job = worker.load_job
    if worker.state == "loading" and job is not None:
        with contextlib.suppress(ModelUnavailable):  # reported below
            await wait_for(job)
    if worker.engine is None:
        raise ModelUnavailable(worker.error or "no model is loaded")
    return worker.engine.info


async def generate_docstring(
    worker: GenerationWorker, settings: Settings, *, source: str, path: str, line: int,
    key: object = None, chat: bool | None = None, root: Path | None = None,
    regenerate: bool = False, on_piece: Callable[[str], None] | None = None,
) -> DocstringResult:
    """Write a docstring for the Python function at ``line`` (0-based) of ``source``.

    ``chat`` forces chat or completion prompting; None follows the model's template.
    Raises DocstringError when nothing valid comes out: an empty result beats a wrong one.
    """
    fn = docstring.find_function(source, line)
    if fn is None:
        raise docstring.DocstringError(f"no Python function at line {line + 1} of {path}")
    if fn.has_docstring and not regenerate:
        raise docstring.DocstringError(
            f"{fn.qualname} already has a docstring; use 'Regenerate docstring' to replace it")
    info = await ready_engine(worker)
    use_chat = bool(info.chat_template) if chat is None else chat
    sampling = settings.docstring
    prompt = docstring.build_prompt(
        source, fn, path=path, chat_template=info.chat_template if use_chat else None,
        bos_token=info.bos_token, eos_token=info.eos_token,
        context_tokens=info.context_length, max_tokens=sampling.max_tokens, root=root)
    job = worker.submit("docstring", prompt.text, sampling, stop=prompt.stop,
                        start=prompt.start, priority=Priority.USER, key=key,
                        on_piece=on_piece)
    completion: Completion = await wait_for(job)
    if completion.finish_reason == "cancelled":
        raise docstring.DocstringError("cancelled")
    text = docstring.clean_output(completion.text, fn, prompt.stop)
    log.info("docstring for %s: %d tokens in %.2f s (%.1f tok/s)", fn.qualname,
             completion.completion_tokens, completion.total_s, completion.tokens_per_s)
    if not text:
        raise docstring.DocstringError(
            f"the model gave no usable docstring for {fn.qualname} "
            f"(raw output: {completion.text[:80]!r}); try again or configure a larger model")
    edit = docstring.docstring_edit(source, fn, text)
    docstring.validate(source, docstring.apply_edit(source, edit), fn, text)
    return DocstringResult(fn, text, edit, completion)
