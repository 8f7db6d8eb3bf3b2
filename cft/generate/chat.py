"""How a chat becomes prompt text, shared by every backend that renders prompts itself.

Standard library only: the vLLM worker imports it in an environment that may have
vllm but not the rest of cft's dependencies.
"""

from __future__ import annotations


def render_chat(tokenizer, chat: list[dict[str, str]]) -> str:
    """The model's chat template with the assistant turn opened; a base model without a
    template gets the messages' contents joined by blank lines (plain concatenation)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in chat) + "\n\n"
