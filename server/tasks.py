"""Task runners: pure prompt/parse code + the generation worker, no LSP.

The LSP handlers and the CLI both call these; they know nothing of pygls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import commit_message, doccomment, docstring, filedoc, gitdiff, review, sandbox, testgen
from .chat_format import ChatTemplateError, Message, merge_system, render_chat
from .engine.base import Completion, ModelInfo, ModelUnavailable
from .engine.worker import GenerationWorker, Priority, wait_for
from .prompts import task_prompt
from .settings import SamplingSettings, Settings

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
        context_tokens=info.context_length, max_tokens=sampling.max_tokens, root=root,
        style=docstring.detect_style(source) if sampling.style == "auto" else sampling.style)
    completion = await _generate(worker, "docstring", prompt.text, sampling,
                                 stop=list(prompt.stop), grammar=None, key=key,
                                 on_piece=on_piece, start=prompt.start)
    text = docstring.clean_output(completion.text, fn, prompt.stop)
    log.info("docstring for %s: %d tokens in %.2f s (%.1f tok/s)", fn.qualname,
             completion.completion_tokens, completion.total_s, completion.tokens_per_s)
    if not text:
        raise docstring.DocstringError(
            f"the model gave no usable docstring for {fn.qualname} "
            f"(raw output: {completion.text[:80]!r}); try again or configure a larger model")
    if not regenerate and docstring.copies_another_docstring(source, text):
        raise docstring.DocstringError(
            f"the model copied another docstring of the file for {fn.qualname}: "
            f"{text.splitlines()[0][:80]!r}")
    try:
        docstring.check_params(text, fn)
    except docstring.DocstringError as exc:
        log.info("docstring for %s: %s; asking for the parameters", fn.qualname, exc)
        text = await _complete_params(worker, info, sampling, source, fn, text, path, key,
                                      use_chat, root)
    edit = docstring.docstring_edit(source, fn, text)
    docstring.validate(source, docstring.apply_edit(source, edit), fn, text)
    return DocstringResult(fn, text, edit, completion)


async def _complete_params(worker: GenerationWorker, info: ModelInfo, sampling: SamplingSettings,
                           source: str, fn: docstring.FunctionTarget, text: str, path: str,
                           key: object, chat: bool, root: Path | None) -> str:
    """Keep the model's summary; write the parameter section from a constrained answer."""
    import json

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
    messages, text = task_prompt("docstring.params", root,
                                 chat=chat and bool(info.chat_template), **values)
    prompt = prompt_text(info, messages, text)
    done = await _generate(worker, "docstring-params", prompt,
                           dataclasses.replace(sampling, max_tokens=40 + 40 * len(params)),
                           stop=_stops(info), grammar=docstring.params_grammar(params, returns),
                           key=key)
    described, returned = docstring.parse_params_answer(done.text, params)
    chosen = getattr(sampling, "style", "auto")
    style = docstring.detect_style(source) if chosen == "auto" else chosen
    full = summary + "\n\n" + docstring.render_sections(style, described, returned)
    docstring.check_params(full, fn)
    return full


# ------------------------------------------------------------------ helpers


def prompt_text(info: ModelInfo, messages: list[Message] | None, completion: str) -> str:
    """Chat messages through the model's template, or the completion-style text."""
    if messages is None or not info.chat_template:
        return completion or "\n\n".join(m.content for m in messages or [])
    try:
        return render_chat(info.chat_template, messages, bos_token=info.bos_token,
                           eos_token=info.eos_token)
    except ChatTemplateError:  # e.g. templates that refuse a system role
        return render_chat(info.chat_template, merge_system(messages),
                           bos_token=info.bos_token, eos_token=info.eos_token)


def _stops(info: ModelInfo, *extra: str) -> list[str]:
    return [*extra, *(s for s in (info.eos_token, "<|im_end|>", "<end_of_turn>") if s)]


async def _generate(worker: GenerationWorker, kind: str, prompt: str, sampling: SamplingSettings,
                    *, stop: list[str], grammar: str | None, key: object,
                    on_piece: Callable[[str], None] | None = None,
                    start: str | None = None) -> Completion:
    """One generation, answered from the result cache when this exact request ran before."""
    cache = worker.results
    cache_key = None
    if cache is not None and worker.engine is not None:
        info = worker.engine.info
        cache_key = cache.key(kind, prompt=prompt, grammar=grammar, stop=stop, start=start,
                              sampling=dataclasses.asdict(sampling),
                              model=[info.path, info.file_size, info.context_length])
        hit = await asyncio.to_thread(cache.get, cache_key)
        if hit is not None:
            log.info("%s: answered from the result cache", kind)
            if on_piece is not None:
                on_piece(hit)
            return Completion(hit, 0, 0, 0.0, 0.0, "cached")
    job = worker.submit(kind, prompt, sampling, stop=[*stop, *sampling.stop], grammar=grammar,
                        start=start, priority=Priority.USER, key=key, on_piece=on_piece)
    completion: Completion = await wait_for(job)
    if completion.finish_reason == "cancelled":
        raise TaskCancelled(f"{kind} was cancelled")
    if cache_key is not None:
        await asyncio.to_thread(cache.put, cache_key, kind, completion.text)
    return completion


class TaskCancelled(RuntimeError):
    pass


# ------------------------------------------------------------ commit messages

# Characters of diff per token, conservatively (diffs tokenize densely).
DIFF_CHARS_PER_TOKEN = 3
MAX_SUMMARISED_FILES = 12  # map step of a large diff: the largest files; the rest are listed


@dataclass
class CommitResult:
    message: str
    changes: gitdiff.Changes
    notices: list[str]
    summarised: bool  # the diff was too large and went through per-file summaries
    seconds: float


async def generate_commit_message(
    worker: GenerationWorker, settings: Settings, repo: Path, *, key: object = "commit",
    root: Path | None = None, progress: Callable[[str], None] | None = None,
    changes: gitdiff.Changes | None = None,
) -> CommitResult:
    """A validated commit message for the staged changes of the repository at ``repo``.

    ``changes``: the diff if the caller already read it (to fail fast before the
    model loads). Raises GitStateError (not a repository, a merge in progress,
    nothing to describe, ...) or CommitMessageError (the model gave nothing valid).
    """
    import time

    started = time.perf_counter()
    if changes is None:
        changes = await asyncio.to_thread(gitdiff.read_changes, repo)
    info = await ready_engine(worker)
    chat = bool(info.chat_template)
    sampling = settings.commit
    style = settings.commit.style
    notices = list(changes.notices)
    budget = max(400, (info.context_length - sampling.max_tokens - 350) * DIFF_CHARS_PER_TOKEN)
    files = changes.described
    if changes.listed_only:
        notices.append("left out of the prompt (listed only): " + ", ".join(
            f"{f.path} ({f.left_out})" for f in changes.listed_only))
    full = "".join(f.patch for f in files)
    summarised = False
    if len(full) <= budget:
        diff_text = full
    else:
        # Map: one line per file (largest first), then reduce: the message from those.
        summarised = True
        ranked = sorted(files, key=lambda f: f.added + f.removed, reverse=True)
        chosen = ranked[:MAX_SUMMARISED_FILES]
        if len(ranked) > len(chosen):
            notices.append(f"{len(ranked) - len(chosen)} smaller files are only listed")
        notices.append(f"the diff ({len(full)} characters) is larger than the model's context: "
                       f"summarised per file first")
        summaries = []
        for n, f in enumerate(chosen, 1):
            if progress:
                progress(f"summarising {f.path} ({n}/{len(chosen)})")
            messages, text = commit_message.summary_prompt(
                f, gitdiff.trim_patch(f.patch, budget), chat=chat, root=root)
            done = await _generate(worker, "commit-summary", prompt_text(info, messages, text),
                                   SamplingSettings(temperature=0.1, max_tokens=48),
                                   stop=_stops(info, "\n"), grammar=commit_message.SUMMARY_GRAMMAR,
                                   key=key)
            summaries.append((f, done.text.strip()))
        diff_text = commit_message.summary_diff(summaries)
    if progress:
        progress("writing the message")
    messages, text = commit_message.build_prompt(changes, diff_text, style=style, chat=chat,
                                                 root=root)
    prompt = prompt_text(info, messages, text)
    grammar = (commit_message.CONVENTIONAL_GRAMMAR if style == "conventional"
               else commit_message.PLAIN_GRAMMAR)
    errors = []
    for attempt in range(2):  # one retry, warmer, when the first answer fails the checks
        run = sampling if attempt == 0 else dataclasses.replace(
            sampling, temperature=max(0.7, sampling.temperature), seed=-1)
        done = await _generate(worker, "commit", prompt, run, stop=_stops(info, "\n\n\n"),
                               grammar=grammar, key=key)
        try:
            message = commit_message.validate(done.text, changes, style)
        except commit_message.CommitMessageError as exc:
            log.info("commit message rejected (attempt %d): %s", attempt + 1, exc)
            errors.append(str(exc))
            continue
        log.info("commit message in %.1f s (%d prompt tokens)", time.perf_counter() - started,
                 done.prompt_tokens)
        return CommitResult(message, changes, notices, summarised,
                            time.perf_counter() - started)
    raise commit_message.CommitMessageError(
        "the model gave no valid commit message (" + "; ".join(errors) + "); "
        "write it yourself or configure a larger model")


# -------------------------------------------------------------------- review

ContextFn = Callable[[str, int, int], str]  # (path, first line, budget tokens) -> prompt text


def review_spans_for(source: str, path: str, language: str | None, *,
                     lines: set[int] | None = None, limit: int = 4) -> list[review.Span]:
    """The symbols to review: functions, methods and other definitions touching ``lines``
    (all of them when None), at most ``limit``, in file order. A file without symbols
    is reviewed whole (in windows, when long)."""
    from ..indexer.chunker import chunk_file

    chunks = chunk_file(path, language, source.encode("utf-8", "surrogatepass")).chunks
    merged: dict[tuple[str, str], list[int]] = {}
    for c in chunks:
        if c.kind in ("statements", "window") or not c.symbol:
            continue
        span = merged.setdefault((c.symbol, c.kind), [c.start_line, c.end_line])
        span[0], span[1] = min(span[0], c.start_line), max(span[1], c.end_line)
    spans = [review.Span(a, b, f"{kind} {name}") for (name, kind), (a, b) in merged.items()]
    if not spans:  # no symbols: the statement runs / windows themselves
        spans = [review.Span(c.start_line, c.end_line,
                             f"lines {c.start_line + 1}-{c.end_line + 1}") for c in chunks]
    if lines is not None:
        spans = [s for s in spans if any(s.start <= n <= s.end for n in lines)]
    # Innermost first when nested (a class header chunk and its methods do not
    # overlap, but a long function split in parts was merged above).
    spans.sort(key=lambda s: (s.start, -s.end))
    return spans[:limit]


@dataclass
class ReviewResult:
    span: review.Span
    findings: list[review.Finding]
    dropped: int  # findings the model gave that failed the checks
    completion: Completion | None


async def review_code(
    worker: GenerationWorker, settings: Settings, *, source: str, path: str,
    language: str | None, spans: list[review.Span], key: object = None,
    root: Path | None = None, context: ContextFn | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ReviewResult]:
    """Review each span (one generation each); only anchored findings come back."""
    info = await ready_engine(worker)
    chat = bool(info.chat_template)
    sampling = settings.review
    lang = language or "text"
    out: list[ReviewResult] = []
    for n, span in enumerate(spans, 1):
        if progress:
            progress(f"{span.label} ({n}/{len(spans)})")
        related = ""
        if context is not None and sampling.context_tokens > 0:
            related = await asyncio.to_thread(context, path, span.start, sampling.context_tokens)
        messages, text = review.build_prompt(source, span, path=path, language=lang,
                                             context=related, chat=chat, root=root)
        done = await _generate(worker, "review", prompt_text(info, messages, text), sampling,
                               stop=_stops(info), grammar=review.FINDINGS_GRAMMAR, key=key)
        raw_items = review.parse_findings(done.text)
        findings = review.check_findings(done.text, source, span, language=lang)
        dropped = min(len(raw_items), review.MAX_FINDINGS) - len(findings)
        log.info("review of %s in %s: %d findings kept, %d dropped (%.1f s)", span.label, path,
                 len(findings), dropped, done.total_s)
        out.append(ReviewResult(span, findings, dropped, done))
    return out


# ------------------------------------------------- doc comments (not Python)


@dataclass
class DocCommentResult:
    function: doccomment.DocTarget
    text: str  # the rendered comment
    edit: docstring.Edit
    completion: Completion


async def generate_doc_comment(
    worker: GenerationWorker, settings: Settings, *, source: str, path: str, language: str,
    line: int, key: object = None, root: Path | None = None, regenerate: bool = False,
    on_piece: Callable[[str], None] | None = None,
) -> DocCommentResult:
    """A validated doc comment for the declaration at ``line`` (JS/TS, Go, Rust, Java, C/C++)."""
    target = doccomment.find_target(source, language, line)
    if target is None:
        raise doccomment.DocCommentError(f"nothing to document at line {line + 1} of {path}")
    if target.existing is not None and not regenerate:
        raise doccomment.DocCommentError(
            f"{target.qualname} already has a doc comment; use 'Regenerate' to replace it")
    info = await ready_engine(worker)
    messages, text = doccomment.build_prompt(source, target, path=path,
                                             chat=bool(info.chat_template), root=root)
    sampling = dataclasses.replace(settings.docstring,
                                   max_tokens=max(settings.docstring.max_tokens,
                                                  60 + 40 * len(target.params)))
    done = await _generate(worker, "doccomment", prompt_text(info, messages, text), sampling,
                           stop=_stops(info), grammar=doccomment.grammar(target), key=key,
                           on_piece=on_piece)
    content = doccomment.parse_answer(done.text, target, path)
    comment = doccomment.render_comment(content, target)
    edit = doccomment.comment_edit(target, comment)
    doccomment.validate(source, doccomment.apply_edit(source, edit), target, comment)
    return DocCommentResult(target, comment, docstring.Edit((edit.start, 0), (edit.end, 0),
                                                            comment), done)


# ------------------------------------------------------------ test generation


def tests_python(settings: Settings, root: Path) -> str:
    """The interpreter for generated tests: the setting, the workspace's venv, python3."""
    import shutil
    import sys

    if settings.tests.python:
        return settings.tests.python
    for venv in (".venv", "venv", "env"):
        candidate = root / venv / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return shutil.which("python3") or sys.executable


@dataclass
class TestsResult:
    function: docstring.FunctionTarget
    layout: testgen.Layout
    passing: list[testgen.TestCase]
    failing: list[tuple[testgen.TestCase, str]]  # never passed, with the failure
    old_text: str | None  # the test file before (None: it does not exist)
    new_text: str | None  # after inserting the passing tests (None: nothing to insert)
    rounds: int


async def generate_tests(
    worker: GenerationWorker, settings: Settings, *, root: Path, rel: str, source: str,
    line: int, key: object = None, context: ContextFn | None = None,
    progress: Callable[[str], None] | None = None,
) -> TestsResult:
    """pytest tests for the function at ``line`` of ``rel`` that pass when run in the
    sandbox against ``source`` (the editor's text). Failing ones are reported, not kept."""
    from ..indexer.discovery import discover

    fn = docstring.find_function(source, line)
    if fn is None:
        raise testgen.TestGenError(f"no Python function at line {line + 1} of {rel}")
    files = [p.as_posix() for p in (await asyncio.to_thread(discover, root)).files]
    if rel not in files:
        files.append(rel)
    layout = testgen.find_layout(rel, set(files))
    test_file = root / layout.test_path
    old_text = test_file.read_text(encoding="utf-8") if test_file.exists() else None
    info = await ready_engine(worker)
    chat = bool(info.chat_template)
    related = ""
    if context is not None:
        related = await asyncio.to_thread(context, rel, line, 300)
    python = tests_python(settings, root)
    import_line = f"from {layout.module} import {fn.qualname.split('.')[0]}"
    passing: list[testgen.TestCase] = []
    failing: dict[str, tuple[testgen.TestCase, str]] = {}
    feedback = ""
    rounds = 0
    for rounds in range(1, 3 if settings.tests.repair else 2):
        if progress:
            progress("writing tests" if rounds == 1 else "fixing the failing tests")
        messages, text = testgen.build_prompt(
            docstring.function_source(source, fn), qualname=fn.qualname, layout=layout,
            existing_tests=old_text or "", context=related, chat=chat, feedback=feedback,
            root=root)
        prompt = prompt_text(info, messages, text) + testgen.PREFILL
        done = await _generate(worker, "tests", prompt, settings.tests,
                               stop=_stops(info, "\nclass ", "\nif __name__", "```"),
                               grammar=None, key=key)
        taken = testgen.test_names(old_text or "") | {t.name for t in passing}
        cases = testgen.parse_tests(
            testgen.PREFILL + done.text, taken=taken, calls=fn.qualname.split(".")[-1],
            existing="\n".join([old_text or "", *(t.source for t in passing)]))
        if not cases:
            feedback = "No test function with an assert was written."
            continue
        if progress:
            progress(f"running {len(cases)} tests")
        candidate = testgen.merge(old_text, passing + cases, import_line)
        run = await asyncio.to_thread(
            sandbox.run_tests, root, files, layout.test_path, candidate, python=python,
            overrides={rel: source}, test_timeout=settings.tests.timeout_s)
        failed_now = []
        for case in cases:
            outcome = run.outcomes.get(case.name)
            if outcome is not None and outcome.passed:
                passing.append(case)
            else:
                message = outcome.message if outcome else (run.error or "the test did not run")
                failed_now.append((case, message))
        log.info("tests for %s, round %d: %d passed, %d failed", fn.qualname, rounds,
                 len(cases) - len(failed_now), len(failed_now))
        failing = {c.name: (c, m) for c, m in failed_now}  # a later round's fix replaces
        if not failed_now:
            break
        feedback = "\n\n".join(f"{c.source.rstrip()}\n# failed with:\n# " +
                               "\n# ".join(m.strip().splitlines()[-6:]) for c, m in failed_now)
    new_text = testgen.merge(old_text, passing, import_line) if passing else None
    return TestsResult(fn, layout, passing, list(failing.values()), old_text, new_text, rounds)


# --------------------------------------------------------------- document file


@dataclass
class FileDocResult:
    summary: str
    comment: str
    new_source: str
    completion: Completion


async def document_file(worker: GenerationWorker, settings: Settings, *, source: str,
                        path: str, language: str, key: object = None, root: Path | None = None,
                        regenerate: bool = False) -> FileDocResult:
    """A validated summary of the whole file, placed at its top."""
    target = filedoc.find_target(source, path, language)
    if target.existing is not None and not regenerate:
        raise filedoc.FileDocError(f"{path} already has file documentation; use 'Regenerate' "
                                   "to replace it")
    info = await ready_engine(worker)
    messages, text = filedoc.build_prompt(source, target, path=path,
                                          chat=bool(info.chat_template), root=root)
    done = await _generate(worker, "filedoc", prompt_text(info, messages, text),
                           dataclasses.replace(settings.docstring, max_tokens=90),
                           stop=_stops(info, "\n"), grammar=filedoc.GRAMMAR, key=key)
    summary = filedoc.check_summary(done.text, target, path)
    comment = filedoc.render_summary(summary, target)
    new_source = filedoc.apply(source, target, comment)
    filedoc.validate(source, new_source, target)
    return FileDocResult(summary, comment, new_source, done)
