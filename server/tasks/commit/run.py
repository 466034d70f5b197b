"""Commit messages: the staged diff (summarised per file when it is too large), one
validated message, one warmer retry."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...chat_format import Message
from ...settings import SamplingSettings, Settings, local_only
from ..runner import TaskRun, prompt_text, routed, stops
from . import gitdiff, structure
from . import message as msg

log = logging.getLogger(__name__)


# Characters of diff per token, conservatively (diffs tokenize densely).
DIFF_CHARS_PER_TOKEN = 3
MAX_SUMMARISED_FILES = 12  # map step of a large diff: the largest files; the rest are listed
RE_ASK_TOKENS = 80  # "That message was rejected: <why>. Write a new ..." and the turn marks
# commit.authorWords and commit.fromStructure = "auto": a model file smaller than this
# (a few hundred million parameters, as the bundled ones) comes after Hearth's own
# subject. bench/quality.py's tuning half (session 21, Gemma 270M): the model's own
# accepted subjects scored a ROUGE-L of 0.07 against the real ones, the author's words
# 0.15; session 22: with the author's words first, the model's 3 accepted subjects of
# 24 scored 0.16, the structure's 0.17, and its held-back half had none accepted.
SMALL_MODEL_BYTES = 500_000_000


def diff_budget(context_length: int, max_tokens: int, overhead_chars: int) -> int:
    """Characters of diff that fit beside the rest of the prompt (``overhead_chars``: the
    prompt with an empty diff), the answer, and the re-ask turn (the rejected answer
    and a sentence) that the second attempt adds."""
    left = context_length - max_tokens - (max_tokens + RE_ASK_TOKENS)
    return max(400, left * DIFF_CHARS_PER_TOKEN - overhead_chars)


@dataclass
class CommitResult:
    message: str
    changes: gitdiff.Changes
    notices: list[str]
    summarised: bool  # the diff was too large and went through per-file summaries
    seconds: float
    # Whose words: "model"; "author" (commit.authorWords: the change's own prose, the
    # model not asked); "structure" (the model's answers were refused: from the diff).
    source: str = "model"

    @property
    def from_structure(self) -> bool:  # not the model's words
        return self.source != "model"


@routed
async def generate_commit_message(
    run: TaskRun, settings: Settings, repo: Path, *,
    root: Path | None = None, progress: Callable[[str], None] | None = None,
    changes: gitdiff.Changes | None = None, model_bytes: int = 0, early_tried: bool = False,
) -> CommitResult:
    """A validated commit message for the staged changes of the repository at ``repo``.

    ``changes``: the diff if the caller already read it (to fail fast before the
    model loads). ``model_bytes``: the size of the GGUF file the route's local model
    is (or will be) loaded from, when the caller knows it without waiting for the
    load (0: learn it from the loaded model). ``early_tried``: the caller has already
    tried early_message with these changes and ``model_bytes`` (and got None); with
    ``model_bytes`` 0 it is tried again once the loaded model tells its size. Raises
    GitStateError (not a repository, a merge in progress, nothing to describe, ...) or
    CommitMessageError (the model gave nothing valid).
    """
    started = time.perf_counter()
    if changes is None:
        changes = await asyncio.to_thread(gitdiff.read_changes, repo)
    private = local_only(settings, _paths(changes.files))
    # A past commit is a worked example in the prompt: none of a local-only file.
    changes.past = [c for c in changes.past if not local_only(settings, _paths(c.files))]
    if private:
        run.keep_local(f"the diff touches {', '.join(private[:3])}"
                       f"{' and more' if len(private) > 3 else ''} (privacy.localOnly)")
    sampling = settings.commit
    style = commit_style(settings, changes)
    notices = list(changes.notices)
    info = None
    needs_size = not model_bytes and "auto" in (sampling.author_words, sampling.from_structure)
    if needs_size or not early_tried:  # (tried with no size: tried again with one)
        if needs_size:
            info = await run.ready()  # the loaded model's size is in its info
            model_bytes = info.file_size
        early = early_message(settings, changes, model_bytes, started, style)
        if early is not None:
            return early
    info = info or await run.ready()
    chat = bool(info.chat_template)
    empty_messages, empty_text = msg.build_prompt(changes, "", style=style, chat=chat, root=root)
    budget = diff_budget(info.context_length, sampling.max_tokens,
                         len(prompt_text(info, empty_messages, empty_text)))
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
            messages, text = msg.summary_prompt(
                f, gitdiff.trim_patch(f.patch, budget), chat=chat, root=root)
            done = await run.generate("commit-summary", prompt_text(info, messages, text),
                                   SamplingSettings(temperature=0.1, max_tokens=48),
                                   stop=stops(info, "\n"), grammar=msg.SUMMARY_GRAMMAR,
                                   messages=messages)
            summaries.append((f, done.text.strip()))
        diff_text = msg.summary_diff(summaries)
    if progress:
        progress("writing the message")
    room = info.context_length - 2 * sampling.max_tokens - RE_ASK_TOKENS  # answer, re-ask
    cut: list[str] = []
    for _ in range(3):  # characters were an estimate: the tokenizer has the last word
        messages, text = msg.build_prompt(changes, diff_text, style=style, chat=chat, root=root)
        prompt = prompt_text(info, messages, text)
        used = await run.count_tokens(prompt)
        if used is None or used <= room or len(diff_text) <= 400:
            break
        # (dense text, e.g. "→" or "≤", takes more tokens than the estimate allows)
        excess_chars = int((used - room) * len(prompt) / used * 1.2) + 1
        keep = max(400, len(diff_text) - excess_chars)
        if summarised:
            diff_text = diff_text[:keep]
        else:
            diff_text, cut = msg.diff_block(files, keep)
    if cut:
        notices.append("cut to fit the model's context: " + ", ".join(cut))
    turns = messages
    grammar = msg.grammar(style, changes.described, changes.recent)
    # A refused first line ends that attempt at once: the body cannot save it.
    refused_header = msg.header_refusal(changes, style)
    errors = []
    attempt = 0
    while attempt < 2:  # one re-ask, warmer, when the first answer fails the checks
        tuned = sampling if attempt == 0 else dataclasses.replace(
            sampling, temperature=max(0.7, sampling.temperature), seed=-1)
        done = await run.generate("commit", prompt, tuned, stop=stops(info, "\n\n\n"),
                                  grammar=grammar, messages=turns, enough=refused_header)
        try:
            message = msg.validate(done.text, changes, style)
        except msg.CommitMessageError as exc:
            if await run.stale(done):
                continue
            attempt += 1
            log.info("commit message rejected (attempt %d): %s", attempt, exc)
            errors.append(str(exc))
            if messages is not None:  # re-ask once, saying what was wrong with the answer
                turns = [*messages, Message("assistant", done.text.strip()),
                         Message("user", f"That message was rejected: {exc}. Write a new "
                                 "commit message for the same diff, in the same format.")]
                prompt = prompt_text(info, turns, text)
            continue
        log.info("commit message in %.1f s (%d prompt tokens)", time.perf_counter() - started,
                 done.prompt_tokens)
        await run.keep()
        return CommitResult(message, changes, notices, summarised,
                            time.perf_counter() - started)
    refused = "the model gave no valid commit message (" + "; ".join(errors) + ")"
    if settings.commit.from_structure != "off":
        valid = structure_message(settings, changes, style)
        if valid is not None:
            notices.append(f"written from the diff's structure: {refused} "
                           "(commit.fromStructure)")
            return CommitResult(valid, changes, notices, summarised,
                                time.perf_counter() - started, source="structure")
    raise msg.CommitMessageError(refused + "; write it yourself or configure a larger model")


def _paths(files: list[gitdiff.FileDiff]) -> list[str]:
    """Every path ``files`` touch: a rename's old one too (`git mv .env app.cfg`)."""
    return [p for f in files for p in (f.path, f.old_path) if p]


def commit_style(settings: Settings, changes: gitdiff.Changes) -> str:
    """commit.style, or with "auto" the recent subjects': a repository that writes
    "Shorten title." gets no `docs(scope):`."""
    style = settings.commit.style
    return msg.detect_style(changes.recent) if style == "auto" else style


def early_message(settings: Settings, changes: gitdiff.Changes, model_bytes: int,
                  started: float | None = None, style: str | None = None,
                  ) -> CommitResult | None:
    """Hearth's own subject, before the model is asked: the change's own prose
    (commit.authorWords), else one from the diff's structure (commit.fromStructure),
    each when its setting is "first", or "auto" with a model file known to be under
    SMALL_MODEL_BYTES (``model_bytes``, 0 when unknown); None when neither applies or
    passes the checks."""
    def first(mode: str) -> bool:
        return mode == "first" or (mode == "auto" and 0 < model_bytes < SMALL_MODEL_BYTES)

    authored, structural = first(settings.commit.author_words), first(
        settings.commit.from_structure)
    if not (authored or structural):
        return None
    started = time.perf_counter() if started is None else started
    style = style or commit_style(settings, changes)
    if authored:
        early = _valid(structure.authored_message(changes.described, style, msg.MAX_HEADER),
                       changes, style)
        if early is not None:
            return CommitResult(early, changes, [
                *changes.notices, "written from the author's own words in the diff "
                "(commit.authorWords)"], False, time.perf_counter() - started, source="author")
    early = structure_message(settings, changes, style) if structural else None
    if early is None:
        return None
    return CommitResult(early, changes, [
        *changes.notices, "written from the diff's structure before asking the model "
        "(commit.fromStructure" + (": auto, with a model under 500 MB)"
                                   if settings.commit.from_structure == "auto" else ")")], False,
        time.perf_counter() - started, source="structure")


def structure_message(settings: Settings, changes: gitdiff.Changes, style: str) -> str | None:
    """The first subject from the diff's structure that passes the checks: of the files
    described, else of every file (one only listed, a lockfile or a binary, is named
    when nothing else can be)."""
    authored = settings.commit.author_words != "off"
    for files in (changes.described, changes.files):
        for message in structure.structural_messages(files, style, msg.MAX_HEADER,
                                                     authored=authored):
            valid = _valid(message, changes, style)
            if valid is not None:
                return valid
    return None


def _valid(message: str | None, changes: gitdiff.Changes, style: str) -> str | None:
    """A message Hearth wrote itself, through the checks the model's answers pass."""
    if message is None:
        return None
    try:
        return msg.validate(message, changes, style)
    except msg.CommitMessageError as exc:  # e.g. names too odd to pass the checks
        log.info("the message written from the diff was refused too: %s", exc)
        return None
