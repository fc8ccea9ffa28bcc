"""The generated reference pages (docs/hooks/reference.py): every command of the CLI,
lazily loaded groups included, and every public name of the API, render without error."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

HOOK = Path(__file__).resolve().parents[2] / "docs" / "hooks" / "reference.py"


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("docs_reference_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_lists_every_command_with_its_options(hook: ModuleType) -> None:
    page = hook.cli_reference()
    assert page.startswith("# Command reference\n")
    for heading in ("## `paglets`", "### `paglets host`", "#### `paglets doctor import`"):
        assert f"\n{heading}\n" in page, heading
    assert "paglets doctor [OPTIONS] [CLASS]... | import CLASS..." in page
    assert "* `--expect-tag T`: A tag some host must advertise." in page
    assert page.count("--install-completion") == 1  # the root's only


def test_the_api_reference_has_every_public_name(hook: ModuleType) -> None:
    import paglets

    page = hook.api_reference()
    for name in paglets.__all__:
        assert f"\n### `{name}`\n" in page, name
    assert "class Host(name: str," in page  # annotations as written, not quoted
    assert "'str" not in page.split("### `Host`", 1)[1].split("###", 1)[0]
