"""Docstrings, doc comments and file summaries: the model's part of each, validated.

``document_symbol`` is the one entry for a symbol, from the CLI and the LSP alike:
a Python docstring or another language's doc comment, chosen by language.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...engine.base import Completion, ModelInfo
from ...settings import SamplingSettings, Settings
from ..runner import TaskRun, prompt_text, routed, stops
from . import comments as doccomment
from . import file_summary as filedoc
from . import python as docstring

log = logging.getLogger(__name__)


@dataclass
class DocstringResult:
    function: docstring.FunctionTarget
    text: str
    edit: docstring.Edit
    completion: Completion
    # Said to the user beside the edit: e.g. why the docstring is a summary only.
    notice: str | None = None


@routed
async def generate_docstring(
    run: TaskRun, settings: Settings, *, source: str, path: str, line: int,
    chat: bool | None = None, root: Path | None = None,
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
    run.fresh = run.fresh or regenerate  # "Regenerate" samples anew, never the cache
    info = await run.ready()
    # ``chat`` is the local preset's way of prompting; a model server says its own.
    use_chat = bool(info.chat_template) if chat is None or run.remote else chat
    sampling = settings.docstring
    style = docstring.detect_style(source) if sampling.style == "auto" else sampling.style
    room = info.context_length - sampling.max_tokens
    context_tokens = info.context_length
    for _ in range(3):  # the file's share is estimated in characters: the tokenizer decides
        prompt = docstring.build_prompt(
            source, fn, path=path, chat_template=info.chat_template if use_chat else None,
            bos_token=info.bos_token, eos_token=info.eos_token,
            context_tokens=context_tokens, max_tokens=sampling.max_tokens, root=root,
            style=style)
        used = await run.count_tokens(prompt.text)
        if used is None or used <= room:
            break
        # Dense text ("→", "≤", CJK) takes more tokens than characters / 3: less file.
        context_tokens = max(sampling.max_tokens + 64,
                             context_tokens - int((used - room) * 1.2) - 1)
    # Free first (a constraint distorts what the model meant: "A function ..." forced
    # on into "Accept ..."); when the summary is refused (chatter such as "Python
    # docstring for `f`"), once more with its first word constrained: a verb (for a
    # property, a noun phrase's first word too), not the refused answer's own.
    grammar = None
    while True:
        completion = await run.generate("docstring", prompt.text, sampling,
                                        stop=list(prompt.stop), grammar=grammar,
                                        on_piece=on_piece, start=prompt.start,
                                        messages=prompt.messages, prefill=prompt.prefill)
        log.info("docstring for %s: %d tokens in %.2f s (%.1f tok/s)", fn.qualname,
                 completion.completion_tokens, completion.total_s, completion.tokens_per_s)
        try:
            text = _checked_docstring(completion, fn, source, prompt.stop, regenerate)
            break
        except docstring.DocstringError as exc:
            if await run.stale(completion):
                continue
            if grammar is not None:
                raise
            refused = completion.text.split()
            grammar = docstring.summary_grammar(fn, avoid=refused[0].strip("`'\".,:;") if
                                                refused else "")
            if grammar is None:  # a dunder: nothing to constrain the re-ask with
                raise
            log.info("docstring for %s refused (%s): asking again, its first word "
                     "constrained", fn.qualname, exc)
    notice = None
    try:
        docstring.check_params(text, fn)
    except docstring.DocstringError as exc:
        log.info("docstring for %s: %s; asking for the parameters", fn.qualname, exc)
        try:
            text = await _complete_params(run, info, sampling, source, fn, text, path,
                                          use_chat, root)
        except docstring.DocstringError as again:
            # The summary passed every check; descriptions that did not are worse than
            # none: a one-line docstring, and the user is told why.
            summary = docstring.summary_part(text)
            if not summary:
                raise
            text = summary
            notice = (f"the docstring for {fn.qualname} is a summary only: the model could "
                      f"not describe the parameters ({again})")
            log.info("%s", notice)
    edit = docstring.docstring_edit(source, fn, text)
    docstring.validate(source, docstring.apply_edit(source, edit), fn, text)
    await run.keep()
    return DocstringResult(fn, text, edit, completion, notice)


def _checked_docstring(completion: Completion, fn: docstring.FunctionTarget, source: str,
                       stop: tuple[str, ...] | list[str], regenerate: bool) -> str:
    """The docstring in ``completion``, cleaned; DocstringError when there is none."""
    text = docstring.clean_output(completion.text, fn, stop, source)
    if not text:
        raise docstring.DocstringError(
            f"the model gave no usable docstring for {fn.qualname} "
            f"(raw output: {completion.text[:80]!r}); try again or configure a larger model")
    if not regenerate and docstring.copies_another_docstring(source, text):
        raise docstring.DocstringError(
            f"the model copied another docstring of the file for {fn.qualname}: "
            f"{text.splitlines()[0][:80]!r}")
    return text


async def _complete_params(run: TaskRun, info: ModelInfo, sampling: SamplingSettings,
                           source: str, fn: docstring.FunctionTarget, text: str, path: str,
                           chat: bool, root: Path | None) -> str:
    """Keep the model's summary; write the parameter section from a constrained answer."""
    params = docstring.real_params(fn)
    returns = docstring.returns_value(source, fn)
    summary = docstring.summary_part(text)
    if not summary:
        raise docstring.DocstringError(f"the model gave no summary for {fn.qualname}")
    shape: dict = {"params": {p.lstrip("*"): "..." for p in params}}
    if returns:
        shape["returns"] = "..."
    values = {"qualname": fn.qualname, "path": path, "summary": summary,
              "function": docstring.function_source(source, fn), "shape": json.dumps(shape)}
    messages, text = docstring.params_prompt(values, chat=chat and bool(info.chat_template),
                                             root=root)
    prompt = prompt_text(info, messages, text)
    done = await run.generate("docstring-params", prompt,
                           dataclasses.replace(sampling, max_tokens=40 + 40 * len(params)),
                           stop=stops(info), grammar=docstring.params_grammar(params, returns),
                           messages=messages)
    described, returned = docstring.parse_params_answer(done.text, params,
                                                        values["function"])
    chosen = getattr(sampling, "style", "auto")
    style = docstring.detect_style(source) if chosen == "auto" else chosen
    full = summary + "\n\n" + docstring.render_sections(style, described, returned)
    docstring.check_params(full, fn)
    return full



@dataclass
class DocCommentResult:
    function: doccomment.DocTarget
    text: str  # the rendered comment
    edit: docstring.Edit
    completion: Completion


@routed
async def generate_doc_comment(
    run: TaskRun, settings: Settings, *, source: str, path: str, language: str,
    line: int, root: Path | None = None, regenerate: bool = False,
    on_piece: Callable[[str], None] | None = None,
) -> DocCommentResult:
    """A validated doc comment for the declaration at ``line`` (JS/TS, Go, Rust, Java, C/C++)."""
    target = doccomment.find_target(source, language, line)
    if target is None:
        raise doccomment.DocCommentError(f"nothing to document at line {line + 1} of {path}")
    if target.existing is not None and not regenerate:
        raise doccomment.DocCommentError(
            f"{target.qualname} already has a doc comment; use 'Regenerate' to replace it")
    run.fresh = run.fresh or regenerate
    info = await run.ready()
    messages, text = doccomment.build_prompt(source, target, path=path,
                                             chat=bool(info.chat_template), root=root)
    sampling = dataclasses.replace(settings.docstring,
                                   max_tokens=max(settings.docstring.max_tokens,
                                                  60 + 40 * len(target.params)))
    done = await run.generate("doccomment", prompt_text(info, messages, text), sampling,
                           stop=stops(info), grammar=doccomment.grammar(target),
                           on_piece=on_piece, messages=messages)
    content = doccomment.parse_answer(done.text, target, path)
    comment = doccomment.render_comment(content, target)
    edit = doccomment.comment_edit(source, target, comment)
    doccomment.validate(source, doccomment.apply_edit(source, edit), target, comment)
    await run.keep()
    return DocCommentResult(target, comment, docstring.Edit((edit.start, 0), (edit.end, 0),
                                                            edit.new_text), done)



@dataclass
class FileDocResult:
    summary: str
    comment: str
    new_source: str
    completion: Completion


@routed
async def document_file(run: TaskRun, settings: Settings, *, source: str,
                        path: str, language: str, root: Path | None = None,
                        regenerate: bool = False) -> FileDocResult:
    """A validated summary of the whole file, placed at its top."""
    target = filedoc.find_target(source, path, language)
    if target.existing is not None and not regenerate:
        raise filedoc.FileDocError(f"{path} already has file documentation; use 'Regenerate' "
                                   "to replace it")
    run.fresh = run.fresh or regenerate
    info = await run.ready()
    messages, text = filedoc.build_prompt(source, target, path=path,
                                          chat=bool(info.chat_template), root=root)
    done = await run.generate("filedoc", prompt_text(info, messages, text),
                           dataclasses.replace(settings.docstring, max_tokens=90),
                           stop=stops(info, "\n"), grammar=filedoc.GRAMMAR,
                           messages=messages)
    summary = filedoc.check_summary(done.text, target, path)
    comment = filedoc.render_summary(summary, target)
    new_source = filedoc.apply(source, target, comment)
    filedoc.validate(source, new_source, target)
    await run.keep()
    return FileDocResult(summary, comment, new_source, done)


def supported(language: str | None) -> bool:
    """Whether Hearth documents symbols of ``language``."""
    return language == "python" or doccomment.supported(language)


def find_symbol(source: str, language: str | None, line: int):
    """The function (Python) or declaration (others) at ``line``, or None."""
    if language == "python":
        return docstring.find_function(source, line)
    if language is not None and doccomment.supported(language):
        try:
            return doccomment.find_target(source, language, line)
        except doccomment.DocCommentError:
            return None
    return None


async def document_symbol(
    run: TaskRun, settings: Settings, *, source: str, path: str, language: str | None,
    line: int, root: Path | None = None, regenerate: bool = False, chat: bool | None = None,
    on_piece: Callable[[str], None] | None = None,
) -> DocstringResult | DocCommentResult:
    """A docstring (Python) or doc comment (JS/TS, Go, Rust, Java, C/C++) for the
    symbol at ``line``; raises a Refusal when nothing valid comes out."""
    if language == "python":
        return await generate_docstring(run, settings, source=source, path=path, line=line,
                                        chat=chat, root=root, regenerate=regenerate,
                                        on_piece=on_piece)
    if language is not None and doccomment.supported(language):
        return await generate_doc_comment(run, settings, source=source, path=path,
                                          language=language, line=line, root=root,
                                          regenerate=regenerate, on_piece=on_piece)
    raise docstring.DocstringError(f"Hearth cannot document {language or 'these'} files")
