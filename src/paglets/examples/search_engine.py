"""The local half of `paglets search`: walk a few directory trees and grep or find, as
ripgrep and fd would, in plain Python (jobs.md §7 "search", cli.md §7).

`run_search(options, roots, emit, should_stop)` walks each root, skips what the options
say (hidden entries, VCS directories, `.gitignore`/`.ignore` patterns, globs, file
types, depth, size, binary files), and hands each hit to `emit` as a small dict. It checks
`should_stop()` between files and every few thousand lines, so a deadline or a disposal
ends it promptly. No network, no paglets: the searcher paglet wraps it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FILE_TYPES",
    "SearchOptions",
    "SearchOutcome",
    "compile_pattern",
    "run_search",
]

# `-t/--type` names (ripgrep's spirit, a useful subset).
FILE_TYPES: dict[str, tuple[str, ...]] = {
    "c": ("*.c", "*.h"),
    "cpp": ("*.cpp", "*.cc", "*.cxx", "*.hpp", "*.hh", "*.hxx", "*.h"),
    "css": ("*.css", "*.scss"),
    "csv": ("*.csv", "*.tsv"),
    "go": ("*.go",),
    "html": ("*.html", "*.htm"),
    "java": ("*.java",),
    "js": ("*.js", "*.mjs", "*.cjs", "*.jsx"),
    "json": ("*.json", "*.jsonl"),
    "log": ("*.log",),
    "md": ("*.md", "*.markdown"),
    "py": ("*.py", "*.pyi"),
    "rst": ("*.rst",),
    "rust": ("*.rs",),
    "sh": ("*.sh", "*.bash", "*.zsh"),
    "sql": ("*.sql",),
    "toml": ("*.toml",),
    "ts": ("*.ts", "*.tsx"),
    "txt": ("*.txt",),
    "xml": ("*.xml",),
    "yaml": ("*.yaml", "*.yml"),
}
VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr"})
IGNORE_FILES = (".gitignore", ".ignore")
BINARY_PROBE = 8192
CHECK_EVERY_LINES = 4096
KINDS = ("any", "file", "dir", "symlink")


@dataclass(frozen=True)
class SearchOptions:
    """What to search for and how (cli.md §7's options). Sizes in bytes, 0 = no limit."""

    mode: str = "grep"  # grep | find
    pattern: str = ""
    ignore_case: bool = False
    smart_case: bool = False
    fixed_strings: bool = False
    word: bool = False
    globs: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    types_not: tuple[str, ...] = ()
    hidden: bool = False
    no_ignore: bool = False
    follow: bool = False
    max_depth: int = 0
    max_file_size: int = 0
    max_results_per_host: int = 0
    absolute_path: bool = False
    after: int = 0
    before: int = 0
    line_number: bool = True
    count: bool = False
    files_with_matches: bool = False
    files_without_match: bool = False
    only_matching: bool = False
    max_count: int = 0
    column: bool = False
    encoding: str = "utf-8"
    text: bool = False
    full_path: bool = False
    extensions: tuple[str, ...] = ()
    kind: str = "any"

    def __post_init__(self) -> None:
        if self.mode not in ("grep", "find"):
            raise ValueError(f"search mode must be 'grep' or 'find', got {self.mode!r}")
        if self.mode == "grep" and not self.pattern:
            raise ValueError("search grep needs a PATTERN")
        if self.kind not in KINDS:
            raise ValueError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        unknown = [t for t in (*self.types, *self.types_not) if t not in FILE_TYPES]
        if unknown:
            raise ValueError(
                f"unknown file type {unknown[0]!r}; known: {', '.join(sorted(FILE_TYPES))}"
            )
        for name in ("max_depth", "max_file_size", "max_results_per_host", "after", "before"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        compile_pattern(self)  # a bad regex fails here, where the search is made


@dataclass
class SearchOutcome:
    """What one host's search did."""

    files: int = 0
    hits: int = 0
    errors: list[str] = field(default_factory=list)
    truncated: bool = False
    stopped: bool = False
    seconds: float = 0.0


class _Stop(Exception):
    """Internal: stop walking (limit reached, deadline, disposal)."""


def compile_pattern(options: SearchOptions) -> re.Pattern[str] | None:
    """The pattern as a regex (None: `find` without a pattern matches everything)."""
    text = options.pattern
    if not text:
        return None
    body = re.escape(text) if options.fixed_strings else text
    if options.word:
        body = rf"\b(?:{body})\b"
    flags = 0
    if options.ignore_case or (options.smart_case and text == text.lower()):
        flags |= re.IGNORECASE
    try:
        return re.compile(body, flags)
    except re.error as exc:
        raise ValueError(f"invalid search pattern {text!r}: {exc}") from None


# -- walking --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ignore:
    base: Path
    patterns: tuple[tuple[str, bool, bool], ...]  # (glob, anchored, dir_only)

    def matches(self, path: Path, is_dir: bool) -> bool:
        try:
            rel = path.relative_to(self.base).as_posix()
        except ValueError:
            return False
        name = path.name
        for glob, anchored, dir_only in self.patterns:
            if dir_only and not is_dir:
                continue
            if anchored:
                if fnmatch.fnmatchcase(rel, glob):
                    return True
            elif fnmatch.fnmatchcase(name, glob) or fnmatch.fnmatchcase(rel, "*/" + glob):
                return True
        return False


def _read_ignores(directory: Path) -> list[_Ignore]:
    out = []
    for name in IGNORE_FILES:
        path = directory / name
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        patterns = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#") or line.startswith("!"):
                continue  # negations are not supported: the file is simply not ignored
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            patterns.append((line.lstrip("/"), anchored, dir_only))
        if patterns:
            out.append(_Ignore(directory, tuple(patterns)))
    return out


def _glob_filter(globs: Sequence[str]) -> Callable[[str, str, bool], bool]:
    """`(rel_path, name, is_dir) -> keep` for `-g` globs; `!G` excludes. Positive globs
    apply to files only (directories are walked to find matching files)."""
    include = [g for g in globs if not g.startswith("!")]
    exclude = [g[1:] for g in globs if g.startswith("!")]

    def one(glob: str, rel: str, name: str) -> bool:
        return fnmatch.fnmatchcase(rel, glob) if "/" in glob else fnmatch.fnmatchcase(name, glob)

    def keep(rel: str, name: str, is_dir: bool) -> bool:
        if any(one(g, rel, name) for g in exclude):
            return False
        if is_dir or not include:
            return True
        return any(one(g, rel, name) for g in include)

    return keep


def _type_filter(options: SearchOptions) -> Callable[[str], bool]:
    wanted = [g for t in options.types for g in FILE_TYPES[t]]
    unwanted = [g for t in options.types_not for g in FILE_TYPES[t]]
    extensions = tuple("." + e.lstrip(".").lower() for e in options.extensions)

    def keep(name: str) -> bool:
        if unwanted and any(fnmatch.fnmatchcase(name, g) for g in unwanted):
            return False
        if wanted and not any(fnmatch.fnmatchcase(name, g) for g in wanted):
            return False
        return not extensions or name.lower().endswith(extensions)

    return keep


@dataclass(frozen=True, slots=True)
class _Entry:
    path: Path
    shown: str
    rel: str
    kind: str  # file | dir | symlink
    size: int


def _walk(root: Path, shown_root: str, options: SearchOptions) -> Iterator[_Entry]:
    """Every entry under `root` that the filters keep, depth first, sorted by name."""
    keep_glob = _glob_filter(options.globs)
    seen: set[tuple[int, int]] = set()
    try:
        root_stat = root.stat()
        seen.add((root_stat.st_dev, root_stat.st_ino))
    except OSError:
        pass
    stack: list[tuple[Path, str, int, list[_Ignore]]] = [
        (root, shown_root, 0, [] if options.no_ignore else _read_ignores(root))
    ]
    while stack:
        directory, shown_dir, depth, ignores = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise _WalkError(f"{shown_dir}: {exc.strerror or exc}") from None
        subdirs = []
        for entry in entries:
            name = entry.name
            if not options.hidden and name.startswith("."):
                continue
            if name in VCS_DIRS and not options.no_ignore:
                continue
            path = Path(entry.path)
            shown = os.path.join(shown_dir, name)
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=options.follow)
                is_file = entry.is_file(follow_symlinks=options.follow)
            except OSError:
                continue
            if any(ig.matches(path, is_dir) for ig in ignores):
                continue
            rel = path.relative_to(root).as_posix()
            if not keep_glob(rel, name, is_dir):
                continue
            if is_dir:
                if options.max_depth and depth + 1 >= options.max_depth:
                    if options.mode == "find":
                        yield _Entry(path, shown, rel, "symlink" if is_link else "dir", 0)
                    continue
                if options.follow:
                    try:
                        st = path.stat()
                    except OSError:
                        continue
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue  # a symlink loop (or a second way in): once is enough
                    seen.add(key)
                subdirs.append((path, shown, is_link))
                if options.mode == "find":
                    yield _Entry(path, shown, rel, "symlink" if is_link else "dir", 0)
                continue
            if is_link and not is_file:
                if options.mode == "find":
                    yield _Entry(path, shown, rel, "symlink", 0)
                continue
            if not is_file:
                continue  # sockets, FIFOs, devices: never opened
            try:
                size = entry.stat(follow_symlinks=options.follow).st_size
            except OSError:
                continue
            yield _Entry(path, shown, rel, "symlink" if is_link else "file", size)
        for path, shown, _ in reversed(subdirs):
            more = ignores if options.no_ignore else ignores + _read_ignores(path)
            stack.append((path, shown, depth + 1, more))


class _WalkError(Exception):
    pass


# -- grep -----------------------------------------------------------------------------------


def _grep_file(
    entry: _Entry,
    regex: re.Pattern[str],
    options: SearchOptions,
    emit: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
) -> int:
    """Search one file; returns the number of hits emitted (matches or one per file)."""
    try:
        with open(entry.path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise _WalkError(f"{entry.shown}: {exc.strerror or exc}") from None
    if not options.text and b"\x00" in data[:BINARY_PROBE]:
        return 0
    text = data.decode(options.encoding, errors="replace")
    lines = text.splitlines()
    path = entry.shown
    listing = options.files_with_matches or options.files_without_match or options.count
    matched = 0
    hits = 0
    last_shown = -1
    pending_after = 0
    for index, line in enumerate(lines):
        if index % CHECK_EVERY_LINES == 0 and index and should_stop():
            raise _Stop
        found = regex.search(line)
        if found is None:
            if pending_after and not listing:
                emit({"kind": "context", "path": path, "line": index + 1, "text": line})
                last_shown = index
                pending_after -= 1
            continue
        matched += 1
        if listing:
            if options.files_with_matches:
                break
            if options.max_count and matched >= options.max_count:
                break
            continue
        for before in range(max(last_shown + 1, index - options.before), index):
            emit({"kind": "context", "path": path, "line": before + 1, "text": lines[before]})
        if options.only_matching:
            for m in regex.finditer(line):
                hit: dict[str, Any] = {"kind": "match", "path": path, "text": m.group(0)}
                if options.line_number:
                    hit["line"] = index + 1
                if options.column:
                    hit["column"] = m.start() + 1
                emit(hit)
                hits += 1
        else:
            hit = {"kind": "match", "path": path, "text": line}
            if options.line_number:
                hit["line"] = index + 1
            if options.column:
                hit["column"] = found.start() + 1
            emit(hit)
            hits += 1
        last_shown = index
        pending_after = options.after
        if options.max_count and matched >= options.max_count:
            # ripgrep still prints the trailing context of the last match
            for after in range(index + 1, min(len(lines), index + 1 + options.after)):
                emit({"kind": "context", "path": path, "line": after + 1, "text": lines[after]})
            break
    if options.files_with_matches and matched:
        emit({"kind": "file", "path": path})
        return 1
    if options.files_without_match and not matched:
        emit({"kind": "file", "path": path})
        return 1
    if options.count and matched:
        emit({"kind": "count", "path": path, "count": matched})
        return 1
    return hits


# -- the search -----------------------------------------------------------------------------


def _find_matches(entry: _Entry, regex: re.Pattern[str] | None, options: SearchOptions) -> bool:
    if options.kind != "any" and entry.kind != options.kind:
        return False
    if entry.kind != "dir" and not _type_filter(options)(entry.path.name):
        return False
    if entry.kind == "dir" and (options.types or options.extensions):
        return False
    if regex is None:
        return True
    subject = entry.rel if options.full_path else entry.path.name
    return regex.search(subject) is not None


def run_search(
    options: SearchOptions,
    roots: Sequence[tuple[Path, str]],
    emit: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool] = lambda: False,
    *,
    pace: float = 0.0,
) -> SearchOutcome:
    """Search `roots` ((path, shown name) pairs, already checked against the host's file
    roots) and `emit` each hit; stops early at `max_results_per_host` (truncated) or when
    `should_stop()` (stopped). `pace` waits that long per file (a slow-disk stand-in for
    tests and demos). Errors about single paths are collected, not raised."""
    started = time.monotonic()
    outcome = SearchOutcome()
    regex = compile_pattern(options)
    keep_type = _type_filter(options)
    limit = options.max_results_per_host

    def counted(hit: dict[str, Any]) -> None:
        if hit.get("kind") != "context":
            if limit and outcome.hits >= limit:
                outcome.truncated = True
                raise _Stop
            outcome.hits += 1
        if options.absolute_path:
            hit["path"] = str(Path(hit["path"]).expanduser().absolute())
        emit(hit)

    try:
        for root, shown in roots:
            try:
                if root.is_file() and options.mode == "grep":
                    entries: Iterator[_Entry] = iter(
                        [_Entry(root, shown, root.name, "file", root.stat().st_size)]
                    )
                else:
                    entries = _walk(root, shown, options)
                for entry in entries:
                    if should_stop():
                        outcome.stopped = True
                        raise _Stop
                    if pace:
                        time.sleep(pace)
                    if options.mode == "find":
                        if _find_matches(entry, regex, options):
                            hit: dict[str, Any] = {"kind": entry.kind, "path": entry.shown}
                            if entry.kind != "dir":
                                hit["size"] = entry.size
                            counted(hit)
                        continue
                    if entry.kind == "dir" or not keep_type(entry.path.name):
                        continue
                    if options.max_file_size and entry.size > options.max_file_size:
                        continue
                    outcome.files += 1
                    assert regex is not None
                    try:
                        _grep_file(entry, regex, options, counted, should_stop)
                    except _WalkError as exc:
                        outcome.errors.append(str(exc))
            except _WalkError as exc:
                outcome.errors.append(str(exc))
    except _Stop:
        if not outcome.truncated:
            outcome.stopped = True
    outcome.seconds = round(time.monotonic() - started, 3)
    return outcome
