"""Workspace indexing for Hearth.

This package never imports the server, pygls or lsprotocol: it is usable on
its own (the CLI and benchmarks call it directly).
"""
