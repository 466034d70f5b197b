"""The LSP layer: a thin pygls server over the domain code."""
