"""`ragfleet collections [show|delete]`."""

from __future__ import annotations

import click

from producer.output import emit_json, human_size, json_option, table
from producer.session import connect
from shared.state import collection_store


def _manifest_json(m) -> dict:
    return {**m.__dict__, "pages": sum(d["pages"] for d in m.documents)}


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def collections(ctx, as_json):
    """List collections (or show / delete one)."""
    if ctx.invoked_subcommand:
        return
    found = collection_store.list_collections(connect().client)
    if as_json:
        emit_json({"collections": [_manifest_json(m) for m in found]})
        return
    click.echo(table(("COLLECTION", "VERSION", "DOCUMENTS", "PAGES", "CHUNKS", "CHUNK SIZE"),
                     [(m.name, m.version, len(m.documents), sum(d["pages"] for d in m.documents),
                       m.chunks, m.chunk_size) for m in found]))


@collections.command("show")
@click.argument("name")
@json_option
def collections_show(name, as_json):
    """One collection: documents with their pages, chunks, version, embedding model."""
    m = collection_store.manifest(connect().client, collection_store.check_name(name))
    if as_json:
        emit_json(_manifest_json(m))
        return
    click.echo(f"{m.name} version {m.version}: {m.chunks} chunks of {m.chunk_size} characters "
               f"(overlap {m.chunk_overlap}), embeddings {m.embedder_id()}")
    click.echo(table(("DOCUMENT", "PAGES", "CHUNKS", "SIZE", "SHA256"),
                     [(d["name"], d["pages"], d["chunks"], human_size(d["bytes"]), d["sha256"][:12])
                      for d in m.documents]))
    if m.timings_s:
        phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in m.timings_s.items())
        click.echo(f"ingestion of version {m.version}: {phases}")


@collections.command("delete")
@click.argument("name")
@json_option
def collections_delete(name, as_json):
    """Delete a collection and all its versions."""
    version = collection_store.delete(connect().client, collection_store.check_name(name))
    if as_json:
        emit_json({"deleted": name, "version": version})
    else:
        click.echo(f"deleted collection {name} (was at version {version})")


COMMANDS = (collections,)
