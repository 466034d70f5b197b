"""Context for prompts: a chunk's symbol neighbours, and the best chunks that fit a budget.

Neighbours come from the symbol table (tree-sitter tags): the definitions of
the names a chunk references, and the chunks that reference the chunk's own
name (its callers, found lexically: by name, not by type). Context assembly
fuses those with a search ranking and fills a token budget, most relevant
first, each piece with its location so the prompt (and the log) can cite it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .store import Store, StoredChunk

# Names so common that "the definition of `get`" says nothing about a chunk.
_TOO_COMMON = 12  # a name defined in more places than this is skipped


@dataclass(frozen=True)
class Neighbour:
    chunk: StoredChunk
    relation: str  # "definition" (of a name the chunk uses) | "caller"
    name: str


@dataclass(frozen=True)
class ContextPiece:
    path: str
    start_line: int  # 1-based, inclusive
    end_line: int
    symbol: str
    reason: str  # "definition" | "caller" | "search"
    text: str
    tokens: int

    def header(self) -> str:
        name = f" ({self.symbol})" if self.symbol else ""
        return f"{self.path}:{self.start_line}-{self.end_line}{name}"

    def as_dict(self) -> dict:
        return {"path": self.path, "start_line": self.start_line, "end_line": self.end_line,
                "symbol": self.symbol, "reason": self.reason, "tokens": self.tokens}


def chunk_at(store: Store, path: str, line: int) -> StoredChunk | None:
    """The smallest chunk of ``path`` covering 0-based ``line``."""
    row = store.db.execute(
        "SELECT id FROM chunks WHERE path = ? AND start_line <= ? AND end_line >= ? "
        "ORDER BY end_line - start_line, part LIMIT 1", (path, line, line)).fetchone()
    return store.chunks([row[0]]).get(row[0]) if row else None


def neighbours(store: Store, chunk: StoredChunk, limit: int = 10) -> list[Neighbour]:
    """Definitions of the names ``chunk`` references (in order of first use), then callers."""
    db = store.db
    used = [name for (name,) in db.execute(
        "SELECT name FROM symbols WHERE file = (SELECT id FROM files WHERE path = ?) "
        "AND is_def = 0 AND line BETWEEN ? AND ? ORDER BY line, col",
        (chunk.path, chunk.start_line, chunk.end_line))]
    out: list[Neighbour] = []
    seen = {chunk.id}
    for name in dict.fromkeys(used):
        if len(out) >= limit:
            break
        defs = db.execute("SELECT f.path, s.line FROM symbols s JOIN files f ON f.id = s.file "
                          "WHERE s.name = ? AND s.is_def = 1 ORDER BY f.path = ? DESC, f.path "
                          "LIMIT ?",
                          (name, chunk.path, _TOO_COMMON + 1)).fetchall()
        if not defs or len(defs) > _TOO_COMMON:
            continue
        for path, line in defs[:2]:  # an overloaded name: the nearest two
            found = chunk_at(store, path, line)
            if found is not None and found.id not in seen:
                seen.add(found.id)
                out.append(Neighbour(found, "definition", name))
    name = chunk.symbol.rsplit(".", 1)[-1]
    if name:
        for path, line in db.execute(
                "SELECT f.path, s.line FROM symbols s JOIN files f ON f.id = s.file "
                "WHERE s.name = ? AND s.is_def = 0 ORDER BY f.path = ? DESC, f.path, s.line "
                "LIMIT 50", (name, chunk.path)):
            if len(out) >= limit * 2:
                break
            found = chunk_at(store, path, line)
            if found is not None and found.id not in seen:
                seen.add(found.id)
                out.append(Neighbour(found, "caller", name))
    return out


RRF_K = 60


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate: code runs at about 3 characters per token."""
    return -(-len(text) // 3)


def assemble(store: Store, budget: int, count_tokens: Callable[[str], int], *,
             anchor: StoredChunk | None = None, ranked: Sequence[int] = (),
             exclude: tuple[str, int, int] | None = None) -> list[ContextPiece]:
    """The best chunks that fit ``budget`` tokens, most relevant first.

    Relevance fuses (reciprocal rank) the anchor's definitions, its callers and
    a search ranking (``ranked``: chunk ids, best first). Chunks overlapping
    ``exclude`` ((path, first line, last line), 0-based: the code the prompt
    already shows) or an earlier piece are left out; a chunk that does not fit
    the rest of the budget is skipped for a smaller one.
    """
    rankings: list[list[int]] = []
    if anchor is not None:
        near = neighbours(store, anchor)
        rankings.append([n.chunk.id for n in near if n.relation == "definition"])
        rankings.append([n.chunk.id for n in near if n.relation == "caller"])
        reasons = {n.chunk.id: n.relation for n in near}
        exclude = exclude or (anchor.path, anchor.start_line, anchor.end_line)
    else:
        reasons = {}
    rankings.append(list(ranked))
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, cid in enumerate(ranking):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (RRF_K + rank + 1)
    order = sorted(scores, key=lambda cid: scores[cid], reverse=True)
    chunks = store.chunks(order)
    taken: list[tuple[str, int, int]] = [exclude] if exclude else []
    out: list[ContextPiece] = []
    left = budget
    for cid in order:
        c = chunks.get(cid)
        if c is None or any(p == c.path and a <= c.end_line and c.start_line <= b
                            for p, a, b in taken):
            continue
        tokens = count_tokens(c.text)
        if tokens > left:
            continue
        left -= tokens
        taken.append((c.path, c.start_line, c.end_line))
        out.append(ContextPiece(c.path, c.start_line + 1, c.end_line + 1, c.symbol,
                                reasons.get(cid, "search"), c.text, tokens))
        if left <= 0:
            break
    return out


def render_context(pieces: Sequence[ContextPiece]) -> str:
    """The pieces as prompt text, each under a `# path:lines (symbol)` header."""
    return "\n\n".join(f"# {p.header()}\n{p.text}" for p in pieces)


def prompt_context(index: Any, path: str, line: int, budget: int) -> str:
    """The retrieved context of a prompt about ``path``:``line`` as prompt text, within
    ``budget`` tokens; ``index`` is anything with WorkspaceIndex.context's signature."""
    return render_context(index.context(budget, estimate_tokens, path=path, line=line))
