"""The local search of `paglets search` (grep and find) on a small tree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from paglets.examples.search import format_hit, resolve_roots
from paglets.examples.search_engine import SearchOptions, run_search


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "src" / "deep" / "deeper").mkdir(parents=True)
    (root / "src" / "main.py").write_text("import os\nTODO: fix\nprint('todo later')\n")
    (root / "src" / "notes.md").write_text("# Notes\nnothing\nTODO write\nend\n")
    (root / "src" / "deep" / "deeper" / "x.txt").write_text("TODO deep\n")
    (root / ".hidden.txt").write_text("TODO hidden\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("TODO vcs\n")
    (root / "build").mkdir()
    (root / "build" / "out.txt").write_text("TODO built\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "run.log").write_text("TODO log\n")
    (root / "blob.bin").write_bytes(b"TODO\x00binary")
    return root


def search(root: Path, **kw: Any) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = []
    options = SearchOptions(**kw)
    outcome = run_search(options, [(root, "r")], hits.append)
    assert not outcome.errors
    return hits


def paths(hits: list[dict[str, Any]]) -> list[str]:
    return sorted({h["path"] for h in hits})


def test_grep_skips_hidden_ignored_vcs_and_binary_files(tree: Path) -> None:
    hits = search(tree, mode="grep", pattern="TODO")
    assert paths(hits) == ["r/src/deep/deeper/x.txt", "r/src/main.py", "r/src/notes.md"]
    assert {"kind": "match", "path": "r/src/main.py", "line": 2, "text": "TODO: fix"} in hits
    everything = search(tree, mode="grep", pattern="TODO", hidden=True, no_ignore=True, text=True)
    assert "r/.git/config" in paths(everything) and "r/build/out.txt" in paths(everything)
    assert "r/.hidden.txt" in paths(everything) and "r/blob.bin" in paths(everything)


def test_grep_case_words_fixed_and_smart_case(tree: Path) -> None:
    assert len(search(tree, mode="grep", pattern="todo")) == 1  # print('todo later')
    assert len(search(tree, mode="grep", pattern="todo", ignore_case=True)) == 4
    assert len(search(tree, mode="grep", pattern="todo", smart_case=True)) == 4
    assert len(search(tree, mode="grep", pattern="Todo", smart_case=True)) == 0
    assert search(tree, mode="grep", pattern="(", fixed_strings=True)[0]["line"] == 3
    assert paths(search(tree, mode="grep", pattern="fix", word=True)) == ["r/src/main.py"]
    assert search(tree, mode="grep", pattern="fi", word=True) == []


def test_grep_context_counts_files_and_only_matching(tree: Path) -> None:
    notes = tree / "src" / "notes.md"
    hits = search(notes.parent, mode="grep", pattern="TODO", before=1, after=1, globs=("*.md",))
    assert [(h["kind"], h["line"]) for h in hits] == [("context", 2), ("match", 3), ("context", 4)]
    counts = search(tree, mode="grep", pattern="TODO|todo", count=True)
    assert {h["path"]: h["count"] for h in counts}["r/src/main.py"] == 2
    listed = search(tree, mode="grep", pattern="TODO", files_with_matches=True)
    assert all(h["kind"] == "file" for h in listed) and len(listed) == 3
    without = search(tree, mode="grep", pattern="deep", files_without_match=True)
    assert paths(without) == ["r/src/main.py", "r/src/notes.md"]
    parts = search(tree, mode="grep", pattern=r"T\w+", only_matching=True, column=True)
    assert {
        "kind": "match",
        "path": "r/src/main.py",
        "line": 2,
        "column": 1,
        "text": "TODO",
    } in parts
    assert len(search(tree, mode="grep", pattern="o", max_count=1, globs=("main.py",))) == 1


def test_globs_types_depth_size_and_result_limits(tree: Path) -> None:
    assert paths(search(tree, mode="grep", pattern="TODO", globs=("*.md",))) == ["r/src/notes.md"]
    assert "r/src/notes.md" not in paths(
        search(tree, mode="grep", pattern="TODO", globs=("!*.md",))
    )
    assert paths(search(tree, mode="grep", pattern="TODO", types=("py",))) == ["r/src/main.py"]
    assert "r/src/main.py" not in paths(
        search(tree, mode="grep", pattern="TODO", types_not=("py",))
    )
    shallow = search(tree, mode="grep", pattern="TODO", max_depth=2)
    assert "r/src/deep/deeper/x.txt" not in paths(shallow)
    assert search(tree, mode="grep", pattern="TODO", max_file_size=5) == []
    hits: list[dict[str, Any]] = []
    outcome = run_search(
        SearchOptions(mode="grep", pattern="TODO", max_results_per_host=2),
        [(tree, "r")],
        hits.append,
    )
    assert len(hits) == 2 and outcome.truncated and outcome.hits == 2


def test_find_names_kinds_extensions_and_full_path(tree: Path) -> None:
    assert paths(search(tree, mode="find", pattern="main")) == ["r/src/main.py"]
    dirs = search(tree, mode="find", kind="dir")
    assert paths(dirs) == ["r/src", "r/src/deep", "r/src/deep/deeper"]
    assert paths(search(tree, mode="find", extensions=("md",))) == ["r/src/notes.md"]
    assert paths(search(tree, mode="find", pattern="deeper/x", full_path=True)) == [
        "r/src/deep/deeper/x.txt"
    ]
    assert search(tree, mode="find", pattern="main")[0]["size"] > 0


def test_symlink_loops_are_walked_once(tree: Path) -> None:
    os.symlink(tree / "src", tree / "src" / "deep" / "loop")
    hits = search(tree, mode="grep", pattern="TODO deep", follow=True)
    assert len(hits) == 1


def test_should_stop_ends_the_search(tree: Path) -> None:
    hits: list[dict[str, Any]] = []
    outcome = run_search(SearchOptions(pattern="TODO"), [(tree, "r")], hits.append, lambda: True)
    assert outcome.stopped and hits == []


def test_bad_requests_fail_where_they_are_made() -> None:
    with pytest.raises(ValueError, match="invalid search pattern"):
        SearchOptions(pattern="(")
    with pytest.raises(ValueError, match="needs a PATTERN"):
        SearchOptions(mode="grep")
    with pytest.raises(ValueError, match="unknown file type"):
        SearchOptions(pattern="x", types=("cobol",))
    with pytest.raises(ValueError, match="--kind"):
        SearchOptions(mode="find", kind="socket")


def test_roots_must_lie_under_the_file_roots(tmp_path: Path, tree: Path) -> None:
    (tmp_path / "outside").mkdir()
    found, errors = resolve_roots(
        [str(tree / "src"), str(tmp_path / "outside"), str(tree / "missing")], [tree]
    )
    assert found == [((tree / "src").resolve(), str(tree / "src"))]
    assert "outside this host's file roots" in errors[0]
    assert "no such file" in errors[1]


def test_hits_print_like_grep() -> None:
    assert (
        format_hit({"host": "a", "kind": "match", "path": "p", "line": 3, "text": "x"}) == "a:p:3:x"
    )
    assert (
        format_hit({"host": "a", "kind": "context", "path": "p", "line": 2, "text": "y"})
        == "a:p-2-y"
    )
    assert format_hit({"host": "a", "kind": "count", "path": "p", "count": 4}) == "a:p:4"
    assert format_hit({"host": "a", "kind": "file", "path": "p"}) == "a:p"
