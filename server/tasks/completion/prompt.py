"""Completion prompts: fill-in-the-middle per model family, or prefix-only continuation.

Pure: no model, no LSP. The model family is detected from the token strings of the
GGUF's vocabulary (and its name, for vocabularies shared with siblings that were
never trained to fill in the middle); the context is the text around the cursor,
cut at line boundaries to a token budget, with the window's start kept still while
the cursor moves within it so llama.cpp's KV prefix cache carries over between
keystrokes.
"""

from __future__ import annotations

from dataclasses import dataclass

# Estimated characters per token for the budget (the index's context uses the same).
CHARS_PER_TOKEN = 3
# The prefix window starts on a line that is a multiple of this: typing, or moving
# the cursor a few lines, keeps the same start and so the same cached tokens.
WINDOW_STEP_LINES = 32


@dataclass(frozen=True)
class FimFormat:
    """How one family writes fill-in-the-middle. The tokens are vocabulary strings."""

    family: str
    prefix: str
    suffix: str
    middle: str
    stops: tuple[str, ...]
    # The vocabulary must also hold these (tells families sharing FIM tokens apart).
    marker: tuple[str, ...] = ()
    # Only when the model's name says it is a code model: the same vocabulary ships
    # with general models that never learned the format (Qwen2.5, Gemma).
    needs_code_name: bool = False
    suffix_first: bool = False  # Codestral: [SUFFIX]suffix[PREFIX]prefix
    prefix_space: str = ""  # CodeLlama: "<PRE> " then the prefix

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.prefix, self.suffix, self.middle, *self.marker)

    def render(self, prefix: str, suffix: str) -> str:
        if self.suffix_first:
            return f"{self.suffix}{suffix}{self.prefix}{prefix}"
        return f"{self.prefix}{self.prefix_space}{prefix}{self.suffix}{suffix}{self.middle}"


# One table, most specific first: the first whose tokens are all in the vocabulary wins.
FIM_FORMATS: tuple[FimFormat, ...] = (
    FimFormat("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>",
              stops=("<|EOT|>", "<｜end▁of▁sentence｜>", "<｜fim▁begin｜>")),
    FimFormat("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", stops=("▁<EOT>", "<EOT>", "</s>"),
              marker=("▁<EOT>",), prefix_space=" "),
    FimFormat("codestral", "[PREFIX]", "[SUFFIX]", "[MIDDLE]", stops=("</s>", "[PREFIX]"),
              suffix_first=True),
    FimFormat("starcoder2", "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
              stops=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_middle>")),
    FimFormat("codegemma", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
              stops=("<|file_separator|>", "<|fim_prefix|>", "<|fim_middle|>", "<eos>",
                     "<end_of_turn>"),
              marker=("<|file_separator|>",), needs_code_name=True),
    FimFormat("qwen2.5-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
              stops=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>",
                     "<|fim_prefix|>", "<|im_end|>"),
              marker=("<|fim_pad|>",), needs_code_name=True),
)

# Every token string any format looks for: what to ask the vocabulary about.
FIM_TOKENS: frozenset[str] = frozenset(t for f in FIM_FORMATS for t in f.tokens)


def detect_format(vocabulary: set[str] | frozenset[str], name: str = "") -> FimFormat | None:
    """The FIM format of a model whose vocabulary holds ``vocabulary`` (at least the
    FIM_TOKENS it has), or None: complete by continuing the prefix."""
    code_model = "code" in name.lower() or "coder" in name.lower()
    for fmt in FIM_FORMATS:
        if all(t in vocabulary for t in fmt.tokens) and (code_model or not fmt.needs_code_name):
            return fmt
    return None


_LINE_COMMENT = {
    "python": "#", "ruby": "#", "shell": "#", "bash": "#", "toml": "#", "yaml": "#",
    "javascript": "//", "typescript": "//", "javascriptreact": "//", "typescriptreact": "//",
    "tsx": "//", "go": "//", "rust": "//", "java": "//", "c": "//", "cpp": "//",
    "csharp": "//", "kotlin": "//", "swift": "//", "php": "//", "scala": "//",
    "lua": "--", "sql": "--", "haskell": "--",
}


def file_header(path: str, language: str | None) -> str:
    """A first line naming the file in its own comment syntax ("" when unknown)."""
    mark = _LINE_COMMENT.get(language or "")
    return f"{mark} {path}\n" if mark and path else ""


@dataclass(frozen=True)
class CompletionPrompt:
    text: str
    stops: tuple[str, ...]
    fim: bool
    prefix: str  # the part of the document's prefix in the prompt
    suffix: str  # the part of the document's suffix in the prompt ("" without FIM)
    window_start: int  # offset in the document where ``prefix`` starts


def _prefix_window(prefix: str, budget_chars: int) -> int:
    """Where the prefix window starts: the start of the document when it fits, else a
    line that is a multiple of WINDOW_STEP_LINES, late enough to fit the budget."""
    if len(prefix) <= budget_chars:
        return 0
    earliest = len(prefix) - budget_chars
    starts = [0]
    at = 0
    while True:
        at = prefix.find("\n", at)
        if at < 0:
            break
        at += 1
        starts.append(at)
    # Lines starting at or after ``earliest``; the first on the step grid.
    for n, start in enumerate(starts):
        if start >= earliest and n % WINDOW_STEP_LINES == 0:
            return start
    # No grid line fits: the first whole line that does, else cut mid-line.
    return next((s for s in starts if s >= earliest), earliest)


def _suffix_window(suffix: str, budget_chars: int) -> str:
    if len(suffix) <= budget_chars:
        return suffix
    cut = suffix.rfind("\n", 0, budget_chars)
    return suffix[: cut + 1] if cut > 0 else suffix[:budget_chars]


def build_prompt(prefix: str, suffix: str, *, fmt: FimFormat | None, budget_tokens: int,
                 path: str = "", language: str | None = None,
                 extra_stops: tuple[str, ...] = ()) -> CompletionPrompt:
    """The prompt for completing at the cursor between ``prefix`` and ``suffix``.

    With a FIM format, a quarter of the budget goes to the text after the cursor
    (up to the end of a line), the rest to the text before it; without one, all of
    it to the text before it, under a comment naming the file.
    """
    budget = max(budget_tokens, 16) * CHARS_PER_TOKEN
    header = file_header(path, language)
    if fmt is None:
        start = _prefix_window(prefix, budget - len(header))
        shown = prefix[start:]
        return CompletionPrompt(header + shown, tuple(extra_stops), False, shown, "", start)
    after = _suffix_window(suffix, budget // 4)
    start = _prefix_window(prefix, budget - len(after) - len(header))
    shown = prefix[start:]
    text = fmt.render(header + shown, after)
    return CompletionPrompt(text, (*fmt.stops, *extra_stops), True, shown, after, start)


__all__ = ["CHARS_PER_TOKEN", "FIM_FORMATS", "FIM_TOKENS", "CompletionPrompt", "FimFormat",
           "build_prompt", "detect_format", "file_header"]
