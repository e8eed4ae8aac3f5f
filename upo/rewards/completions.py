"""The text of a completion, as the built-in reward functions score it (a string, or a list of chat messages).

Its own module, imported by the registry and by every built-in, so that neither imports the other.
"""

from __future__ import annotations

from typing import Any


def completion_text(completion: str | list[dict]) -> str:
    """The text of one completion that a built-in scores.

    A string is returned as is. A message list gives the ``content`` of its assistant messages joined
    by newlines, or of all its messages when none has the assistant role (e.g. messages without roles).
    """
    if isinstance(completion, str):
        return completion
    assistant = [m for m in completion if m.get("role") == "assistant"]
    return "\n".join(_content_text(m.get("content")) for m in assistant or completion)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal content: [{"type": "text", "text": ...}, {"type": "image"}]
        return "\n".join(part["text"] for part in content if part.get("type") == "text")
    raise TypeError(f"message content must be a string or a list of parts, got {type(content).__name__}")
