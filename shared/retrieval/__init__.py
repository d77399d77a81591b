"""The retrieval library: PDF bytes to pages (pdf), pages to chunks (chunking), chunks to
embeddings (embeddings), BM25 and FAISS indexes (bm25, indexes), fused hits (fusion) and the
prompt built from them (prompts); URL downloads of documents (download). Knows nothing of Redis."""
