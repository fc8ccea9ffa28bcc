"""`paglets host --ui/--no-ui --metrics/--no-metrics` (cli.md §1.1): both on by default,
both accepted explicitly, both removable."""

from __future__ import annotations

from collections.abc import Callable

from support.http_calls import Http
from support.processes import HostProcess

KEY = "cli-flags-key"


def test_ui_and_metrics_are_on_by_default_and_can_be_switched_off(
    host_process: Callable[..., HostProcess],
) -> None:
    plain = host_process("plain", api_key=KEY, args=["--ui", "--metrics"])
    bare = host_process("bare", api_key=KEY, args=["--no-ui", "--no-metrics"])
    with Http(plain.url, key=KEY) as client:
        assert client.get("/metrics").status == 200
        assert client.get("/ui/").status == 200
        assert client.get("/ui/login", key=None).status == 200
        assert "metrics" in client.get("/health").body["capabilities"]
    with Http(bare.url, key=KEY) as client:
        for path in ("/metrics", "/ui/", "/ui/login"):
            answer = client.get(path)
            assert answer.status == 404 and answer.body["code"] == "no-route", path
