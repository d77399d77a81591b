"""`ragfleet models add/pull/remove` against a loopback server that answers as a model hub does
(HEAD and GET on /REPO/resolve/REVISION/FILE, with ranges), HF_ENDPOINT pointing at it, so the
real huggingface_hub client code runs: no hub is reachable from these machines."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, clean_env, ragfleet

pytestmark = pytest.mark.integration

REPO = "owner/tiny-GGUF"


def tiny_gguf(path: Path) -> bytes:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_tensor("weights", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


class Hub(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.files = files  # "REPO/FILE" -> bytes
        self.requests: list[str] = []


class HubHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _find(self) -> bytes | None:
        self.server.requests.append(f"{self.command} {self.path}")
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        return self.server.files.get("/".join(parts[:2]) + "/" + "/".join(parts[4:]))

    def _headers(self, data: bytes, status: int = 200, start: int = 0) -> None:
        self.send_response(status)
        self.send_header("X-Repo-Commit", "c" * 40)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()

    def do_HEAD(self):
        data = self._find()
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._headers(data)

    def _listing(self) -> bool:
        """GET /api/models/OWNER/REPO[/revision/REV]: the repository's files with their sizes
        and sha256 (LFS), as the hub answers model_info(files_metadata=True)."""
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] != ["api", "models"] or len(parts) < 4:
            return False
        self.server.requests.append(f"{self.command} {self.path}")
        repo = "/".join(parts[2:4])
        siblings = [{"rfilename": key[len(repo) + 1:], "size": len(data),
                     "lfs": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                             "pointerSize": 130}}
                    for key, data in self.server.files.items() if key.startswith(repo + "/")]
        body = json.dumps({"id": repo, "sha": "c" * 40, "siblings": siblings}).encode()
        status = 200 if siblings else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if not siblings:
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return True

    def do_GET(self):
        if self._listing():
            return
        data = self._find()
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0] or 0)
        self._headers(data, 206 if start else 200, start)
        self.wfile.write(data[start:])


@pytest.fixture()
def hub(tmp_path):
    data = tiny_gguf(tmp_path / "built.gguf")
    server = Hub({f"{REPO}/tiny.Q4_0.gguf": data, f"{REPO}/not-gguf.gguf": b"<html>oops</html>",
                  f"{REPO}/tiny.Q5_K_M.gguf": data + b"\0" * 7,
                  f"{REPO}/tiny-q2_k.gguf": data + b"\0" * 3,
                  f"{REPO}/tiny-Q8_0-00001-of-00002.gguf": data,
                  f"{REPO}/tiny-Q8_0-00002-of-00002.gguf": data,
                  f"{REPO}/README.md": b"# tiny"})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = clean_env(RAGFLEET_DATA_DIR=str(tmp_path / "data"),
                    RAGFLEET_MODELS_DIR=str(tmp_path / "models"),
                    HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
                    HF_HOME=str(tmp_path / "hf-home"))
    for offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # set by an embedder loaded
        env.pop(offline, None)                                  # earlier in this process
    yield server, env, data, tmp_path / "models"
    server.shutdown()


def add(env, name, file, *extra):
    result = ragfleet("models", "add", name, "--hf", f"{REPO}/{file}", *extra, env=env,
                      timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def test_pull_downloads_checks_and_installs_the_file(hub):
    server, env, data, models_dir = hub
    add(env, "tiny", "tiny.Q4_0.gguf", "--sha256", hashlib.sha256(data).hexdigest())
    listed = json.loads(ragfleet("models", "--json", env=env, timeout=60).stdout)["models"]
    (entry,) = [m for m in listed if m["name"] == "tiny"]
    assert entry["catalog"] == "yours" and entry["availability"] == "not downloaded"
    assert entry["how_to_get"] == "ragfleet models pull tiny"
    pulled = ragfleet("models", "pull", "tiny", "--json", env=env, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["downloaded"] is True
    assert (models_dir / "tiny.Q4_0.gguf").read_bytes() == data
    assert any(r.startswith("GET /owner/tiny-GGUF/resolve/main/tiny.Q4_0.gguf")
               for r in server.requests)
    again = ragfleet("models", "pull", "tiny", "--json", env=env, timeout=60)
    assert json.loads(again.stdout)["downloaded"] is False  # already here: no download
    removed = ragfleet("models", "remove", "tiny", env=env, timeout=60)
    assert removed.returncode == 0 and (models_dir / "tiny.Q4_0.gguf").is_file()


def test_wrong_checksum_leaves_no_file_under_the_models_name(hub):
    _, env, _, models_dir = hub
    add(env, "tiny", "tiny.Q4_0.gguf", "--sha256", "0" * 64)
    result = ragfleet("models", "pull", "tiny", env=env, timeout=120)
    assert_one_line_error(result, 1, "does not match the catalog's")
    assert not (models_dir / "tiny.Q4_0.gguf").exists()


def test_a_file_that_is_not_gguf_is_refused(hub):
    _, env, _, models_dir = hub
    add(env, "page", "not-gguf.gguf")
    result = ragfleet("models", "pull", "page", env=env, timeout=120)
    assert_one_line_error(result, 1, "not a GGUF file")
    assert not (models_dir / "not-gguf.gguf").exists()


def test_missing_file_on_the_hub_is_a_usage_error(hub):
    _, env, _, models_dir = hub
    add(env, "gone", "missing.gguf")
    result = ragfleet("models", "pull", "gone", env=env, timeout=120)
    assert_one_line_error(result, 2, "not found on the hub")
    assert not (models_dir / "missing.gguf").exists()


def test_unreachable_or_offline_hub_is_unavailable(hub):
    _, env, _, _ = hub
    add(env, "tiny", "tiny.Q4_0.gguf")
    offline = ragfleet("models", "pull", "tiny", env={**env, "HF_HUB_OFFLINE": "1"}, timeout=60)
    assert_one_line_error(offline, 69, "cannot reach the hub")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    unreachable = ragfleet("models", "pull", "tiny", env={**env, "HF_ENDPOINT": closed},
                           timeout=120)
    assert_one_line_error(unreachable, 69, "tiny")


@pytest.mark.parametrize("args, needle", [
    (["add", "smollm2-135m", "--hf", f"{REPO}/tiny.Q4_0.gguf"], "in the shipped catalog"),
    (["add", "x", "--hf", "just-a-name"], "give OWNER/REPO/FILE.gguf"),
    (["add", "x"], "give exactly one of --file PATH or --hf REPO/FILE"),
    (["add", "x", "--file", "/nonexistent.gguf"], "no such file"),
    (["remove", "smollm2-135m"], "only models you added can be removed"),
    (["pull", "smollm2-135m-typo"], "unknown model"),
])
def test_bad_model_commands_say_so_in_one_line(hub, args, needle):
    _, env, _, _ = hub
    assert_one_line_error(ragfleet("models", *args, env=env, timeout=60), 2, needle)


def test_pull_by_quantization_picks_that_file_from_the_repository(hub):
    server, env, data, models_dir = hub
    add(env, "tiny", "tiny.Q4_0.gguf")
    pulled = ragfleet("models", "pull", "tiny", "--quant", "q5_k_m", "--json", env=env,
                      timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    result = json.loads(pulled.stdout)
    assert result["model"] == "tiny-q5_k_m" and result["quantization"] == "Q5_K_M"
    assert result["hf_file"] == "tiny.Q5_K_M.gguf" and result["downloaded"] is True
    assert (models_dir / "tiny.Q5_K_M.gguf").read_bytes() == data + b"\0" * 7
    assert any(r.startswith(f"GET /api/models/{REPO}") for r in server.requests)
    listed = json.loads(ragfleet("models", "--json", env=env, timeout=60).stdout)["models"]
    (entry,) = [m for m in listed if m["name"] == "tiny-q5_k_m"]
    assert entry["availability"] == "present" and entry["catalog"] == "yours"
    # the entry carries the hub's size and sha256, so the download was checked against them
    from shared.config import Settings
    from shared.llm.catalog import load_catalog
    settings = Settings(data_dir=env["RAGFLEET_DATA_DIR"])
    saved = load_catalog(settings.catalog_path, settings.user_catalog_path).get("tiny-q5_k_m")
    assert saved.size == len(data) + 7
    assert saved.sha256 == hashlib.sha256(data + b"\0" * 7).hexdigest()
    # the entry's own type is the entry itself; a repository by name works the same way
    own = ragfleet("models", "pull", "tiny", "--quant", "Q4_0", "--json", env=env, timeout=120)
    assert json.loads(own.stdout)["model"] == "tiny", own.stderr
    by_repo = ragfleet("models", "pull", REPO, "--quant", "Q2_K", "--json", env=env, timeout=120)
    assert by_repo.returncode == 0, by_repo.stderr
    assert json.loads(by_repo.stdout)["model"] == "tiny-q2_k"
    assert (models_dir / "tiny-q2_k.gguf").read_bytes() == data + b"\0" * 3


@pytest.mark.parametrize("args, code, needles", [
    (["tiny", "--quant", "Q3_K_M"], 2, ["has no Q3_K_M GGUF file", "Q2_K, Q4_0, Q5_K_M, Q8_0"]),
    (["tiny", "--quant", "Q8_0"], 2, ["split over 2 files"]),
    (["owner/absent-GGUF", "--quant", "Q4_0"], 2, ["owner/absent-GGUF", "not found"]),
    (["no-such-model", "--quant", "Q4_0"], 2, ["unknown model"]),
    (["smollm2-135m", "--quant", "Q4_0"], 2, ["has no hub repository"]),
    (["tiny", "--name", "x"], 2, ["--name goes with --quant"]),
])
def test_pull_by_quantization_errors_are_one_line(hub, args, code, needles):
    _, env, _, models_dir = hub
    add(env, "tiny", "tiny.Q4_0.gguf")
    assert_one_line_error(ragfleet("models", "pull", *args, env=env, timeout=120), code,
                          *needles)
    assert not any(p.name.endswith(".gguf") for p in models_dir.glob("*"))


def test_pull_by_quantization_from_an_offline_hub_is_unavailable(hub):
    _, env, _, _ = hub
    add(env, "tiny", "tiny.Q4_0.gguf")
    result = ragfleet("models", "pull", "tiny", "--quant", "Q5_K_M",
                      env={**env, "HF_HUB_OFFLINE": "1"}, timeout=60)
    assert result.returncode == 69 and len(result.stderr.strip().splitlines()) == 1, result.stderr
