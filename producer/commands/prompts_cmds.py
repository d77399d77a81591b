"""`ragfleet prompts [show NAME]`: the prompt templates a batch can use (`ask --prompt NAME`).
Yours go in DATA_DIR/prompts.toml as [prompts.NAME] tables (system, user, separator,
user_without_context, context_order, version, description), over the built-in ones."""

from __future__ import annotations

import click

from producer.output import emit_json, json_option, table
from shared.config import load_settings
from shared.retrieval.prompts import BUILT_IN, get_prompt, load_prompts


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def prompts(ctx, as_json):
    """List the prompt templates (or show one)."""
    if ctx.invoked_subcommand:
        return
    settings = load_settings()
    templates = load_prompts(settings.prompts_path)
    if as_json:
        emit_json({"prompts": [t.model_dump() for t in templates.values()],
                   "default": settings.prompt, "file": str(settings.prompts_path)})
        return
    rows = [(t.name + (" (default)" if t.name == settings.prompt else ""), t.version,
             "built-in" if BUILT_IN.get(t.name) == t else "yours",
             "system" if "{context}" in t.system else "user", t.description)
            for t in templates.values()]
    click.echo(table(("PROMPT", "VERSION", "SOURCE", "CONTEXTS IN", "DESCRIPTION"), rows))


@prompts.command("show")
@click.argument("name")
@json_option
def prompts_show(name, as_json):
    """One template's text, with {context} and {question} where they go."""
    template = get_prompt(name, load_settings().prompts_path)
    if as_json:
        emit_json(template.model_dump())
        return
    click.echo(f"{template.label}: {template.description}")
    click.echo(f"--- system\n{template.system}\n--- user\n{template.user}")
    click.echo(f"--- contexts joined by {template.separator!r}, "
               f"{template.context_order.replace('_', ' ')}")


COMMANDS = (prompts,)
