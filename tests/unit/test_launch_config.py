"""The launch config: parsing, errors naming file/section/key, the bundled copy and its sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from paglets.config.startup import (
    AutoStartSpec,
    LaunchConfigError,
    StartupAgentEntry,
    bundled_launch_config_text,
    default_launch_config_path,
    load_launch_config,
    parse_launch_config,
    sync_launch_config,
)
from paglets.core.errors import HostError
from paglets.core.runtime_values import LaunchConfigSyncAction, ResidentLifecycle, ServiceScope

FULL = """
[launch]
demo_config_id = "mine"
demo_config_version = 3

[[resident_services]]
class = "support.service_models:LazyEcho"
lifecycle = "eager"
scope = "mesh"
idle_timeout = 5
state = { prefix = "> " }

[[resident_services]]
class = "support.service_models:TwoServices"
service = "crashy"
enabled = false

[[startup_agents]]
class = "support.service_models:Watchdog"
agent_id = "dog"
singleton = false
state = { label = "x" }
init = [1, 2]

[services.compute-slots]
max_slots = 8
"""


def test_a_full_config_parses() -> None:
    config = parse_launch_config(FULL, source="t.toml")
    assert config.launch.demo_config_id == "mine"
    assert config.launch.demo_config_version == 3
    assert config.launch.sync_demo_config is True
    first, second = config.resident_services
    assert first.class_name == "support.service_models:LazyEcho"
    assert first.lifecycle is ResidentLifecycle.EAGER
    assert first.scope is ServiceScope.MESH
    assert first.idle_timeout == 5.0
    assert first.state == {"prefix": "> "}
    assert first.where == "t.toml: [[resident_services]] #1"
    assert second.service == "crashy" and second.enabled is False
    (agent,) = config.startup_agents
    assert (agent.agent_id, agent.singleton, agent.init) == ("dog", False, [1, 2])
    assert config.service_settings("compute-slots") == {"max_slots": 8}
    assert config.service_settings("other") == {}


def test_an_empty_config_is_valid() -> None:
    config = parse_launch_config("")
    assert config.resident_services == () and config.startup_agents == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[launch", "t.toml: not valid TOML"),
        ("[oops]", "t.toml: [oops]: unknown section"),
        ("[launch]\ncolour = 1", "t.toml: [launch], key 'colour': unknown key"),
        ("[launch]\ndemo_config_version = -1", "key 'demo_config_version': must be a whole"),
        ("[launch]\nsync_demo_config = 'yes'", "key 'sync_demo_config': must be true or false"),
        (
            "[[resident_services]]\nservice = 'x'",
            "[[resident_services]] #1, key 'class': is required",
        ),
        ("[[resident_services]]\nclass = 'nocolon'", "key 'class': malformed class name"),
        (
            "[[resident_services]]\nclass = 'a:B'\nlifecycle = 'sometimes'",
            "[[resident_services]] #1, key 'lifecycle': must be one of: lazy, eager",
        ),
        ("[[resident_services]]\nclass = 'a:B'\nscope = 'galaxy'", "key 'scope': must be one of"),
        ("[[resident_services]]\nclass = 'a:B'\nidle_timeout = 0", "key 'idle_timeout'"),
        ("[[resident_services]]\nclass = 'a:B'\nstate = 3", "key 'state': must be a table"),
        ("[[resident_services]]\nclass = 'a:B'\nagent_id = 'a b'", "key 'agent_id'"),
        ("[[resident_services]]\nclass = 'a:B'\ncolour = 1", "key 'colour': unknown key"),
        (
            "[[startup_agents]]\nclass = 'a:B'\nsingleton = 1",
            "[[startup_agents]] #1, key 'singleton'",
        ),
        ("resident_services = 3", "must be an array of tables"),
        ("[services]\nx = 1", "[services.x]: must be a table"),
    ],
)
def test_bad_input_names_file_section_and_key(text: str, expected: str) -> None:
    with pytest.raises(LaunchConfigError) as caught:
        parse_launch_config(text, source="t.toml")
    assert expected in str(caught.value)
    assert isinstance(caught.value, HostError) and isinstance(caught.value, ValueError)


def test_load_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LaunchConfigError, match="no such launch config"):
        load_launch_config(tmp_path / "missing.toml")
    path = tmp_path / "launch.toml"
    path.write_text("[oops]")
    with pytest.raises(LaunchConfigError, match=f"{path}: \\[oops\\]"):
        load_launch_config(path)


def test_startup_entries_fall_back_to_auto_start() -> None:
    auto = AutoStartSpec(agent_id="a", state={"label": "class"}, init=1)
    entry = StartupAgentEntry("m:C", singleton=False)
    resolved = entry.resolve(auto)
    assert (resolved.agent_id, resolved.singleton, resolved.state, resolved.init) == (
        "a",
        False,
        {"label": "class"},
        1,
    )
    assert entry.resolve(None) == AutoStartSpec(singleton=False)


# -- the bundled copy ------------------------------------------------------------------------


def test_the_bundled_config_parses_and_is_copied_on_first_start() -> None:
    bundled = parse_launch_config(bundled_launch_config_text())
    assert bundled.launch.demo_config_id == "paglets-default"
    path = default_launch_config_path()  # HOME is a temporary dir (conftest)
    assert not path.exists()
    done = sync_launch_config()
    assert done.action is LaunchConfigSyncAction.CREATED
    assert path.read_text() == bundled_launch_config_text()
    again = sync_launch_config()
    assert again.action is LaunchConfigSyncAction.NONE and again.message == ""


def test_an_explicit_missing_path_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(LaunchConfigError, match="no such launch config"):
        sync_launch_config(tmp_path / "elsewhere.toml")


def _outdated(path: Path, *, sync: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[launch]\ndemo_config_id = "paglets-default"\ndemo_config_version = 0\n'
        f"sync_demo_config = {'true' if sync else 'false'}\n"
    )


def test_an_outdated_copy_is_replaced_with_yes_and_kept_as_old() -> None:
    path = default_launch_config_path()
    _outdated(path)
    old = path.read_text()
    done = sync_launch_config(assume_yes=True)
    assert done.action is LaunchConfigSyncAction.UPDATED
    assert done.backup == path.with_name("launch.toml.old")
    assert done.backup.read_text() == old
    assert path.read_text() == bundled_launch_config_text()


def test_an_outdated_copy_is_kept_without_a_terminal_and_the_message_says_how() -> None:
    path = default_launch_config_path()
    _outdated(path)
    done = sync_launch_config()
    assert done.action is LaunchConfigSyncAction.SKIPPED
    assert "--yes" in done.message and "sync_demo_config = false" in done.message
    assert "demo_config_version = 0" in path.read_text()


def test_the_prompt_decides(tmp_path: Path) -> None:
    path = tmp_path / "launch.toml"
    _outdated(path)
    asked: list[str] = []
    refused = sync_launch_config(path, confirm=lambda q: asked.append(q) or False)
    assert refused.action is LaunchConfigSyncAction.SKIPPED and "answer y" in refused.message
    assert "replace it with version" in asked[0]
    accepted = sync_launch_config(path, confirm=lambda q: True)
    assert accepted.action is LaunchConfigSyncAction.UPDATED


def test_sync_is_off_by_flag_by_file_and_for_other_configs(tmp_path: Path) -> None:
    path = tmp_path / "launch.toml"
    _outdated(path)
    assert (
        sync_launch_config(path, sync=False, assume_yes=True).action is LaunchConfigSyncAction.NONE
    )
    _outdated(path, sync=False)
    assert sync_launch_config(path, assume_yes=True).action is LaunchConfigSyncAction.NONE
    path.write_text('[launch]\ndemo_config_id = "mine"\n')
    assert sync_launch_config(path, assume_yes=True).action is LaunchConfigSyncAction.NONE
