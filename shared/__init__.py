"""ragfleet's library: everything the producer and the workers share. Never imports Celery.

A package per concern (see ARCHITECTURE.md):
    state/      every Redis key and every read and write of ragfleet's state
    retrieval/  PDF to chunks to indexes to fused hits, and the prompt built from them
    llm/        the model catalog, chat templates, the engines behind one Engine protocol
    report/     statistics, exports and the HTML report of a batch
    pipeline/   the decisions of each job step (ingest, retrieve, answer, score), over the above
config.py and errors.py sit on top: settings and the error hierarchy every package uses.
"""
