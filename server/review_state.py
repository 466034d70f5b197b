"""What review remembers per document: its findings, and the text it last reviewed.

Pure bookkeeping, no LSP: a new review of some symbols replaces the findings
inside those symbols; an edit drops the findings on the lines it touched and
moves the ones below it, so a diagnostic never points at code it was not about.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .review import Finding, Span


@dataclass
class DocumentReview:
    findings: list[Finding] = field(default_factory=list)
    reviewed_text: str | None = None  # the text the last review saw ("changed" on save)
    saves: int = 0  # counts saves, so only the newest save's review starts


class ReviewState:
    def __init__(self) -> None:
        self._docs: dict[str, DocumentReview] = {}

    def get(self, uri: str) -> DocumentReview:
        return self._docs.setdefault(uri, DocumentReview())

    def findings(self, uri: str) -> list[Finding]:
        return list(self._docs[uri].findings) if uri in self._docs else []

    def replace(self, uri: str, spans: list[Span], findings: list[Finding],
                reviewed_text: str | None = None) -> None:
        """The findings of a fresh review of ``spans`` replace the older ones there."""
        doc = self.get(uri)
        kept = [f for f in doc.findings if not any(s.start <= f.line <= s.end for s in spans)]
        doc.findings = sorted(kept + findings, key=lambda f: (f.line, f.start_col))
        if reviewed_text is not None:
            doc.reviewed_text = reviewed_text

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
