"""Which model writes the questions of `ragfleet demo --generate`."""

import pytest

from producer.demo import default_generator
from shared.config import PROJECT_ROOT, Settings
from shared.llm.catalog import load_catalog

pytestmark = pytest.mark.unit

CATALOG = load_catalog(PROJECT_ROOT / "models" / "catalog.toml")
BUNDLED = ["smollm2-135m", "gemma3-270m"]


def test_without_the_1_5b_the_bundled_instruction_model_writes_not_the_base_model(tmp_path):
    # Gemma 3 270M, last of the compared models, is a base model: its items did not parse
    settings = Settings(data_dir=tmp_path, models_dir=tmp_path / "models")
    assert default_generator(CATALOG, settings, BUNDLED) == "smollm2-135m"


def test_the_1_5b_writes_when_it_is_installed(tmp_path):
    settings = Settings(data_dir=tmp_path, models_dir=tmp_path / "models")
    settings.models_dir.mkdir()
    (settings.models_dir / CATALOG.get("qwen2.5-coder-1.5b").file).write_bytes(b"GGUF")
    assert default_generator(CATALOG, settings, BUNDLED) == "qwen2.5-coder-1.5b"
