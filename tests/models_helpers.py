"""What the `hearth models` tests share: a tiny real GGUF and the subcommands run
in-process with their output captured."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from hearth_lsp.server.models_cli import add_models_parser


def tiny_gguf(path: Path, *, name: str | None = None, context: int | None = None) -> Path:
    """A valid one-block GGUF file written with the gguf package (no model behind it)."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    if name is not None:
        w.add_name(name)
    w.add_block_count(1)
    if context is not None:
        w.add_context_length(context)
    w.add_tensor("blk.0.attn_q.weight", np.ones((4, 16), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def run_models(argv: list[str]) -> tuple[int, str]:
    """`hearth ARGV` through the models subcommands: (exit status, what it printed)."""
    parser = argparse.ArgumentParser(prog="hearth")
    add_models_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    return args.func(args, out=out), out.getvalue()
