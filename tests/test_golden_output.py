"""Same bytes out for the same inputs and key as the run recorded before the package was
reorganised (issue 12): every written file's sha256, every input's outcome and reason."""

from __future__ import annotations

import json

import pytest

from .golden import CONFIGS, RECORD, run_config
from .realdata import REQUIRE, missing_sources

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("name", "profile", "options", "kind"), CONFIGS, ids=[c[0] for c in CONFIGS]
)
def test_output_unchanged(name: str, profile: str, options: tuple[str, ...], kind: str) -> None:
    if kind == "real" and missing_sources():
        if REQUIRE:
            pytest.fail(f"real test data missing: {', '.join(missing_sources())}")
        pytest.skip("real test data missing")
    recorded = json.loads(RECORD.read_text())[name]
    fresh = run_config(name, profile, options, kind)
    assert fresh["outcomes"] == recorded["outcomes"]
    new: dict[str, str] = fresh["files"]  # type: ignore[assignment]
    old: dict[str, str] = recorded["files"]
    changed = sorted(path for path in set(new) | set(old) if new.get(path) != old.get(path))
    assert not changed, f"{len(changed)} output files differ, e.g. {changed[:5]}"
