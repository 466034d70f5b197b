"""`hearth models list | inspect | recommend | use | quantize | compare`: the GGUF
models on this machine, which one Hearth uses, new quantizations, and how they do.

`add_models_parser(sub)` registers the subcommand on `hearth`'s parser; the
discovery and header reading live in :mod:`.catalog`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from . import catalog
from .catalog import Catalog, Entry


def add_models_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `models` (list, inspect, recommend, use, quantize, compare) to a subparsers
    object."""
    models = sub.add_parser("models", help="the GGUF models already on this machine: list, "
                            "inspect, recommend, use, quantize, compare")
    msub = models.add_subparsers(dest="models_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", action="append", default=[], metavar="DIR",
                       help="also look for *.gguf in this folder (repeatable)")
        p.add_argument("--root", help="workspace root for settings (default: current directory)")
        p.add_argument("--json", action="store_true")

    lst = msub.add_parser("list", help="bundled presets, model.path, and the GGUFs in Ollama's "
                          "store, LM Studio's folder, the Hugging Face cache and --dir folders")
    common(lst)
    lst.set_defaults(func=cmd_models_list)

    ins = msub.add_parser("inspect", help="everything in a model's header: architecture, "
                          "context, special tokens, chat template, metadata")
    ins.add_argument("target", metavar="NAME|PATH", help="a name from `hearth models list` "
                     "or a GGUF file")
    ins.add_argument("--no-check", action="store_true",
                     help="skip asking llama.cpp whether it can read the model")
    common(ins)
    ins.set_defaults(func=cmd_models_inspect)

    rec = msub.add_parser("recommend", help="which models fit this machine's memory, GPU and "
                          "cores, and how fast they run (a short timed generation), best first")
    rec.add_argument("--no-probe", action="store_true",
                     help="estimate the speed instead of running the models")
    rec.add_argument("--probes", type=int, default=3, metavar="N",
                     help="run at most N models (the best candidates; default 3)")
    rec.add_argument("--probe-timeout", type=float, default=60, metavar="S",
                     help="give up on a model's probe after S seconds (default 60)")
    rec.add_argument("--min-speed", type=float, default=8.0, metavar="TOK/S",
                     help="slower models rank after faster ones (default 8 tokens/s)")
    common(rec)
    rec.set_defaults(func=cmd_models_recommend)

    use = msub.add_parser("use", help="make a model the one Hearth uses: writes model.preset "
                          "or model.path into the user config (or the workspace's .hearth.toml)")
    use.add_argument("target", metavar="NAME|PATH", help="a name from `hearth models list` "
                     "or a GGUF file")
    use.add_argument("--workspace", action="store_true",
                     help="write the workspace's .hearth.toml (--root, else the current "
                     "directory) instead of the user config")
    common(use)
    use.set_defaults(func=cmd_models_use)

    qua = msub.add_parser("quantize", help="write a GGUF quantized to another type with "
                          "llama.cpp (Q4_K_M, Q8_0, ...), with progress")
    qua.add_argument("src", metavar="SRC", help="a name from `hearth models list` or a "
                     "GGUF file (best an F16, BF16 or F32 one)")
    qua.add_argument("dst", metavar="DST", help="the GGUF file to write")
    qua.add_argument("--type", required=True, metavar="TYPE",
                     help="Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, F16, ... (llama.cpp's file types)")
    qua.add_argument("--allow-requantize", action="store_true",
                     help="accept an already quantized source (loses more quality than "
                     "quantizing from F16)")
    qua.add_argument("--threads", type=int, default=0, metavar="N",
                     help="threads (default: every CPU)")
    qua.add_argument("--force", action="store_true", help="replace DST when it exists")
    qua.add_argument("--root", help="workspace root for settings (default: current directory)")
    qua.add_argument("--dir", action="append", default=[], metavar="DIR",
                     help="also look for *.gguf in this folder (repeatable)")
    qua.set_defaults(func=cmd_models_quantize)

    cmp = msub.add_parser("compare", help="run the task evaluation (bench/tasks.py) on each "
                          "model; a table and a plot in a report folder")
    cmp.add_argument("targets", nargs="+", metavar="NAME|PATH",
                     help="names from `hearth models list` or GGUF files")
    cmp.add_argument("--out", default="hearth-compare", metavar="DIR",
                     help="the report folder (default: ./hearth-compare)")
    cmp.add_argument("--limit", type=int, default=0, metavar="N",
                     help="at most N cases per task (a quick look; default: all)")
    cmp.add_argument("--docstrings", type=int, default=12, metavar="N",
                     help="functions sampled for docstrings (default 12)")
    cmp.add_argument("--seed", type=int, default=20240601)
    cmp.add_argument("--timeout", type=float, default=3600, metavar="S",
                     help="give up on one model after S seconds (default 3600)")
    cmp.add_argument("--bench", metavar="DIR", help="the bench/ folder of a Hearth checkout "
                     "(default: the one beside this installation)")
    cmp.add_argument("--root", help="workspace root for settings (default: current directory)")
    cmp.add_argument("--dir", action="append", default=[], metavar="DIR",
                     help="also look for *.gguf in this folder (repeatable)")
    cmp.set_defaults(func=cmd_models_compare)
    return models


# ------------------------------------------------------------------------ helpers


def _settings(args: argparse.Namespace) -> Any:
    from .settings import SettingsSources

    root = Path(args.root).resolve() if args.root else Path.cwd()
    return SettingsSources(root=root).resolve().settings


def load_catalog(args: argparse.Namespace) -> Catalog:
    from .settings import cache_dir

    settings = _settings(args)
    return catalog.discover(setting_path=settings.model.path,
                            current_preset=settings.model.preset, cache=cache_dir(),
                            dirs=[Path(d).expanduser() for d in
                                  [*settings.model.dirs, *args.dir]])


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def human_count(n: int | None) -> str:
    if not n:
        return "-"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


# ----------------------------------------------------------------------- commands


def cmd_models_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    found = load_catalog(args)
    if args.json:
        print(json.dumps([e.to_json() for e in found.entries], indent=2), file=out)
        for note in found.notes:
            print(f"note: {note}", file=sys.stderr)
        return 0
    rows = [["", "NAME", "SOURCE", "ARCH", "PARAMS", "QUANT", "CONTEXT", "CHAT", "FIM", "SIZE",
             "LICENCE"]]
    for e in found.entries:
        rows.append(["*" if e.current else "", e.name, e.source, e.architecture or "?",
                     human_count(e.parameters), e.quantization or "-",
                     str(e.context_length or "-"), _yes(e.chat_template), _yes(e.fim),
                     human_size(e.size), (e.license or "-")[:24]])
    _table(rows, out)
    problems = [e for e in found.entries if e.problem]
    if problems:
        print("\nproblems:", file=out)
        for e in problems:
            print(f"  {e.name} ({e.source}): {e.problem}", file=out)
    print(f"\n{len(found.entries)} models; * = the one the settings use. Looked in: "
          + "; ".join(f"{src} {', '.join(paths)}" for src, paths in found.roots.items() if paths),
          file=out)
    for note in found.notes:
        print(f"note: {note}", file=out)
    return 0


def _resolve_target(args: argparse.Namespace, found: Catalog) -> Entry | str:
    """The entry to inspect, or an error message."""
    entry = catalog.find(found, args.target)
    path = Path(args.target).expanduser()
    if entry is None and path.exists():
        ident = catalog._identity(path)
        entry = next((e for e in found.entries if catalog._identity(e.path) == ident), None)
        if entry is None:
            entry = Entry(path.name, "file", path, origin=str(path.parent), parts=[path])
            if path.is_file():
                catalog.describe(entry)
            else:
                entry.problem = f"{path} is not a file"
    if entry is None:
        names = [e.name for e in found.entries]
        close = difflib.get_close_matches(args.target, names, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            "; `hearth models list` shows the names")
        return f"no model named {args.target!r} and no such file{hint}"
    if entry.source == "bundled" and entry.name == "gemma3-270m" and entry.info is None \
            and entry.path is not None and not entry.path.is_file():
        from . import models
        from .settings import cache_dir

        try:
            models._gemma_path(cache_dir())
            entry.problem = None
            catalog.describe(entry)
        except models.ModelNotFound as exc:
            entry.problem = str(exc)
    return entry


def inspect_data(entry: Entry, check: bool = True) -> dict[str, Any]:
    """`hearth models inspect --json`: the list entry plus the header's details."""
    data = entry.to_json()
    info = entry.info
    if info is None:
        return data
    data.update({
        "display_name": info.name,
        "gguf_version": info.version,
        "tensor_count": info.tensor_count,
        "tensor_types": catalog.tensor_type_shares(info),
        "block_count": info.block_count,
        "size_label": info.metadata.get("general.size_label"),
        "special_tokens": catalog.special_tokens(info),
        "chat_template_text": info.chat_template,
        "metadata": catalog.metadata_for_display(info),
    })
    if check and entry.path is not None:
        loads, why = catalog.llama_cpp_loads(entry.path)
        data["llama_cpp"] = {"loads": loads, "error": why}
    return data


def cmd_models_inspect(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    found = load_catalog(args)
    entry = _resolve_target(args, found)
    if isinstance(entry, str):
        print(f"hearth models inspect: {entry}", file=sys.stderr)
        return 1
    data = inspect_data(entry, check=not args.no_check and entry.problem is None)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str), file=out)
        return 1 if entry.problem else 0
    rows = [
        ("name", entry.name), ("path", str(entry.path)), ("source", f"{entry.source} "
                                                         f"({entry.origin})"),
        ("architecture", entry.architecture or "?"),
    ]
    if entry.problem:
        rows.append(("problem", entry.problem))
    if entry.info is not None:
        info = entry.info
        rows += [
            ("model name", info.name),
            ("parameters", f"{human_count(entry.parameters)} ({entry.parameters})"),
            ("quantization", entry.quantization or "-"),
            ("context length", str(entry.context_length or "-")),
            ("layers", str(info.block_count or "-")),
            ("size", human_size(entry.size)),
            ("licence", entry.license or "-"),
            ("chat template", _yes(entry.chat_template)),
            ("FIM tokens", _yes(entry.fim)),
            ("GGUF version", str(info.version)),
            ("tensors", f"{info.tensor_count}: " + ", ".join(
                f"{k} {v:.0%}" for k, v in data["tensor_types"].items())),
        ]
    if len(entry.parts) > 1:
        rows.append(("split", ", ".join(str(p) for p in entry.parts)))
    if entry.projector:
        rows.append(("projector", str(entry.projector)))
    for a in entry.also:
        rows.append(("also", f"{a['name']} ({a['source']})"))
    if "llama_cpp" in data:
        lc = data["llama_cpp"]
        rows.append(("llama.cpp", "reads it" if lc["loads"] else f"cannot read it: {lc['error']}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=out)
    if entry.info is not None:
        print("\nspecial tokens:", file=out)
        for role, tok in data["special_tokens"].items():
            by = " (found by its text)" if tok.get("found_by") else ""
            print(f"  {role:<10} {tok['id']:>7}  {tok['text']!r}{by}", file=out)
        template = entry.info.chat_template
        print("\nchat template:" + ("" if template else " none (completion-style prompts)"),
              file=out)
        if template:
            for line in template.splitlines():
                print(f"  {line}", file=out)
        print("\nmetadata:", file=out)
        for key, value in data["metadata"].items():
            text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
            print(f"  {key} = {text[:200]}", file=out)
    return 1 if entry.problem else 0


def _use_hint(entry: Entry) -> str:
    if entry.source == "bundled":
        return f'model.preset = "{entry.name}"'
    return f"model.path = {json.dumps(str(entry.path))}"


def cmd_models_recommend(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    settings = _settings(args)
    found = load_catalog(args)
    machine = catalog.read_machine()
    fits = catalog.recommend(found, machine, n_ctx=settings.model.context_length,
                             probes=0 if args.no_probe else max(0, args.probes),
                             threads=settings.model.threads, timeout=args.probe_timeout,
                             min_speed=args.min_speed)
    if args.json:
        print(json.dumps({"machine": machine.to_json(), "models": [f.to_json() for f in fits]},
                         indent=2), file=out)
        return 0
    gpus = "; ".join(f"{g.name} {human_size(g.vram_total)} ({human_size(g.vram_free)} free)"
                     for g in machine.gpus) or "none found"
    print(f"machine: {machine.cores} cores, {human_size(machine.ram_total)} memory "
          f"({human_size(machine.ram_available)} free); GPU: {gpus}; llama.cpp GPU offload: "
          f"{_yes(machine.gpu_offload)}", file=out)
    for note in machine.notes:
        print(f"note: {note}", file=out)
    rows = [["#", "NAME", "SOURCE", "RUNS ON", "SPEED", "PARAMS", "QUANT", "CHAT", "WHY"]]
    for i, f in enumerate(fits, 1):
        speed = "-"
        if f.tok_s is not None:
            speed = f"{f.tok_s:.0f} tok/s" + (" measured" if f.measured else " est.")
        why = f.reason
        if f.probe and not f.probe.get("ok"):
            why = f"probe failed: {f.probe.get('error')}"
        rows.append([str(i), f.entry.name, f.entry.source, f.where, speed,
                     human_count(f.entry.parameters), f.entry.quantization or "-",
                     _yes(f.entry.chat_template), why])
    _table(rows, out)
    best = next((f for f in fits if f.where != "no" and not (f.probe and not f.probe.get("ok"))),
                None)
    if best is not None:
        print(f"\nbest here: {best.entry.name} (set {_use_hint(best.entry)})", file=out)
    else:
        print("\nno model found that runs here", file=out)
    return 0


# ---------------------------------------------------------------------------- use


class ConfigError(ValueError):
    """The config file cannot be read as TOML; nothing was written."""


def set_model_setting(text: str, values: dict[str, str], drop: tuple[str, ...] = ()) -> str:
    """``text`` (a Hearth TOML config) with ``model.<key> = value`` for each of
    ``values`` and the ``drop`` keys removed; comments, order and every other key
    stay as they were. The keys go where the file already keeps model settings: a
    ``[model]`` table (also inside a ``[hearth]`` wrapper) or dotted ``model.x`` keys."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(str(exc)) from exc
    except RecursionError:
        raise ConfigError("nested too deep") from None
    root: Any = doc
    if set(doc.keys()) == {"hearth"} and isinstance(doc["hearth"], dict):
        root = doc["hearth"]  # the editors' wrapper, which settings.flatten accepts
    for key in (*values, *drop):  # `"model.path" = ...`: a quoted key with a dot
        if f"model.{key}" in root:
            del root[f"model.{key}"]
    table = root.get("model")
    if table is None:
        table = tomlkit.table()
        root.append("model", table)
    elif not isinstance(table, dict):
        raise ConfigError(f"`model` is a {type(table).__name__}, not a table")
    for key in drop:
        if key in table:
            del table[key]
    for key, value in values.items():
        table[key] = value
    return tomlkit.dumps(doc)


def write_config(path: Path, values: dict[str, str], drop: tuple[str, ...] = ()) -> None:
    """Edit ``path`` in place (created with its folder when missing), atomically; a
    link (a dotfiles repository's) is written through, and stays a link."""
    import os
    import tempfile

    path = path.resolve()
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    new = set_model_setting(text, values, drop)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_models_use(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from .settings import WORKSPACE_FILE, SettingsSources, user_config_path

    out = out or sys.stdout
    found = load_catalog(args)
    entry = _resolve_target(args, found)
    if isinstance(entry, str):
        print(f"hearth models use: {entry}", file=sys.stderr)
        return 1
    if entry.problem:
        print(f"hearth models use: {entry.name} cannot be used: {entry.problem}",
              file=sys.stderr)
        return 1
    root = Path(args.root).resolve() if args.root else Path.cwd()
    if args.workspace and not root.is_dir():
        print(f"hearth models use: {root} is not a folder: --workspace writes the "
              f"{WORKSPACE_FILE} of an existing one", file=sys.stderr)
        return 1
    target = root / WORKSPACE_FILE if args.workspace else user_config_path()
    drop: tuple[str, ...] = ()
    if entry.source == "bundled":
        values, drop, shown = {"preset": entry.name}, ("path",), f'model.preset = "{entry.name}"'
    else:
        assert entry.path is not None  # an entry without a file has a problem
        where = str(entry.path.resolve())
        values, shown = {"path": where}, f"model.path = {json.dumps(where)}"
    try:
        write_config(target, values, drop)
    except ConfigError as exc:
        print(f"hearth models use: {target} is not valid TOML ({exc}); fix it first, "
              "nothing was written", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"hearth models use: cannot write {target}: {exc}", file=sys.stderr)
        return 1
    print(f"{shown} written to {target}", file=out)
    # What the settings say now, from every layer: a higher one may still win.
    resolved = SettingsSources(root=root).resolve()
    model = resolved.settings.model
    key = "model.preset" if "preset" in values else "model.path"
    if key in resolved.untrusted:
        print(f"note: {root} is not a trusted folder, so its {WORKSPACE_FILE} may not set "
              f"{key}: run `hearth trust {root}` or leave out --workspace", file=out)
    elif model.path and "preset" in values:
        print(f"note: model.path = {model.path!r} (from the {resolved.sources['model.path']}) "
              f"still replaces the preset; remove it there", file=out)
    elif "path" in values and model.path != values["path"]:
        print(f"note: model.path from the {resolved.sources['model.path']} "
              f"({model.path!r}) wins over this one", file=out)
    elif "preset" in values and model.preset != values["preset"]:
        print(f"note: model.preset from the {resolved.sources['model.preset']} "
              f"({model.preset!r}) wins over this one", file=out)
    else:
        print("a running Hearth server loads it when the server restarts (VS Code: Hearth: "
              "Restart server; Neovim: :LspRestart hearth); new servers, `hearth` commands "
              "and the git hook use it now", file=out)
    return 0


# ----------------------------------------------------------------------- quantize


# Source tensor types that are not quantized: F32, F16, BF16 (and the integer ones).
_PLAIN_TYPES = {0, 1, 30, 24, 25, 26, 27, 28}


def quantize_types() -> dict[str, int]:
    """llama.cpp's file types by name (Q4_K_M -> 15), as this build defines them."""
    import llama_cpp

    types: dict[str, int] = {}
    for name in dir(llama_cpp):
        if name.startswith("LLAMA_FTYPE_MOSTLY_"):
            types[name[len("LLAMA_FTYPE_MOSTLY_"):]] = int(getattr(llama_cpp, name))
    if hasattr(llama_cpp, "LLAMA_FTYPE_ALL_F32"):
        types["F32"] = int(llama_cpp.LLAMA_FTYPE_ALL_F32)
    return types


class QuantizeError(ValueError):
    """Nothing was written; the message says why and what to do."""


_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")


def quantize(src: Path, dst: Path, type_name: str, *, allow_requantize: bool = False,
             threads: int = 0, force: bool = False,
             progress: Callable[[int, int, str], None] | None = None) -> None:
    """Quantize ``src`` into ``dst`` with llama.cpp's llama_model_quantize. ``dst``
    appears only once it is complete. Raises QuantizeError."""
    import ctypes
    import os

    import llama_cpp

    from .engine.llama import _native, route_native_logs
    from .gguf_info import GGUFError, read_gguf

    types = quantize_types()
    ftype = types.get(type_name.upper())
    if ftype is None:
        close = difflib.get_close_matches(type_name.upper(), list(types), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise QuantizeError(f"unknown type {type_name!r}{hint}; llama.cpp knows: "
                            + ", ".join(sorted(types)))
    try:
        info = read_gguf(src)
    except GGUFError as exc:
        raise QuantizeError(str(exc)) from exc
    if dst.is_dir():
        raise QuantizeError(f"{dst} is a folder; name the file to write, e.g. "
                            f"{dst / src.with_suffix('').name}-{type_name.upper()}.gguf")
    if dst.exists() and not force:
        raise QuantizeError(f"{dst} exists; pass --force to replace it")
    if dst.resolve() == src.resolve():
        raise QuantizeError("SRC and DST are the same file")
    if info.metadata.get("split.count", 1) not in (0, 1):
        raise QuantizeError(f"{src} is one part of a split model; merge it first "
                            "(llama-gguf-split --merge)")
    quantized = {t for t in info.tensor_types if t not in _PLAIN_TYPES}
    if quantized and not allow_requantize:
        names = ", ".join(sorted(catalog._type_name(t) for t in quantized))
        raise QuantizeError(f"{src} is already quantized ({names}); quantizing it again "
                            "loses more quality than starting from an F16/BF16/F32 file. "
                            "Pass --allow-requantize to do it anyway")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = allow_requantize
    params.nthread = threads
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QuantizeError(f"cannot make the folder {dst.parent}: {exc.strerror or exc}") \
            from None
    part = dst.with_name(f".{dst.name}.part")
    lines: list[str] = []

    def listen(line: str) -> None:
        lines.append(line)
        m = _TENSOR_LINE.match(line)
        if m and progress is not None:
            progress(int(m.group(1)), int(m.group(2)), m.group(3))

    route_native_logs()
    _native.listeners.append(listen)
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(part).encode(),
                                            ctypes.byref(params))
    finally:
        _native.listeners.remove(listen)
    if rc != 0:
        part.unlink(missing_ok=True)
        why = next((ln for ln in reversed(lines) if "fail" in ln.lower() or "error" in ln.lower()
                    or "disabled" in ln.lower()), None)
        raise QuantizeError(f"llama.cpp could not quantize {src} to {type_name.upper()}"
                            + (f": {why.strip()}" if why else ""))
    try:
        os.replace(part, dst)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise QuantizeError(f"cannot write {dst}: {exc.strerror or exc}") from None


def cmd_models_quantize(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    src = Path(args.src).expanduser()
    if not src.exists():  # a name from the list
        args.target = args.src
        entry = _resolve_target(args, load_catalog(args))
        if isinstance(entry, str):
            print(f"hearth models quantize: {entry}", file=sys.stderr)
            return 1
        if entry.path is None:
            print(f"hearth models quantize: {entry.name}: {entry.problem}", file=sys.stderr)
            return 1
        src = entry.path
    dst = Path(args.dst).expanduser()
    tty = sys.stderr.isatty()
    shown = [-1]

    def progress(done: int, total: int, tensor: str) -> None:
        percent = done * 100 // max(total, 1)
        if tty:
            print(f"\rquantizing: {done}/{total} tensors ({percent}%) {tensor[:40]:<40}",
                  end="", file=sys.stderr, flush=True)
        elif percent // 10 != shown[0] or done == total:  # a line every 10%
            shown[0] = percent // 10
            print(f"quantizing: {done}/{total} tensors ({percent}%)", file=sys.stderr,
                  flush=True)

    from .gguf_info import read_gguf

    try:
        quantize(src, dst, args.type, allow_requantize=args.allow_requantize,
                 threads=args.threads, force=args.force, progress=progress)
    except QuantizeError as exc:
        if tty:
            print(file=sys.stderr)
        print(f"hearth models quantize: {exc}", file=sys.stderr)
        return 1
    if tty:
        print(file=sys.stderr)
    before, after = read_gguf(src), read_gguf(dst)
    print(f"wrote {dst}: {catalog.file_type_name(after) or args.type.upper()}, "
          f"{human_size(after.file_size)} (from {catalog.file_type_name(before) or '?'}, "
          f"{human_size(before.file_size)})", file=out)
    return 0


# ------------------------------------------------------------------------ compare

# Run in a child process per model: imports bench/tasks.py (its evaluate(), unchanged)
# and prints the result as one JSON line. A model given by path replaces the preset
# the way model.path does in the settings.
_COMPARE_CHILD = """
import asyncio, json, sys, tempfile
from pathlib import Path
bench, preset, path, limit, docstrings, seed = sys.argv[1:7]
sys.path.insert(0, bench)
import tasks
limit = int(limit)
if limit > 0:
    tasks.BUGS = dict(list(tasks.BUGS.items())[:limit])
    tasks.CLEAN = tasks.CLEAN[:limit]
    tasks.TEST_FUNCTIONS = tasks.TEST_FUNCTIONS[:limit]
    tasks.DIFFS = tasks.DIFFS[:limit]
    docstrings = min(int(docstrings), limit)
if path:
    make = tasks.Settings
    def settings():
        s = make()
        s.model.path = path
        return s
    tasks.Settings = settings
result = asyncio.run(tasks.evaluate(preset, int(docstrings), int(seed),
                                    Path(tempfile.mkdtemp(prefix="hearth-compare-"))))
result["cases"] = {"bugs": len(tasks.BUGS), "clean": len(tasks.CLEAN),
                   "test_functions": len(tasks.TEST_FUNCTIONS), "diffs": len(tasks.DIFFS)}
print("HEARTH-COMPARE " + json.dumps(result, default=str), flush=True)
"""


def default_bench_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "bench"


def run_compare_child(bench: Path, entry: Entry, *, limit: int, docstrings: int, seed: int,
                      timeout: float) -> dict[str, Any]:
    """One model through bench/tasks.py's evaluate(), in a child process."""
    import subprocess
    import time

    preset = entry.name if entry.source == "bundled" else "smollm2"
    path = "" if entry.source == "bundled" else str(entry.path)
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _COMPARE_CHILD, str(bench), preset, path,
                               str(limit), str(docstrings), str(seed)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": entry.name, "error": f"took over {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("HEARTH-COMPARE "):
            result: dict[str, Any] = json.loads(line[len("HEARTH-COMPARE "):])
            result["model"] = entry.name
            result["path"] = str(entry.path) if entry.path else None
            result["seconds"] = round(time.perf_counter() - started, 1)
            return result
    tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
    return {"model": entry.name, "error": f"the evaluation failed (exit {proc.returncode}): "
            f"{tail[:300]}"}


def _share(a: float, b: float) -> float:
    return a / b if b else 0.0


def compare_scores(r: dict[str, Any]) -> dict[str, float]:
    """Each task's figures as shares in 0..1 (higher is better), for the plot."""
    rv, dc, ts, cm = r["review"], r["docstrings"], r["tests"], r["commit"]
    cases = r.get("cases", {})
    return {
        "review: planted bugs found": _share(rv["found"], cases.get("bugs", 0)),
        "docstrings passing": _share(dc["ok"], dc["total"]),
        "docstring ROUGE-L": float(dc["rouge"]),
        "tests kept": _share(ts["kept"], ts["generated"]),
        "kept tests passing again": _share(ts["rerun_passed"], ts["kept"]),
        "commit messages made": _share(cm["made"], cm["diffs"]),
        "subject names the diff": _share(cm["named"], cm["made"]),
        "subject ROUGE-L": float(cm["rouge"]),
    }


def compare_table(results: list[dict[str, Any]]) -> str:
    """The markdown report: one row per model, the columns bench/tasks.py reports."""
    head = ("| model | runs on | review: bugs found | findings on the planted line / "
            "elsewhere | findings per clean function | docstrings passing | docstring "
            "ROUGE-L (name only) | tests generated / kept / failing | kept tests passing "
            "again | commit messages made | subject names the diff | subject ROUGE-L | "
            "type as the reference | s per review / docstring / test / message |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    errors = []
    for r in results:
        if "error" in r:
            errors.append(f"- **{r['model']}**: {r['error']}")
            continue
        rv, dc, ts, cm = r["review"], r["docstrings"], r["tests"], r["commit"]
        cases = r.get("cases", {})
        lines.append(
            f"| {r['model']} | {r.get('where', '?')} | {rv['found']}/{cases.get('bugs', '?')} "
            f"| {rv['on_target']} / {rv['elsewhere']} | {rv['clean_per_fn']:.2f} "
            f"| {dc['ok']}/{dc['total']} | {dc['rouge']:.2f} ({dc['baseline']:.2f}) "
            f"| {ts['generated']} / {ts['kept']} / {ts['failing']} "
            f"| {ts['rerun_passed']}/{ts['kept']} | {cm['made']}/{cm['diffs']} "
            f"| {cm['named']}/{cm['made']} | {cm['rouge']:.2f} "
            f"| {cm['typed']}/{cm['typed_total']} | {rv['s_per_fn']:.1f} / "
            f"{dc['s_per_fn']:.1f} / {ts['s_per_fn']:.1f} / {cm['s_per_msg']:.1f} |")
    text = "\n".join(lines) + "\n"
    if errors:
        text += "\nNot evaluated:\n\n" + "\n".join(errors) + "\n"
    return text


def compare_plot(results: list[dict[str, Any]], path: Path) -> str | None:
    """A grouped bar chart of compare_scores per model; None, or why there is none."""
    done = [r for r in results if "error" not in r]
    if not done:
        return "no model was evaluated"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    scores = [compare_scores(r) for r in done]
    labels = list(scores[0])
    width = 0.8 / len(done)
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(labels) + len(done)), 4.8))
    for i, (r, sc) in enumerate(zip(done, scores, strict=True)):
        xs = [j + (i - (len(done) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [sc[k] for k in labels], width, label=r["model"])
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share (higher is better)")
    ax.set_title("Hearth tasks by model (bench/tasks.py)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def write_compare_report(results: list[dict[str, Any]], out: Path,
                         note: str = "") -> dict[str, Path]:
    """results.json, report.md (the table, and the plot when matplotlib is there) and
    scores.png in `out`; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "results.json", "markdown": out / "report.md"}
    written["json"].write_text(json.dumps(results, indent=2, default=str) + "\n")
    plot = out / "scores.png"
    why_not = compare_plot(results, plot)
    parts = ["# Model comparison", ""]
    if note:
        parts += [note, ""]
    parts += [compare_table(results)]
    if why_not is None:
        written["plot"] = plot
        parts += ["![scores by model](scores.png)", ""]
    else:
        plot.unlink(missing_ok=True)
        parts += [f"(no plot: {why_not})", ""]
    written["markdown"].write_text("\n".join(parts))
    return written


def cmd_models_compare(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    bench = Path(args.bench).expanduser() if args.bench else default_bench_dir()
    if not (bench / "tasks.py").is_file():
        print(f"hearth models compare: no bench/tasks.py in {bench}: it comes with a Hearth "
              "checkout; pass --bench DIR", file=sys.stderr)
        return 1
    found = load_catalog(args)
    entries: list[Entry] = []
    for target in args.targets:
        args.target = target
        entry = _resolve_target(args, found)
        if isinstance(entry, str) or entry.problem:
            why = entry if isinstance(entry, str) else f"{entry.name}: {entry.problem}"
            print(f"hearth models compare: {why}", file=sys.stderr)
            return 1
        entries.append(entry)
    results = []
    for entry in entries:
        print(f"evaluating {entry.name} ...", file=sys.stderr, flush=True)
        result = run_compare_child(bench, entry, limit=args.limit, docstrings=args.docstrings,
                                   seed=args.seed, timeout=args.timeout)
        print(f"  {entry.name}: " + (result.get("error") or f"done in {result['seconds']} s"),
              file=sys.stderr, flush=True)
        results.append(result)
    note = (f"Task evaluation from `bench/tasks.py` (seed {args.seed}"
            + (f", at most {args.limit} cases per task" if args.limit else "")
            + "). Every figure counts what reached the user after Hearth's validation.")
    written = write_compare_report(results, Path(args.out).expanduser(), note)
    print(compare_table(results), file=out)
    print("written: " + ", ".join(str(p) for p in written.values()), file=out)
    return 0 if all("error" not in r for r in results) else 1
