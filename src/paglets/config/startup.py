"""The launch config (api.md §16.4, cli.md §1.1): resident services, startup agents and
service tunables, read from a TOML file (default `~/.paglets/launch.toml`).

```toml
[launch]
demo_config_id = "paglets-default"   # the bundled config's identity (paglets 2.0 keys)
demo_config_version = 1
sync_demo_config = true              # false: never replace this file with a newer bundled one

[[resident_services]]
class = "myapp.services:Registry"    # module:qualname of a class with RESIDENT_SERVICES
service = "registry"                 # which entry (its contract name); optional if only one
lifecycle = "eager"                  # lazy | eager
scope = "mesh"                       # local | mesh
idle_timeout = 60.0
state = { owner = "ops" }

[[startup_agents]]
class = "myapp.agents:Watchdog"      # AUTO_START on the class gives the defaults
agent_id = "watchdog"
singleton = true

[services.compute-slots]             # tunables a service reads with service_settings()
max_slots = 8
```

Every mistake is a `LaunchConfigError` naming the file, the section and the key. A host
started by the CLI gets the bundled default on first start, and an outdated bundled copy is
replaced (asking first, keeping the old one as `launch.toml.old`): `sync_launch_config`.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from paglets.core.errors import HostError
from paglets.core.runtime_values import LaunchConfigSyncAction, ResidentLifecycle, ServiceScope

__all__ = [
    "BUNDLED_CONFIG_ID",
    "AutoStartSpec",
    "LaunchConfig",
    "LaunchConfigError",
    "LaunchConfigSync",
    "LaunchConfigSyncAction",
    "LaunchSection",
    "ResidentServiceEntry",
    "StartupAgentEntry",
    "bundled_launch_config_text",
    "default_launch_config_path",
    "load_launch_config",
    "parse_launch_config",
    "sync_launch_config",
]

BUNDLED_CONFIG_ID = "paglets-default"
_RESIDENT_KEYS = (
    "class",
    "service",
    "enabled",
    "agent_id",
    "lifecycle",
    "scope",
    "idle_timeout",
    "state",
    "init",
)
_AGENT_KEYS = ("class", "enabled", "agent_id", "singleton", "state", "init")
_LAUNCH_KEYS = ("demo_config_id", "demo_config_version", "sync_demo_config")
_SECTIONS = ("launch", "resident_services", "startup_agents", "services")


class LaunchConfigError(HostError, ValueError):
    """The launch config cannot be used; the message names the file, section and key."""


@dataclass(frozen=True)
class AutoStartSpec:
    """`Paglet.AUTO_START`: the defaults of this class as a startup agent (api.md §1.2).
    A `[[startup_agents]]` entry naming the class overrides them key by key."""

    enabled: bool = True
    agent_id: str | None = None
    singleton: bool = True
    state: Any = field(default_factory=dict)
    init: Any = None


@dataclass(frozen=True)
class LaunchSection:
    """`[launch]`: which bundled config a file is a copy of, and whether it may be synced."""

    demo_config_id: str | None = None
    demo_config_version: int = 0
    sync_demo_config: bool = True


@dataclass(frozen=True)
class ResidentServiceEntry:
    """One `[[resident_services]]` table. `None` = the class's `ResidentServiceSpec` value."""

    class_name: str
    service: str | None = None
    enabled: bool = True
    agent_id: str | None = None
    lifecycle: ResidentLifecycle | None = None
    scope: ServiceScope | None = None
    idle_timeout: float | None = None
    state: Mapping[str, Any] | None = None
    init: Any = None
    where: str = ""


@dataclass(frozen=True)
class StartupAgentEntry:
    """One `[[startup_agents]]` table. `None` = the class's `AUTO_START` value."""

    class_name: str
    enabled: bool | None = None
    agent_id: str | None = None
    singleton: bool | None = None
    state: Mapping[str, Any] | None = None
    init: Any = None
    where: str = ""

    def resolve(self, auto: AutoStartSpec | None) -> AutoStartSpec:
        """This entry over the class's `AUTO_START` (or its defaults)."""
        base = auto if auto is not None else AutoStartSpec()
        return AutoStartSpec(
            enabled=base.enabled if self.enabled is None else self.enabled,
            agent_id=base.agent_id if self.agent_id is None else self.agent_id,
            singleton=base.singleton if self.singleton is None else self.singleton,
            state=base.state if self.state is None else self.state,
            init=base.init if self.init is None else self.init,
        )


@dataclass(frozen=True)
class LaunchConfig:
    """A parsed launch config. `services` maps a service name to its `[services.<name>]`
    table."""

    path: Path | None = None
    launch: LaunchSection = field(default_factory=LaunchSection)
    resident_services: tuple[ResidentServiceEntry, ...] = ()
    startup_agents: tuple[StartupAgentEntry, ...] = ()
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def service_settings(self, name: str) -> dict[str, Any]:
        """The `[services.<name>]` table (a copy; empty when absent)."""
        return dict(self.services.get(name, {}))


# -- parsing ---------------------------------------------------------------------------


class _Where:
    """Builds the "file: [section], key" prefix of error messages."""

    __slots__ = ("source",)

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, section: str, key: str | None, message: str) -> LaunchConfigError:
        at = f"{self.source}: {section}" + (f", key {key!r}" if key else "")
        return LaunchConfigError(f"{at}: {message}")


def _table(where: _Where, section: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(section, None, f"must be a table, got {type(value).__name__}")
    return value


def _unknown(
    where: _Where, section: str, table: Mapping[str, Any], allowed: tuple[str, ...]
) -> None:
    for key in table:
        if key not in allowed:
            raise where.error(section, key, f"unknown key; allowed: {', '.join(allowed)}")


def _str(where: _Where, section: str, table: Mapping[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise where.error(section, key, f"must be a non-empty string, got {value!r}")
    return value


def _bool(where: _Where, section: str, table: Mapping[str, Any], key: str) -> bool | None:
    value = table.get(key)
    if value is not None and not isinstance(value, bool):
        raise where.error(section, key, f"must be true or false, got {value!r}")
    return value


def _class_name(where: _Where, section: str, table: Mapping[str, Any]) -> str:
    from paglets.core.errors import SerializationError
    from paglets.serialization.names import parse_qualified_name

    value = table.get("class")
    if value is None:
        raise where.error(section, "class", 'is required, e.g. class = "myapp.module:MyPaglet"')
    if not isinstance(value, str):
        raise where.error(section, "class", f"must be a string, got {value!r}")
    try:
        parse_qualified_name(value)
    except SerializationError as exc:
        raise where.error(section, "class", str(exc)) from None
    return value


def _agent_id(where: _Where, section: str, table: Mapping[str, Any]) -> str | None:
    from paglets.core.ids import validate_agent_id

    value = _str(where, section, table, "agent_id")
    if value is not None:
        try:
            validate_agent_id(value)
        except ValueError as exc:
            raise where.error(section, "agent_id", str(exc)) from None
    return value


def _enum(where: _Where, section: str, table: Mapping[str, Any], key: str, enum_cls: Any) -> Any:
    value = table.get(key)
    if value is None:
        return None
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise where.error(section, key, f"must be one of: {allowed} (got {value!r})") from None


def _state(where: _Where, section: str, table: Mapping[str, Any]) -> dict[str, Any] | None:
    value = table.get("state")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise where.error(section, "state", f"must be a table, got {value!r}")
    return value


def _resident(where: _Where, index: int, raw: Any) -> ResidentServiceEntry:
    section = f"[[resident_services]] #{index}"
    table = _table(where, section, raw)
    _unknown(where, section, table, _RESIDENT_KEYS)
    idle = table.get("idle_timeout")
    if idle is not None and (
        isinstance(idle, bool) or not isinstance(idle, int | float) or not idle > 0
    ):
        raise where.error(
            section, "idle_timeout", f"must be a positive number of seconds, got {idle!r}"
        )
    enabled = _bool(where, section, table, "enabled")
    return ResidentServiceEntry(
        class_name=_class_name(where, section, table),
        service=_str(where, section, table, "service"),
        enabled=True if enabled is None else enabled,
        agent_id=_agent_id(where, section, table),
        lifecycle=_enum(where, section, table, "lifecycle", ResidentLifecycle),
        scope=_enum(where, section, table, "scope", ServiceScope),
        idle_timeout=None if idle is None else float(idle),
        state=_state(where, section, table),
        init=table.get("init"),
        where=f"{where.source}: {section}",
    )


def _agent(where: _Where, index: int, raw: Any) -> StartupAgentEntry:
    section = f"[[startup_agents]] #{index}"
    table = _table(where, section, raw)
    _unknown(where, section, table, _AGENT_KEYS)
    return StartupAgentEntry(
        class_name=_class_name(where, section, table),
        enabled=_bool(where, section, table, "enabled"),
        agent_id=_agent_id(where, section, table),
        singleton=_bool(where, section, table, "singleton"),
        state=_state(where, section, table),
        init=table.get("init"),
        where=f"{where.source}: {section}",
    )


def _launch(where: _Where, raw: Any) -> LaunchSection:
    table = _table(where, "[launch]", raw)
    _unknown(where, "[launch]", table, _LAUNCH_KEYS)
    version = table.get("demo_config_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise where.error(
            "[launch]", "demo_config_version", f"must be a whole number >= 0, got {version!r}"
        )
    sync = _bool(where, "[launch]", table, "sync_demo_config")
    return LaunchSection(
        demo_config_id=_str(where, "[launch]", table, "demo_config_id"),
        demo_config_version=version,
        sync_demo_config=True if sync is None else sync,
    )


def _array(where: _Where, data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise where.error(
            f"[[{key}]]",
            None,
            f"must be an array of tables ([[{key}]]), got a {type(value).__name__}",
        )
    return value


def parse_launch_config(
    text: str, *, source: str = "<launch config>", path: Path | None = None
) -> LaunchConfig:
    """Parse launch-config TOML; `source` names it in error messages."""
    where = _Where(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LaunchConfigError(f"{source}: not valid TOML: {exc}") from None
    for key in data:
        if key not in _SECTIONS:
            raise where.error(f"[{key}]", None, f"unknown section; allowed: {', '.join(_SECTIONS)}")
    services_raw = _table(where, "[services]", data.get("services", {}))
    services: dict[str, dict[str, Any]] = {}
    for name, table in services_raw.items():
        services[name] = _table(where, f"[services.{name}]", table)
    return LaunchConfig(
        path=path,
        launch=_launch(where, data.get("launch", {})),
        resident_services=tuple(
            _resident(where, i, raw)
            for i, raw in enumerate(_array(where, data, "resident_services"), 1)
        ),
        startup_agents=tuple(
            _agent(where, i, raw) for i, raw in enumerate(_array(where, data, "startup_agents"), 1)
        ),
        services=services,
    )


def load_launch_config(path: str | os.PathLike[str]) -> LaunchConfig:
    """Read and parse the launch config at `path`."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LaunchConfigError(
            f"{file}: no such launch config; create it, or leave --launch-config out to use "
            "~/.paglets/launch.toml"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LaunchConfigError(f"{file}: cannot read the launch config: {exc}") from None
    return parse_launch_config(text, source=str(file), path=file)


# -- the bundled copy ------------------------------------------------------------------


def default_launch_config_path() -> Path:
    """`~/.paglets/launch.toml` (the home directory read now, not at import)."""
    return Path.home() / ".paglets" / "launch.toml"


def bundled_launch_config_text() -> str:
    """The launch config shipped with paglets (package data)."""
    return resources.files("paglets.config").joinpath("launch.toml").read_text(encoding="utf-8")


def _bundled_section() -> LaunchSection:
    return parse_launch_config(bundled_launch_config_text(), source="<bundled launch.toml>").launch


@dataclass(frozen=True)
class LaunchConfigSync:
    """What `sync_launch_config` did: `action` (none, created, updated, skipped), the file,
    the kept old copy (updated), and a line to show the user (empty when nothing to say)."""

    action: LaunchConfigSyncAction
    path: Path
    backup: Path | None = None
    message: str = ""


def _write_bundled(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(bundled_launch_config_text(), encoding="utf-8")
    os.replace(tmp, path)


def sync_launch_config(
    path: str | os.PathLike[str] | None = None,
    *,
    sync: bool = True,
    assume_yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    create: bool | None = None,
) -> LaunchConfigSync:
    """Bring the launch config at `path` (default `~/.paglets/launch.toml`) in line with the
    bundled one, as `paglets host` does before it starts (cli.md §1.1):

    * missing: the bundled copy is written when `create` (default: only for the default
      path; elsewhere a missing file is a `LaunchConfigError`);
    * a copy of the bundled config (same `demo_config_id`) with an older
      `demo_config_version`: replaced when `sync` and its own `sync_demo_config` allow it,
      with `assume_yes` or when `confirm(question)` says yes; the old file is kept as
      `<name>.old`. Otherwise it is kept (`skipped`) and the message says why;
    * any other file is left alone.
    """
    default = default_launch_config_path()
    file = Path(path).expanduser() if path is not None else default
    if create is None:
        create = file == default
    if not file.exists():
        if not create:
            raise LaunchConfigError(f"{file}: no such launch config")
        _write_bundled(file)
        return LaunchConfigSync(
            LaunchConfigSyncAction.CREATED,
            file,
            message=f"launch config: wrote the bundled default to {file}",
        )
    if not sync:
        return LaunchConfigSync(LaunchConfigSyncAction.NONE, file)
    try:
        mine = load_launch_config(file).launch
    except LaunchConfigError:
        return LaunchConfigSync(LaunchConfigSyncAction.NONE, file)  # loading reports it
    bundled = _bundled_section()
    if (
        mine.demo_config_id != bundled.demo_config_id
        or not mine.sync_demo_config
        or mine.demo_config_version >= bundled.demo_config_version
    ):
        return LaunchConfigSync(LaunchConfigSyncAction.NONE, file)
    question = (
        f"{file} is version {mine.demo_config_version} of the bundled launch config; "
        f"replace it with version {bundled.demo_config_version} (the old file is kept as "
        f"{file.name}.old)?"
    )
    if not assume_yes and (confirm is None or not confirm(question)):
        how = "pass --yes" if confirm is None else "answer y"
        return LaunchConfigSync(
            LaunchConfigSyncAction.SKIPPED,
            file,
            message=(
                f"launch config {file} is outdated (version {mine.demo_config_version}, bundled "
                f"{bundled.demo_config_version}); kept it. To replace it, {how}, or set "
                "sync_demo_config = false in its [launch] section to stop this warning"
            ),
        )
    backup = file.with_name(file.name + ".old")
    shutil.copy2(file, backup)
    _write_bundled(file)
    return LaunchConfigSync(
        LaunchConfigSyncAction.UPDATED,
        file,
        backup=backup,
        message=(
            f"launch config: replaced {file} with bundled version {bundled.demo_config_version} "
            f"(old copy: {backup})"
        ),
    )


def _ask_on_terminal(question: str) -> bool:
    import sys

    sys.stdout.write(f"{question} [y/N] ")
    sys.stdout.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


def sync_for_host_command(
    path: str | os.PathLike[str] | None, *, sync: bool, assume_yes: bool
) -> LaunchConfigSync:
    """`paglets host`'s step before it builds the Host: `sync_launch_config` with a `[y/N]`
    prompt when stdin is a terminal (no terminal: keep the old file and warn)."""
    import sys

    confirm = _ask_on_terminal if sys.stdin is not None and sys.stdin.isatty() else None
    return sync_launch_config(path, sync=sync, assume_yes=assume_yes, confirm=confirm)
