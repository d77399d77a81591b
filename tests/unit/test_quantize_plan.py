"""Pure decisions of `models quantize` and of split-package models: the type names, the size a
quantization may take, what a catalog's `parts` table may say, pip's reason in one line."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.errors import UsageError
from shared.llm import quantize
from shared.llm.package_parts import PackageParts, _pip_reason

pytestmark = pytest.mark.unit


def test_type_names_are_normalised_and_checked():
    assert quantize.normalise_type(" q2_k ") == "Q2_K"
    assert quantize.normalise_type("Q4_K_M") == "Q4_K_M"
    with pytest.raises(UsageError, match="needs an importance matrix"):
        quantize.normalise_type("iq2_xxs")
    with pytest.raises(UsageError, match="unknown quantization type 'Q9'; choose one of .*Q2_K"):
        quantize.normalise_type("Q9")


def test_the_size_estimate_scales_by_bits_per_weight_with_room(tmp_path):
    source = tmp_path / "m.gguf"
    source.write_bytes(b"\0" * (100 * 2**20))
    q2 = quantize.estimated_size(source, "Q4_K_M", "Q2_K")
    q8 = quantize.estimated_size(source, "Q4_K_M", "Q8_0")
    assert q2 < q8
    # never below the nominal ratio: a full disk must be caught before writing
    assert q2 >= 100 * 2**20 * quantize.BITS_PER_WEIGHT["Q2_K"] / 4.89
    # a source of unknown type counts as the smallest common type: the estimate stays high
    assert quantize.estimated_size(source, None, "Q8_0") > q8


def test_parts_tables_are_checked():
    parts = PackageParts(count=2, requirement="pkg-part{n}==1.0",
                         member="pkg_part{n}/data/part{n:02d}.bin", sha256=["a" * 64, "b" * 64])
    assert parts.requirement_of(2) == "pkg-part2==1.0"
    assert parts.member_of(2) == "pkg_part2/data/part02.bin"
    assert parts.distribution_of(2) == "pkg-part2"
    with pytest.raises(ValidationError, match="lists 1 checksums for 2 parts"):
        PackageParts(count=2, requirement="p{n}", member="p{n}/x", sha256=["a" * 64])
    with pytest.raises(ValidationError, match="package/path"):
        PackageParts(count=1, requirement="p{n}", member="../x")


def test_pips_reason_is_its_last_error_line():
    stderr = ("WARNING: Location 'file:///opt/x' is ignored\n"
              "ERROR: Could not find a version that satisfies the requirement p==1\n"
              "ERROR: No matching distribution found for p==1\n")
    assert _pip_reason(stderr) == "No matching distribution found for p==1"
    assert _pip_reason("") == "no wheel downloaded"
