"""Chat formats that dziri supplies for models whose GGUF carries no chat template.

Gemma 3 270M (the base of the shipped Darija adapter) is a *base* model: its GGUF has no
template, but its vocabulary has Gemma's turn tokens. The adapter is trained on this very
template (training/instructions.py) and the llama.cpp backend serves with it, so the two
render a conversation into the same token ids (tests/plugins/test_turn_format.py).

It is Google's Gemma 3 turn format: a system message becomes the opening paragraph of the
first user turn (Gemma has no system role), the assistant's role is called "model".
"""

from __future__ import annotations

GEMMA_END_OF_TURN = "<end_of_turn>"

GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] | trim + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '')"
    " + message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

# general.architecture of a GGUF → the template dziri supplies when the file has none.
TEMPLATES_BY_ARCHITECTURE = {"gemma3": GEMMA_TEMPLATE, "gemma2": GEMMA_TEMPLATE, "gemma": GEMMA_TEMPLATE}


def supplied_template(architecture: str) -> str | None:
    """The template for a GGUF without one, or None when dziri knows none for it."""
    return TEMPLATES_BY_ARCHITECTURE.get(architecture)
