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

    def edit(self, uri: str, start: tuple[int, int], end: tuple[int, int], text: str) -> bool:
        """The range ``start``..``end`` ((line, character), the end exclusive, as LSP's)
        was replaced by ``text``. A finding whose quote the range reaches is dropped,
        and its function is reviewed again at the next save (its text may come back as
        it was: an undo); the others move with the text. (Characters are taken as the
        finding's columns: the caller checks each quote where it lands.) Returns
        whether any finding was dropped or moved."""
        doc = self._docs.get(uri)
        if doc is None or not doc.findings:
            return False
        (sl, sc), (el, ec) = start, end
        added = text.count("\n")
        last = text.rsplit("\n", 1)[-1]
        out, dropped = [], []
        for f in doc.findings:
            if f.line < sl or (f.line == sl and sc >= f.end_col):
                out.append(f)  # before the edit (on its line: to the quote's right)
            elif f.line > el:
                out.append(replace(f, line=f.line + added - (el - sl)))
            elif f.line == el and ec <= f.start_col:  # the edit ends before the quote
                col = (sc + len(text) if not added else len(last)) + f.start_col - ec
                out.append(replace(f, line=sl + added, start_col=col,
                                   end_col=col + f.end_col - f.start_col))
            else:
                dropped.append(f)  # the code it was about has changed
        changed = out != doc.findings
        doc.findings = out
        for f in dropped:
            for label in [k for k, was in doc.reviewed.items() if f.quote in was]:
                del doc.reviewed[label]
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
