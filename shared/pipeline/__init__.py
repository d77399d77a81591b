"""The decisions of each step of ragfleet's work, as plain functions the Celery tasks call:
questions files (questions), documents to a new collection version (ingestion), an ingestion
job's life (ingest_job), retrieving, answering and scoring a batch's questions (answering), and
whether a task whose worker keeps dying runs again (poison).
Built on state, retrieval and llm; tested against a real Redis with a scripted engine."""
