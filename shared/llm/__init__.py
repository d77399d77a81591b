"""Running GGUF models: the catalog (catalog), chat templates (chat_templates), requests and
results (requests), the Engine protocol (engine) with its two engines, single-stream
(llama_engine) and continuous batching (batched_engine), and memory estimates (memory)."""
