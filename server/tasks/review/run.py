"""Review: which spans of a file to review, and one validated review of each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ....indexer.chunker import chunk_file
from ...engine.base import Completion
from ...settings import Settings
from ..runner import ContextFn, TaskRun, count, prompt_text, routed, stops
from . import findings as findings_mod

log = logging.getLogger(__name__)


def review_spans_for(source: str, path: str, language: str | None, *,
                     lines: set[int] | None = None, limit: int = 4) -> list[findings_mod.Span]:
    """The symbols to review: functions, methods and other definitions touching ``lines``
    (all of them when None), at most ``limit``, in file order. A file without symbols
    is reviewed whole (in windows, when long)."""
    chunks = chunk_file(path, language, source.encode("utf-8", "surrogatepass")).chunks
    merged: dict[tuple[str, str], list[int]] = {}
    for c in chunks:
        if c.kind in ("statements", "window") or not c.symbol:
            continue
        span = merged.setdefault((c.symbol, c.kind), [c.start_line, c.end_line])
        span[0], span[1] = min(span[0], c.start_line), max(span[1], c.end_line)
    spans = [findings_mod.Span(a, b, f"{kind} {name}") for (name, kind), (a, b) in merged.items()]
    if not spans:  # no symbols: the statement runs / windows themselves
        spans = [findings_mod.Span(c.start_line, c.end_line,
                                   f"lines {c.start_line + 1}-{c.end_line + 1}") for c in chunks]
    if lines is not None:
        spans = [s for s in spans if any(s.start <= n <= s.end for n in lines)]
    # Innermost first when nested (a class header chunk and its methods do not
    # overlap, but a long function split in parts was merged above).
    spans.sort(key=lambda s: (s.start, -s.end))
    return spans[:limit]


@dataclass
class ReviewResult:
    span: findings_mod.Span
    findings: list[findings_mod.Finding]
    dropped: int  # findings the model gave that failed the checks
    completion: Completion | None
    unusable: str | None = None  # why the answer was no review at all: not "no findings"


@routed
async def review_code(
    run: TaskRun, settings: Settings, *, source: str, path: str,
    language: str | None, spans: list[findings_mod.Span], root: Path | None = None,
    context: ContextFn | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ReviewResult]:
    """Review each span (one generation each); only anchored findings come back."""
    info = await run.ready()
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
        messages, text = findings_mod.build_prompt(source, span, path=path, language=lang,
                                                   context=related, chat=chat, root=root)
        done = await run.generate("review", prompt_text(info, messages, text), sampling,
                                  stop=stops(info), grammar=findings_mod.FINDINGS_GRAMMAR,
                                  messages=messages)
        raw_items = findings_mod.parse_findings(done.text)
        findings = findings_mod.check_findings(done.text, source, span, language=lang)
        dropped = min(len(raw_items), findings_mod.MAX_FINDINGS) - len(findings)
        log.info("review of %s in %s: %d findings kept, %d dropped (%.1f s)", span.label, path,
                 len(findings), dropped, done.total_s)
        unusable = findings_mod.unusable_reason(done.text)
        if unusable:
            log.info("review of %s in %s: the model's answer %s", span.label, path, unusable)
        out.append(ReviewResult(span, findings, dropped, done, unusable))
        # An answer with a finding that failed the checks is not worth replaying.
        await (run.forget() if dropped or unusable else run.keep())
    return out


def review_summary(found: int, reviewed: list[str], not_reviewed: Sequence[str] = ()) -> str:
    """The one line editors show after a review."""
    none = "nothing reviewed" if not_reviewed else "nothing to review"
    return (f"Hearth: {count(found, 'finding')} ({', '.join(reviewed) or none})"
            + (f"; not reviewed: {', '.join(not_reviewed)} (the model's answer was no review)"
               if not_reviewed else ""))
