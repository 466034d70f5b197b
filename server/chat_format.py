"""Turn messages into one prompt string, with the model's own chat template.

Rendering the GGUF's Jinja template ourselves (rather than calling
``create_chat_completion``) keeps one completion code path for chat and base
models, and makes the exact prompt text visible to tests and logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant
    content: str


class ChatTemplateError(ValueError):
    pass


def _raise(message: str) -> None:
    raise ChatTemplateError(message)


@lru_cache(maxsize=8)
def _compile(template: str):
    # jinja2 here, not above: a completion-style model never renders a chat, and the
    # import is a twelfth of a language server's start.
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(template)


def render_chat(template: str, messages: list[Message], *, bos_token: str = "",
                eos_token: str = "", add_generation_prompt: bool = True) -> str:
    """The prompt text for ``messages``; raises ChatTemplateError if the template fails."""
    from jinja2.exceptions import TemplateError

    try:
        return _compile(template).render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            bos_token=bos_token, eos_token=eos_token,
            add_generation_prompt=add_generation_prompt)
    except TemplateError as exc:
        raise ChatTemplateError(f"the model's chat template failed: {exc}") from exc


def merge_system(messages: list[Message]) -> list[Message]:
    """Fold a system message into the first user turn, for templates without one."""
    if not messages or messages[0].role != "system" or len(messages) < 2:
        return messages
    system, first, *rest = messages
    return [Message(first.role, f"{system.content}\n\n{first.content}"), *rest]
