"""The `hearth` command line: serve, doctor, config, demo."""

from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ..indexer.lines import read_source, split_lines, write_source
from . import __version__, logs

log = logging.getLogger("hearth")


def _tcp_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"port out of range: {number}")
    if host.startswith("[") and host.endswith("]"):  # [::1]:2087
        host = host[1:-1]
    return host or "127.0.0.1", number


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`; any other name or address may be reachable from
    other machines."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve_token(path: Path) -> str:
    """The token a TCP client must send; a new random one (user-only file) if missing."""
    import secrets

    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        log.info("wrote a new client token to %s", path)
    return token


@contextlib.contextmanager
def _importing() -> Iterator[None]:
    """No garbage collection while a command imports what it needs, then the objects
    made so far (modules, lsprotocol's classes) kept out of later collections: the
    imports allocate objects by the hundred thousand and none is garbage, yet each
    700 allocations start a collection. About 10% of an editor window's start, and of
    the git hook's, measured on the 2-core CI machine."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def cmd_serve(args: argparse.Namespace) -> int:
    logs.setup_stderr(args.log_level or os.environ.get("HEARTH_LOG_LEVEL", "info"))
    if args.tcp:
        host, port = args.tcp
        # Whoever connects can make Hearth run code: generated tests run in its sandbox.
        if not is_loopback(host):
            if not args.allow_remote:
                print(f"hearth serve: refusing to listen on {host}:{port}: it is not a "
                      "loopback address, and whoever connects can run code on this machine "
                      "(generated tests are executed). Use 127.0.0.1, ::1 or localhost, or "
                      "add --allow-remote if that is really meant.", file=sys.stderr)
                return 2
            if not args.token_file:
                print("hearth serve: --allow-remote needs --token-file: a client must then "
                      "send the token (initializationOptions.token) before anything else",
                      file=sys.stderr)
                return 2
            log.warning("listening on %s:%d, not a loopback address (--allow-remote): anyone "
                        "who can reach it can run code on this machine (generated tests are "
                        "executed)", host, port)
        token = _serve_token(Path(args.token_file)) if args.token_file else None
        with _importing():
            from .lsp.app import create_server

            server = create_server(required_token=token)
        log.info("hearth %s serving LSP on %s:%d", __version__, host, port)
        server.start_tcp(host, port)
        return 0
    with _importing():
        from .lsp.app import create_server

    # stdout is the LSP channel. Keep a private copy of it for the protocol and
    # point fd 1 at stderr, so a stray print (or a C library's printf) can never
    # corrupt the stream.
    lsp_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    server = create_server()
    log.info("hearth %s serving LSP on stdio", __version__)
    server.start_io(stdin=sys.stdin.buffer, stdout=lsp_out)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from .settings import SPECS, SettingsSources, as_dict, markdown_reference

    if args.reference:
        print(markdown_reference(), end="")
        return 0
    if args.vscode_schema:
        from .settings import vscode_properties

        print(json.dumps(vscode_properties(), indent=2, ensure_ascii=False))
        return 0
    root = Path(args.root).resolve() if args.root else Path.cwd()
    resolved = SettingsSources(root=root).resolve()
    rows = []
    for (section, name), spec in SPECS.items():
        value = getattr(getattr(resolved.settings, section), name)
        rows.append({"key": spec.key, "value": value, "source": resolved.sources[spec.key]})
    for name, fields in as_dict(resolved.settings)["backends"].items():
        for field_name, value in fields.items():
            key = f"backends.{name}.{field_name}"
            rows.append({"key": key, "value": value,
                         "source": resolved.sources.get(key, "default")})
    if args.json:
        print(json.dumps({"settings": rows, "problems": resolved.problems}, indent=2))
    else:
        width = max(len(r["key"]) for r in rows)
        for r in rows:
            print(f"{r['key']:<{width}}  {json.dumps(r['value']):<24} ({r['source']})")
        for problem in resolved.problems:
            print(f"problem: {problem}", file=sys.stderr)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_checks

    root = Path(args.root).resolve() if args.root else Path.cwd()
    failed = False
    for check in run_checks(root, probe=not args.no_probe):
        print(f"{check.status:<5} {check.name}: {check.detail}")
        failed = failed or check.status == "FAIL"
    return 1 if failed else 0


def _open_index(root: Path, readonly: bool = False):
    from ..indexer.workspace import WorkspaceIndex
    from .settings import SettingsSources, cache_dir

    settings = SettingsSources(root=root).resolve().settings
    return WorkspaceIndex(root, cache_dir(), max_file_kb=settings.index.max_file_kb,
                          exclude=settings.index.exclude, readonly=readonly,
                          max_files=settings.index.max_files,
                          max_chunks=settings.index.max_chunks)


def _vectors(index, root: Path):
    """The embedding model (the shared daemon's with model.shared) and the vectors."""
    from ..indexer.embeddings import Embedder
    from .settings import SettingsSources, cache_dir

    resolved = SettingsSources(root=root).resolve().settings
    settings, model = resolved.index, resolved.model
    folder = Path(settings.embedding_model) if settings.embedding_model else None
    if model.shared:
        from .engine.daemon_embedder import shared_embedder

        def notice(text: str) -> None:
            print(f"hearth: {text}", file=sys.stderr)

        embedder = shared_embedder(model, cache_dir(), folder,
                                   backend=settings.embedding_backend, on_notice=notice)
    else:
        embedder = Embedder(folder, backend=settings.embedding_backend, cache=cache_dir())
    return embedder, index.open_vectors(embedder, settings.chroma_url)


def cmd_index(args: argparse.Namespace) -> int:
    from ..indexer.workspace import left_out_notice

    root = Path(args.path or ".").resolve()
    if not root.is_dir():
        print(f"hearth index: {root} is not a folder", file=sys.stderr)
        return 2
    index = _open_index(root, readonly=args.status)
    try:
        if args.status:
            counts = index.store.counts()
            print(f"{root}: {counts['files']} files, {counts['chunks']} chunks, "
                  f"{counts['symbols']} symbols; store {index.dir}")
            return 0
        if index.readonly:
            print(f"hearth index: another Hearth process is writing the index of {root}",
                  file=sys.stderr)
            return 1

        def bar(done: int, total: int, current: str) -> None:
            if sys.stderr.isatty():
                width = 30
                filled = width * done // max(total, 1)
                sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
                sys.stderr.flush()

        stats = index.update(bar, rebuild=args.rebuild)
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        embedded = ""
        if not args.no_embed:
            embedder, vectors = _vectors(index, root)
            estats = index.embed_pending(embedder, vectors, bar)
            if sys.stderr.isatty():
                sys.stderr.write("\n")
            rate = estats.tokens / estats.seconds if estats.seconds else 0.0
            embedded = (f"; embedded {estats.embedded} chunks ({estats.reused} reused) in "
                        f"{estats.seconds:.1f} s, {rate:.0f} tokens/s, vectors in {vectors.where}")
        counts = index.store.counts()
        skipped = ", ".join(f"{n} {reason}" for reason, n in stats.skipped.most_common()) or "none"
        print(f"indexed {stats.files} files ({stats.changed} parsed, {stats.removed} removed) "
              f"into {counts['chunks']} chunks and {counts['symbols']} symbols "
              f"in {stats.seconds:.2f} s")
        print(f"skipped: {skipped}{embedded}")
        if stats.left_out:  # past index.maxFiles / index.maxChunks
            print(left_out_notice(stats, index.max_files, index.max_chunks))
        print(f"store: {index.dir}")
        return 0
    finally:
        index.close()


def cmd_search(args: argparse.Namespace) -> int:
    root = Path(args.root or ".").resolve()
    index = _open_index(root)
    try:
        if not index.readonly:
            index.update()  # cheap when nothing changed: size + mtime per file
        queries: list[dict] = []
        if args.batch:
            with open(args.batch, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            item = json.loads(line)
                            queries.append({"query": str(item["query"]), "k": item.get("k")})
                        except (json.JSONDecodeError, KeyError, TypeError):
                            print(f"{args.batch}:{n}: expected a JSON object with a 'query'",
                                  file=sys.stderr)
                            return 2
        elif args.query:
            queries.append({"query": args.query, "k": None})
        else:
            print("hearth search: give a QUERY or --batch FILE", file=sys.stderr)
            return 2
        embedder = vectors = None
        mode = args.mode
        if mode != "lexical" and index.store.has_embeddings():
            embedder, vectors = _vectors(index, root)
        elif mode == "dense":
            print("hearth search: no embeddings yet; run `hearth index` first", file=sys.stderr)
            return 1
        for q in queries:
            results = index.hybrid_search(q["query"], q["k"] or args.k, embedder, vectors,
                                          path_glob=args.path, language=args.language, mode=mode)
            if args.json:
                print(json.dumps([r.as_dict() for r in results]))
            else:
                for r in results:
                    name = r.symbol or "(statements)"
                    print(f"{r.path}:{r.start_line}-{r.end_line}  {name}  [{r.kind}, "
                          f"{r.language}]  {r.score:.3f}")
        return 0
    finally:
        index.close()


def cmd_context(args: argparse.Namespace) -> int:
    from ..indexer.context import estimate_tokens, render_context

    root = Path(args.root or ".").resolve()
    target, _, line_text = args.target.partition(":")
    path = Path(target) if Path(target).is_absolute() else Path.cwd() / target
    try:
        rel = path.resolve().relative_to(root).as_posix()
    except ValueError:
        print(f"hearth context: {target} is not inside {root}", file=sys.stderr)
        return 2
    if line_text and not line_text.isdigit():
        print(f"hearth context: expected FILE or FILE:LINE, got {args.target}", file=sys.stderr)
        return 2
    index = _open_index(root)
    try:
        if not index.readonly:
            index.update()
        embedder = vectors = None
        if args.query and index.store.has_embeddings():
            embedder, vectors = _vectors(index, root)
        line = int(line_text) - 1 if line_text else None
        pieces = index.context(args.budget, estimate_tokens, path=rel if line is not None else None,
                               line=line, query=args.query or "", embedder=embedder,
                               vectors=vectors)
        if args.json:
            print(json.dumps([p.as_dict() | {"text": p.text} for p in pieces]))
        else:
            for p in pieces:
                print(f"{p.header()}  [{p.reason}, ~{p.tokens} tokens]", file=sys.stderr)
            print(render_context(pieces))
        return 0
    finally:
        index.close()


def _task_settings(root: Path):
    from .settings import SettingsSources, cache_dir

    resolved = SettingsSources(root=root).resolve()
    for problem in resolved.problems:
        print(f"hearth: invalid setting: {problem}", file=sys.stderr)
    if resolved.untrusted:
        print(f"hearth: ignored {', '.join(resolved.untrusted)} from {root}/.hearth.toml: the "
              f"folder is not trusted (`hearth trust {root}` to use them)", file=sys.stderr)
    return resolved.settings, cache_dir()


def cmd_trust(args: argparse.Namespace) -> int:
    """`hearth trust [PATH]`, `hearth untrust [PATH]`, `hearth trust --list`."""
    from .trust import set_trusted, trust_path, trusted_folders

    if getattr(args, "list", False):
        for folder in trusted_folders():
            print(folder)
        return 0
    folder = Path(args.path or ".").resolve()
    if not folder.is_dir():
        print(f"hearth {args.command}: {folder} is not a folder", file=sys.stderr)
        return 2
    trusted = args.command == "trust"
    changed = set_trusted(folder, trusted)
    if not trusted:
        # Trust covers the folders inside a trusted one: "not trusted (already)" was
        # printed for a folder still trusted through its parent.
        through = [t for t in trusted_folders() if t.resolve() in folder.parents]
        if through:
            print(f"hearth untrust: {folder} is still trusted: it is inside {through[0]}, "
                  f"which is trusted; `hearth untrust {through[0]}` to stop trusting it",
                  file=sys.stderr)
            return 1
    state = "trusted" if trusted else "not trusted"
    print(f"{folder} is {state}{'' if changed else ' (already)'} ({trust_path()})")
    return 0


FAILED = object()  # what _run_task gives back when the task was refused


def _run_task(name: str, settings, cache: Path, work, factory=None, priority=None,
              root: Path | None = None, route: str = "docs", paths: list[Path] | None = None):
    """What every task command shares: the route of ``routes.<route>`` (the model in this
    process and/or model servers), one TaskRun (its prompts redacted with ``root``'s
    secrets), and a refusal or a missing model printed as `hearth NAME: reason` (FAILED).
    Which backend answered, and any fallback, is said on stderr."""
    import asyncio

    from ..indexer.secrets import Redactor
    from .engine.base import EngineError
    from .engine.router import Backends
    from .engine.worker import Priority
    from .local import local_worker
    from .settings import LOCAL, local_only
    from .tasks.runner import Refusal, TaskRun

    names = getattr(settings.routes, route)

    def notice(text: str) -> None:
        print(f"hearth {name}: {text}", file=sys.stderr, flush=True)

    async def main():
        async with local_worker(settings, cache, factory, load=LOCAL in names,
                                required=names == [LOCAL]) as worker:
            backends = Backends(worker)
            try:
                run = TaskRun(worker, priority=priority or Priority.USER,
                              redactor=Redactor.for_workspace(root),
                              route=backends.route(settings, route), on_notice=notice)
                base = root or Path.cwd()
                rels = [p.resolve().relative_to(base).as_posix() if p.resolve().is_relative_to(base)
                        else p.as_posix() for p in paths or []]
                private = local_only(settings, rels)
                if private:
                    run.keep_local(f"{', '.join(private[:3])} is local-only (privacy.localOnly)")
                result = await work(run)
                if run.backend != LOCAL or run.notices:
                    notice(f"answered by backend '{run.backend}'")
                return result
            finally:
                await asyncio.to_thread(backends.shutdown)

    try:
        return asyncio.run(main())
    except (Refusal, EngineError) as exc:
        print(f"hearth {name}: {exc}", file=sys.stderr)
        return FAILED


def _hook_deadline(seconds: float) -> threading.Lock:
    """The hook must not hold up `git commit`: past ``seconds`` (commit.hookTimeoutS) the
    process ends with status 0 wherever it is (loading the model, generating), and git
    goes on with its message file as it wrote it. The file is written only by whoever
    holds the returned lock, so it is never left half written."""
    writing = threading.Lock()

    def give_up() -> None:
        if writing.acquire(blocking=False):
            print(f"hearth: no commit message within {seconds:g} s (commit.hookTimeoutS); "
                  "the commit goes on without one from Hearth", file=sys.stderr, flush=True)
            os._exit(0)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return writing


def cmd_commit_msg(args: argparse.Namespace, factory=None) -> int:
    """Print (or, from the hook, fill in) a commit message for the staged changes."""
    with _importing():
        from .engine.worker import Priority
        from .local import model_file_bytes
        from .tasks.commit.gitdiff import GitStateError, read_changes, staged_since
        from .tasks.commit.hook import comment_char, fill_message_file
        from .tasks.commit.run import early_message, generate_commit_message

    logs.setup_stderr("warning")
    try:
        # Read before the model loads: a clear error at once, and the diff described
        # is the one staged when the command ran.
        changes = read_changes(Path(args.repo or ".").resolve(), hook=bool(args.hook))
    except GitStateError as exc:
        print(f"hearth commit-msg: {exc}", file=sys.stderr)
        return 1
    # The diff is the whole repository's, also from a folder in it: so are the settings
    # (privacy.localOnly, routes) and the secrets redacted.
    repo = changes.repo.resolve()
    settings, cache = _task_settings(repo)
    if args.style:
        settings.commit.style = args.style
    writing = _hook_deadline(settings.commit.hook_timeout_s) if args.hook else None
    # commit.authorWords: a subject in the change's own words needs no model, and a
    # hook that loads none for it is done at once.
    model_bytes = model_file_bytes(settings, cache, settings.routes.commit, factory)
    result = early_message(settings, changes, model_bytes) or _run_task(
        "commit-msg", settings, cache, lambda run: generate_commit_message(
            run, settings, repo, root=repo, changes=changes, model_bytes=model_bytes,
            early_tried=True, progress=(lambda m: print(f"hearth: {m}", file=sys.stderr)) if args.verbose
            else None), factory, Priority.HOOK if args.hook else Priority.USER, root=repo,
        route="commit")
    if result is FAILED:
        return 1
    moved = staged_since(result.changes)
    for notice in [*result.notices, *([moved] if moved else [])]:
        print(f"hearth: {notice}", file=sys.stderr)
    if args.hook:
        assert writing is not None
        if writing.acquire(blocking=False):  # else the deadline has passed: leave the file
            fill_message_file(Path(args.hook), result.message, comment_char(repo))
    elif args.json:
        print(json.dumps({"message": result.message, "notices": result.notices,
                          "staged": result.changes.staged, "summarised": result.summarised,
                          "fromStructure": result.from_structure, "source": result.source,
                          "seconds": round(result.seconds, 2)}))
    else:
        print(result.message)
    return 0


def _split_target(target: str) -> tuple[Path, str | None]:
    """`FILE` or `FILE::SYMBOL`."""
    path, _, symbol = target.partition("::")
    return Path(path), symbol or None


def cmd_review(args: argparse.Namespace, factory=None) -> int:
    """Review files (each function, up to review.maxSymbols) and print the findings."""
    from ..indexer.languages import language_of
    from .tasks.review import findings as review
    from .tasks.review.run import review_code, review_spans_for
    from .tasks.runner import shareable_context

    logs.setup_stderr("warning")
    root = Path(args.root or ".").resolve()
    settings, cache = _task_settings(root)
    jobs = []
    for target in args.files:
        path, symbol = _split_target(target)
        try:
            source = read_source(path)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"hearth review: cannot read {path}: {exc}", file=sys.stderr)
            return 2
        lang = language_of(path, content=source.encode("utf-8", "surrogatepass"))
        spans = review_spans_for(source, str(path), lang, limit=10_000)
        if symbol:
            spans = [s for s in spans if s.label.split(" ", 1)[-1] in (symbol,)
                     or s.label.endswith("." + symbol)]
            if not spans:
                print(f"hearth review: no symbol {symbol} in {path}", file=sys.stderr)
                return 2
        jobs.append((path, source, lang, spans[: args.max or settings.review.max_symbols]))
    index = None
    try:
        index = _open_index(root)
        if not index.readonly:
            index.update()
    except Exception as exc:  # review works without retrieved context
        print(f"hearth review: no workspace context ({exc})", file=sys.stderr)
        index = None

    def rel_path(path: Path) -> str:
        try:
            return path.resolve().relative_to(root).as_posix()
        except ValueError:
            return str(path)

    unreviewed: list[str] = []

    async def work(run):
        out = {}
        for path, source, lang, spans in jobs:
            results = await review_code(
                run, settings, source=source, path=rel_path(path), language=lang, spans=spans,
                root=root, context=shareable_context(index, settings) if index else None)
            out[rel_path(path)] = [f for r in results for f in r.findings]
            unreviewed.extend(f"{rel_path(path)}: {r.span.label}: the model's answer "
                              f"{r.unusable}" for r in results if r.unusable)
        return out

    try:
        found = _run_task("review", settings, cache, work, factory, root=root, route="review",
                          paths=[job[0] for job in jobs])
    finally:
        if index is not None:
            index.close()
    if found is FAILED:
        return 2
    if args.format == "sarif":
        print(json.dumps(review.sarif(found, __version__), indent=1))
    elif args.json or args.format == "json":
        print(json.dumps([f.as_dict(path) for path, fs in found.items() for f in fs]))
    else:
        for path, findings in found.items():
            for f in findings:
                print(f"{path}:{f.line + 1}:{f.start_col + 1}: {f.severity} [{f.category}] "
                      f"{f.message}")
        total = sum(map(len, found.values()))
        print(f"{total} finding{'s' if total != 1 else ''} in {len(found)} file"
              f"{'s' if len(found) != 1 else ''}", file=sys.stderr)
    for line in unreviewed:  # not "0 findings": nothing was checked there
        print(f"hearth review: not reviewed: {line}", file=sys.stderr)
    rank = {"info": 0, "warning": 1, "error": 2}
    if args.fail_on and any(rank[f.severity] >= rank[args.fail_on]
                            for fs in found.values() for f in fs):
        return 1
    return 2 if unreviewed and args.fail_on else 0


def _symbol_line(source: str, path: Path, language: str | None, symbol: str) -> int | None:
    """The 0-based line of ``symbol`` (a qualified name, a plain name, or a line number)."""
    if symbol.isdigit():
        return int(symbol) - 1
    if language == "python":
        from .tasks.docs.python import list_functions

        for fn in list_functions(source):
            if symbol in (fn.qualname, fn.name):
                return fn.def_line
        return None
    from ..indexer.chunker import chunk_file

    name = symbol.rsplit(".", 1)[-1]
    for c in chunk_file(str(path), language, source.encode()).chunks:
        if symbol in (c.symbol, c.name):
            # The chunk starts with its doc comment, which names it too (Go's always
            # does): the definition's line is the first other line naming it.
            return c.start_line + next(
                (i for i, ln in enumerate(split_lines(c.text))
                 if name in ln and not ln.lstrip().startswith(("//", "/*", "*", "#"))), 0)
    return None


def cmd_docstring(args: argparse.Namespace, factory=None) -> int:
    """Document FILE::SYMBOL (docstring for Python, doc comment for the others)."""
    from ..indexer.languages import language_of
    from .tasks.docs import python as docstring
    from .tasks.docs.run import document_symbol, find_symbol, supported

    logs.setup_stderr("warning")
    path, symbol = _split_target(args.target)
    try:
        source = read_source(path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"hearth docstring: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    lang = language_of(path, content=source.encode("utf-8", "surrogatepass"))
    if not supported(lang):
        print(f"hearth docstring: cannot document {lang or path.suffix} files", file=sys.stderr)
        return 2
    if symbol is None:
        return _document_file(args, path, source, lang, factory)
    line = _symbol_line(source, path, lang, symbol)
    if line is None:
        print(f"hearth docstring: no {symbol} in {path}", file=sys.stderr)
        return 2
    found = find_symbol(source, lang, line) if not symbol.isdigit() else None
    if found is not None and re.split(r"\.|::", symbol)[-1] != found.name:
        # (one-line code) a comment above the line documents the first declaration on it
        print(f"hearth docstring: {symbol} shares line {line + 1} of {path} with "
              f"{found.qualname}: a doc comment above it would document {found.qualname}; "
              "put each on a line of its own", file=sys.stderr)
        return 2
    root = Path(args.root or ".").resolve()
    settings, cache = _task_settings(root)

    result = _run_task("docstring", settings, cache, lambda run: document_symbol(
        run, settings, source=source, path=str(path), language=lang, line=line, root=root,
        regenerate=args.regenerate), factory, root=root, paths=[path])
    if result is FAILED:
        return 1
    new_source = docstring.apply_edit(source, result.edit)
    notice = getattr(result, "notice", None)
    if notice:
        print(f"hearth docstring: {notice}", file=sys.stderr)
    if args.write:
        write_source(path, new_source)
    if args.json:
        print(json.dumps({"path": str(path), "symbol": result.function.qualname,
                          "language": lang, "text": result.text, "notice": notice,
                          "edit": {"start": list(result.edit.start), "end": list(result.edit.end),
                                   "new_text": result.edit.new_text},
                          "written": bool(args.write)}))
    else:
        print(result.text)
    return 0


def cmd_tests(args: argparse.Namespace, factory=None) -> int:
    """pytest tests for FILE::SYMBOL that pass in the sandbox; --write inserts them."""
    from .tasks.testgen.run import generate_tests

    logs.setup_stderr("warning")
    path, symbol = _split_target(args.target)
    root = Path(args.root or ".").resolve()
    if symbol is None or path.suffix != ".py":
        print("hearth tests: expected FILE.py::FUNCTION (or FILE.py::LINE)", file=sys.stderr)
        return 2
    try:
        source = read_source(path)
        rel = path.resolve().relative_to(root).as_posix()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"hearth tests: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"hearth tests: {path} is not inside {root} (use --root)", file=sys.stderr)
        return 2
    line = _symbol_line(source, path, "python", symbol)
    if line is None:
        print(f"hearth tests: no {symbol} in {path}", file=sys.stderr)
        return 2
    settings, cache = _task_settings(root)

    result = _run_task("tests", settings, cache, lambda run: generate_tests(
        run, settings, root=root, rel=rel, source=source, line=line,
        progress=(lambda m: print(f"hearth: {m}", file=sys.stderr)) if args.verbose
        else None), factory, root=root, route="tests", paths=[path])
    if result is FAILED:
        return 1
    for warning in result.warnings:
        print(f"hearth tests: the sandbox did not isolate {warning}", file=sys.stderr)
    target = root / result.layout.test_path
    if args.write and result.new_text is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_source(target, result.new_text)
    if args.json:
        print(json.dumps({"test_file": result.layout.test_path, "written": bool(
            args.write and result.new_text is not None),
            "passing": [{"name": c.name, "source": c.source} for c in result.passing],
            "failing": [{"name": c.name, "source": c.source, "message": m}
                        for c, m in result.failing]}))
    else:
        for c in result.passing:
            print(c.source)
        for c, message in result.failing:
            last = message.strip().splitlines()[-1] if message.strip() else "failed"
            print(f"hearth: {c.name} failed and was left out (a bug, or a wrong "
                  f"expectation?): {last}", file=sys.stderr)
        where = "written to" if args.write and result.new_text else "for"
        print(f"hearth: {len(result.passing)} passing tests {where} {result.layout.test_path}",
              file=sys.stderr)
    return 0 if result.passing else 1


def cmd_cache(args: argparse.Namespace) -> int:
    from .result_cache import ResultCache
    from .settings import cache_dir

    cache = ResultCache(cache_dir() / "results.sqlite")
    try:
        if args.action == "clear":
            print(f"removed {cache.clear()} cached answers from {cache.path}")
        else:
            stats = cache.stats()
            print(f"{stats['entries']} cached answers, {stats['bytes'] / 1e6:.1f} MB in "
                  f"{cache.path}")
            if cache.problem:
                print(f"hearth cache: {cache.problem}", file=sys.stderr)
    except RuntimeError as exc:  # a cache that cannot be opened or written says why
        print(f"hearth cache: {exc}", file=sys.stderr)
        return 1
    finally:
        cache.close()
    return 0


def _document_file(args: argparse.Namespace, path: Path, source: str, lang: str,
                   factory=None) -> int:
    """`hearth docstring FILE`: a summary of the whole file at its top."""
    from .tasks.docs.run import document_file

    root = Path(args.root or ".").resolve()
    settings, cache = _task_settings(root)

    result = _run_task("docstring", settings, cache, lambda run: document_file(
        run, settings, source=source, path=str(path), language=lang, root=root,
        regenerate=args.regenerate), factory, root=root, paths=[path])
    if result is FAILED:
        return 1
    if args.write:
        write_source(path, result.new_source)
    if args.json:
        print(json.dumps({"path": str(path), "summary": result.summary, "text": result.comment,
                          "written": bool(args.write)}))
    else:
        print(result.comment, end="")
    return 0


def cmd_hook(args: argparse.Namespace) -> int:
    from .tasks.commit.gitdiff import GitStateError
    from .tasks.commit.hook import install, uninstall

    repo = Path(args.repo or ".").resolve()
    try:
        if args.action == "install":
            print(f"installed {install(repo)}")
        else:
            removed = uninstall(repo)
            print(f"removed {removed}" if removed else "no Hearth hook installed")
    except GitStateError as exc:
        print(f"hearth hook: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(workspace=args.workspace, preset=args.preset, model_path=args.model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth", description="Hearth: a local AI language server.")
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the language server (stdio by default)")
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (default)")
    mode.add_argument("--tcp", type=_tcp_address, metavar="HOST:PORT",
                      help="listen on a TCP port (host defaults to 127.0.0.1; only loopback "
                      "addresses unless --allow-remote)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="let --tcp listen on an address other machines can reach: whoever "
                       "connects can run code here (generated tests)")
    serve.add_argument("--token-file", metavar="PATH",
                       help="with --tcp: clients must send this file's token "
                       "(initializationOptions.token) first; a new one is written if missing")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    doctor = sub.add_parser("doctor", help="check the machine, model and settings")
    doctor.add_argument("--root", help="workspace root (default: current directory)")
    doctor.add_argument("--no-probe", action="store_true",
                        help="skip the test generation in a child process")
    doctor.set_defaults(func=cmd_doctor)

    config = sub.add_parser("config", help="show effective settings and where each came from")
    config.add_argument("--root", help="workspace root (default: current directory)")
    config.add_argument("--json", action="store_true")
    config.add_argument("--reference", action="store_true",
                        help="print the settings reference (docs/configuration.md)")
    config.add_argument("--vscode-schema", action="store_true",
                        help="print the VS Code settings schema (clients/vscode/package.json)")
    config.set_defaults(func=cmd_config)

    index = sub.add_parser("index", help="index a workspace for search and retrieval")
    index.add_argument("path", nargs="?", help="workspace root (default: current directory)")
    index.add_argument("--rebuild", action="store_true", help="start from an empty index")
    index.add_argument("--status", action="store_true", help="show what is indexed, change nothing")
    index.add_argument("--no-embed", action="store_true",
                       help="phase 1 only: lexical index and symbols, no embeddings")
    index.set_defaults(func=cmd_index)

    search = sub.add_parser("search", help="search the workspace index")
    search.add_argument("query", nargs="?")
    search.add_argument("--root", help="workspace root (default: current directory)")
    search.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    search.add_argument("--json", action="store_true", help="one JSON list per query")
    search.add_argument("--batch", metavar="FILE",
                        help="JSON lines, each with a 'query' (and optional 'k')")
    search.add_argument("--path", help="only paths matching this glob")
    search.add_argument("--language", help="only this language (e.g. python)")
    search.add_argument("--mode", choices=["hybrid", "lexical", "dense"], default="hybrid",
                        help="ranking: dense + lexical fused (default), or one of them")
    search.set_defaults(func=cmd_search)

    context = sub.add_parser("context", help="the retrieved context a prompt about "
                             "FILE:LINE (and/or a query) would get")
    context.add_argument("target", metavar="FILE[:LINE]")
    context.add_argument("--query", help="also rank chunks by this search")
    context.add_argument("--budget", type=int, default=1000,
                         help="token budget (estimated at 3 characters a token; default 1000)")
    context.add_argument("--root", help="workspace root (default: current directory)")
    context.add_argument("--json", action="store_true")
    context.set_defaults(func=cmd_context)

    commit = sub.add_parser("commit-msg", help="a commit message for the staged changes "
                            "(never commits)")
    commit.add_argument("--repo", help="repository (default: current directory)")
    commit.add_argument("--style", choices=["auto", "conventional", "scoped", "plain"],
                        help="override commit.style")
    commit.add_argument("--json", action="store_true")
    commit.add_argument("--hook", metavar="FILE", help=argparse.SUPPRESS)  # prepare-commit-msg
    commit.add_argument("-v", "--verbose", action="store_true", help="say what it is doing")
    commit.set_defaults(func=cmd_commit_msg)

    rev = sub.add_parser("review", help="review files with the model; only findings "
                         "anchored in the code are printed")
    rev.add_argument("files", nargs="+", metavar="FILE[::SYMBOL]")
    rev.add_argument("--root", help="workspace root for retrieved context (default: .)")
    rev.add_argument("--json", action="store_true", help="a JSON list of findings")
    rev.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    rev.add_argument("--max", type=int, help="most functions per file "
                     "(default: review.maxSymbols)")
    rev.add_argument("--fail-on", choices=["info", "warning", "error"],
                     help="exit 1 when a finding of this severity or worse is found")
    rev.set_defaults(func=cmd_review)

    doc = sub.add_parser("docstring", help="document a function (a docstring for Python, a "
                         "doc comment for JS/TS, Go, Rust, Java, C/C++) or a whole file")
    doc.add_argument("target", metavar="FILE[::SYMBOL]", help="SYMBOL: a (qualified) name or "
                     "a line number; without it, a summary of the whole file")
    doc.add_argument("--regenerate", action="store_true", help="replace an existing one")
    doc.add_argument("--write", action="store_true", help="apply it to the file")
    doc.add_argument("--json", action="store_true")
    doc.add_argument("--root", help="workspace root (prompt overrides; default: .)")
    doc.set_defaults(func=cmd_docstring)

    tst = sub.add_parser("tests", help="pytest tests for a Python function; only tests "
                         "that pass in a sandbox are kept")
    tst.add_argument("target", metavar="FILE::FUNCTION", help="FUNCTION: a (qualified) name "
                     "or a line number")
    tst.add_argument("--write", action="store_true", help="insert them into the test file")
    tst.add_argument("--json", action="store_true")
    tst.add_argument("--root", help="project root (default: .)")
    tst.add_argument("-v", "--verbose", action="store_true", help="say what it is doing")
    tst.set_defaults(func=cmd_tests)

    cache = sub.add_parser("cache", help="the on-disk cache of finished answers")
    cache.add_argument("action", choices=["info", "clear"])
    cache.set_defaults(func=cmd_cache)

    hook = sub.add_parser("hook", help="install or remove the prepare-commit-msg hook")
    hook.add_argument("action", choices=["install", "uninstall"])
    hook.add_argument("--repo", help="repository (default: current directory)")
    hook.set_defaults(func=cmd_hook)

    for name, text in (("trust", "trust a folder: its .hearth.toml may set programs to run, "
                                 "servers to send code to and prompts"),
                       ("untrust", "stop trusting a folder")):
        trust = sub.add_parser(name, help=text)
        trust.add_argument("path", nargs="?", help="the folder (default: the current one)")
        if name == "trust":
            trust.add_argument("--list", action="store_true", help="the trusted folders")
        trust.set_defaults(func=cmd_trust)

    demo = sub.add_parser("demo", help="run Hearth end to end over LSP on the demo workspace")
    demo.add_argument("--workspace", help="folder to copy and work on "
                      "(default: examples/demo-workspace)")
    demo.add_argument("--preset", help="bundled model to use (smollm2, gemma3-270m)")
    demo.add_argument("--model", help="any GGUF file to use instead")
    demo.set_defaults(func=cmd_demo)
    from .models_cli import add_models_parser

    add_models_parser(sub)
    from .daemon_cli import add_daemon_parser

    add_daemon_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
