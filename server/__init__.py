"""Hearth: a local AI language server (``hearth_lsp.server``)."""

__version__ = "0.1.0"
