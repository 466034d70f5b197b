"""What review remembers per document: its findings, and the text of each function
as it was last reviewed.

Pure bookkeeping, no LSP: a new review of some symbols replaces the findings
inside those symbols; an edit drops the findings on the lines it touched and
moves the ones below it, so a diagnostic never points at code it was not about.
The reviewed text is kept per function, not per file: a review capped at
`review.maxSymbols` (or of one symbol) leaves the other functions unreviewed,
so the next save still reviews them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ....indexer.lines import split_lines
from .findings import Finding, Span, changed_lines


@dataclass
class DocumentReview:
    findings: list[Finding] = field(default_factory=list)
    # span label ("function f") -> that span's text when it was last reviewed
    reviewed: dict[str, str] = field(default_factory=dict)
    saves: int = 0  # counts saves, so only the newest save's review starts


class ReviewState:
    def __init__(self) -> None:
        self._docs: dict[str, DocumentReview] = {}

    def get(self, uri: str) -> DocumentReview:
        return self._docs.setdefault(uri, DocumentReview())

    def findings(self, uri: str) -> list[Finding]:
        return list(self._docs[uri].findings) if uri in self._docs else []

    def replace(self, uri: str, spans: list[Span], findings: list[Finding],
                source: str | None = None) -> None:
        """The findings of a fresh review of ``spans`` replace the older ones there;
        with ``source`` (the text reviewed), each span is recorded as reviewed."""
        doc = self.get(uri)
        kept = [f for f in doc.findings if not any(s.start <= f.line <= s.end for s in spans)]
        doc.findings = sorted(kept + findings, key=lambda f: (f.line, f.start_col))
        if source is not None:
            lines = split_lines(source)
            for span in spans:
                doc.reviewed[span.label] = span_text(lines, span)

    def edit(self, uri: str, start: int, end: int, new_lines: int) -> bool:
        """Lines ``start``..``end`` (0-based, inclusive) were replaced by ``new_lines``
        lines. Returns whether any finding was dropped or moved."""
        doc = self._docs.get(uri)
        if doc is None or not doc.findings:
            return False
        delta = new_lines - (end - start + 1)
        out, changed = [], False
        for f in doc.findings:
            if start <= f.line <= end:
                changed = True  # the code it was about has changed
                continue
            if f.line > end and delta:
                f = replace(f, line=f.line + delta)
                changed = True
            out.append(f)
        doc.findings = out
        return changed

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)


def span_text(lines: list[str], span: Span) -> str:
    return "\n".join(lines[span.start:span.end + 1])


def spans_to_review(source: str, spans: list[Span], reviewed: dict[str, str],
                    head_text: str | None) -> list[Span]:
    """`review.onSave = changed`: the spans whose text differs from when they were last
    reviewed; a span never reviewed counts as changed when it differs from HEAD
    (``head_text``; None: not in git, so every never-reviewed span)."""
    lines = split_lines(source)
    head_changed = changed_lines(head_text, source) if head_text is not None else None
    out = []
    for span in spans:
        if span.label in reviewed:
            if reviewed[span.label] != span_text(lines, span):
                out.append(span)
        elif head_changed is None or any(span.start <= n <= span.end for n in head_changed):
            out.append(span)
    return out
