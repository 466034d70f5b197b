"""A scripted engine for unit tests of prompt, parse and handler logic.

It answers with the texts it was given, piece by piece, and remembers every
prompt. It is never the default engine and never used by ``hearth demo``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..settings import SamplingSettings
from .base import Completion, ModelInfo


@dataclass
class FakeEngine:
    # Each item answers one prompt, in order; a callable answers from the prompt.
    responses: list[str | Callable[[str], str]] = field(default_factory=list)
    default: str = ""
    piece_delay_s: float = 0.0  # per piece, to make generations that can be cancelled
    chat_template: str | None = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
    prompts: list[str] = field(default_factory=list)
    grammars: list[str | None] = field(default_factory=list)
    counted: list[str] = field(default_factory=list)  # the texts count_tokens was given
    starts: list[str | None] = field(default_factory=list)
    samplings: list[SamplingSettings] = field(default_factory=list)
    info: ModelInfo = field(init=False)

    def __post_init__(self) -> None:
        self.info = ModelInfo(
            name="fake", path="<fake>", file_size=0, architecture="fake",
            context_length=4096, trained_context_length=4096,
            chat_template=self.chat_template, bos_token="<s>", eos_token="</s>", threads=1)

    @classmethod
    def scripted(cls, texts: Iterable[str], **kwargs) -> FakeEngine:
        return cls(responses=list(texts), **kwargs)

    def generate(self, prompt: str, sampling: SamplingSettings, stop: list[str],
                 should_stop: Callable[[], bool], on_piece: Callable[[str], None],
                 grammar: str | None = None, start: str | None = None) -> Completion:
        started = time.perf_counter()
        self.prompts.append(prompt)
        self.grammars.append(grammar)
        self.starts.append(start)
        self.samplings.append(sampling)
        answer = self.responses.pop(0) if self.responses else self.default
        text = answer(prompt) if callable(answer) else answer
        # Honour stop sequences the way llama.cpp does: cut before the first one.
        cut = min((i for s in [*stop, *sampling.stop] if s and (i := text.find(s)) >= 0),
                  default=len(text))
        finish = "stop"
        pieces = re.findall(r"\s*\S+|\s+", text[:cut])
        if len(pieces) > sampling.max_tokens:
            pieces, finish = pieces[: sampling.max_tokens], "length"
        out: list[str] = []
        first = 0.0
        for piece in pieces:
            if should_stop():
                finish = "cancelled"
                break
            if self.piece_delay_s:
                time.sleep(self.piece_delay_s)
            if not out:
                first = time.perf_counter() - started
            out.append(piece)
            on_piece(piece)
        return Completion("".join(out), len(prompt.split()), len(out), first,
                          time.perf_counter() - started, finish)

    def count_tokens(self, text: str) -> int:
        self.counted.append(text)
        return len(text.split())

    def close(self) -> None:
        pass
