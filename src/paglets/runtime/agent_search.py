"""Filtered paglet listings: `GET /agents?class=&q=` (network.md §1.7) without loading every
paglet.

A listing is three segments in a fixed order: live paglets (the registry, in memory), then
inactive and then crashed ones (the store). Stored rows are filtered, counted and paged by
SQLite (`LIMIT`/`OFFSET` on the `(status, created_at, agent_id)` index, the state blob never
read), so a search among 100,000 inactive paglets builds only the page's summaries. Live
paglets are filtered by their id and class name in memory, the only place they are
complete (a fresh paglet's row may still wait for the group commit).

`q` keeps its meaning: a case-insensitive substring of the agent id or the class name;
`class` is an exact class name (`module:QualName`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["filtered_page", "like_pattern"]

_ESCAPE = "\\"


def like_pattern(needle: str) -> str:
    """`%needle%` with LIKE's wildcards in `needle` escaped (they match themselves)."""
    escaped = (
        needle.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_")
    )
    return f"%{escaped}%"


def _where(status: str, wanted_class: str | None, q: str | None) -> tuple[str, list[Any]]:
    clauses = ["status = ?"]
    params: list[Any] = [status]
    if wanted_class:
        clauses.append("class_name = ?")
        params.append(wanted_class)
    if q:
        pattern = like_pattern(q)
        clauses.append("(agent_id LIKE ? ESCAPE '\\' OR class_name LIKE ? ESCAPE '\\')")
        params += [pattern, pattern]
    return " AND ".join(clauses), params


def _live_matches(host: Host, wanted_class: str | None, q: str | None) -> list[Any]:
    needle = q.lower() if q else None
    out = []
    for cell in list(host.registry.live.values()):
        class_name = cell.info.class_name or ""
        if wanted_class and class_name != wanted_class:
            continue
        if needle and needle not in cell.agent_id.lower() and needle not in class_name.lower():
            continue
        out.append(cell)
    return out


def filtered_page(
    host: Host,
    *,
    active: bool,
    inactive: bool,
    crashed: bool,
    wanted_class: str | None,
    q: str | None,
    offset: int,
    limit: int,
    include_state: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the summaries passing `class` and `q`, and the number that pass."""
    views = host.views
    page: list[dict[str, Any]] = []
    total = 0
    skip, room = offset, limit
    if active:
        cells = _live_matches(host, wanted_class, q)
        total += len(cells)
        for cell in cells[skip : skip + room]:
            info = cell.info
            page.append(views._summary(cell.agent_id, info.class_name, info.state_class_name, True))
        skip = max(0, skip - len(cells))
        room = limit - len(page)
    store = host.store
    for status, wanted in (("inactive", inactive), ("crashed", crashed)):
        if not wanted:
            continue
        where, params = _where(status, wanted_class, q)
        count = store.query(f"SELECT count(*) FROM agents WHERE {where}", params)[0][0]
        total += count
        if room > 0 and skip < count:
            rows = store.query(
                "SELECT agent_id, class_name, state_class_name FROM agents "
                f"WHERE {where} ORDER BY created_at, agent_id LIMIT ? OFFSET ?",
                [*params, room, skip],
            )
            for agent_id, class_name, state_class_name in rows:
                if status == "crashed":
                    page.append(host.agent_info(agent_id))
                else:
                    page.append(views._summary(agent_id, class_name, state_class_name, False))
            room = limit - len(page)
        skip = max(0, skip - count)
    if include_state:
        for summary in page:
            summary["state"] = codec.to_wire_form(host.get_state(summary["agent_id"]))
    return page, total
