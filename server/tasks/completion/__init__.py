"""Inline completion (ghost text): prompts per model family, quality rules, reuse."""
