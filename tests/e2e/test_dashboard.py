"""The dashboard in a real browser (architecture.md §11): Playwright drives Debian's
Chromium (`/usr/bin/chromium`, never a downloaded browser) against a 3-host mesh of
`paglets host` processes sharing a mesh key.

The browser logs in with the key, sees the three hosts, finds a paglet by id and follows
it when it moves to another host, watches the live event stream, downloads an artifact, and
is turned away with a wrong key. Screenshots go to `test-artifacts/dashboard/` at the
repository root (gitignored), for a person to look at after a run.

Set up by the project's scripts: `playwright` is a dev dependency (`uv sync`), Chromium an
`apt-get install chromium` (`make test` does it). Without either the module is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paglets.cli.mesh_summary import member_resources
from paglets.remote.client import HostClient
from support.processes import HostProcess, host_processes
from support.waiting import wait_until

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (a dev dependency: uv sync)"
)
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed at /usr/bin/chromium (apt-get install -y chromium; "
        "`make test` does it)",
        allow_module_level=True,
    )

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "dashboard"
KEY = "e2e-dashboard-mesh-key"
COUNTER = "paglets.examples.counter:Counter"
COUNTER_STATE = "paglets.examples.counter:CounterState"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOGIN_URL = re.compile(r"/ui/login(#.*)?$")  # a redirect keeps the view asked for (#/...)
DASHBOARD_URL = re.compile(r"/ui/(#.*)?$")
WAIT_MS = 30_000  # a loaded 2-core machine runs three hosts and a browser here

expect = playwright_api.expect


class Mesh:
    def __init__(self, hosts: dict[str, HostProcess], client: HostClient) -> None:
        self.hosts = hosts
        self.client = client

    def url(self, name: str) -> str:
        return self.hosts[name].url.rstrip("/")


# A busy test machine must not keep the jobs of the groups test from starting.
LAUNCH = """
[launch]
sync_demo_config = false

[services.compute-slots]
respect_external_load = false
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("dashboard-mesh")
    launch = tmp / "launch.toml"
    launch.write_text(LAUNCH)
    with host_processes(tmp) as start, HostClient(api_key=KEY, timeout=10.0) as client:
        config = ["--launch-config", str(launch)]
        alpha = start("alpha", api_key=KEY, args=[*config, "--tag", "laptop"])
        beta = start("beta", api_key=KEY, args=[*config, "--peer", alpha.url, "--tag", "linux"])
        gamma = start("gamma", api_key=KEY, args=[*config, "--peer", alpha.url, "--tag", "linux"])
        yield Mesh({"alpha": alpha, "beta": beta, "gamma": gamma}, client)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh browser context (no cookies) per test; downloads land in tmp_path."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Any, mesh: Mesh, host: str = "alpha") -> None:
    page.goto(f"{mesh.url(host)}/ui/")
    page.wait_for_url(LOGIN_URL)
    page.fill("#key", KEY)
    page.click("#login-button")
    page.wait_for_url(DASHBOARD_URL)
    expect(page.locator("#nav")).to_be_visible()


def test_a_wrong_key_is_rejected(page: Any, mesh: Mesh) -> None:
    page.goto(f"{mesh.url('alpha')}/ui/")
    page.wait_for_url(LOGIN_URL)  # no session: the login page, not the data
    page.fill("#key", "not-the-mesh-key")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    shot(page, "wrong-key")
    assert LOGIN_URL.search(page.url)
    assert not [c for c in page.context.cookies() if c["name"] == "paglets_session"]
    page.goto(f"{mesh.url('alpha')}/ui/#/paglets")
    page.wait_for_url(LOGIN_URL)
    # The right key then leads to the view that was asked for.
    page.fill("#key", KEY)
    page.click("#login-button")
    page.wait_for_url(re.compile(r"/ui/#/paglets$"))
    expect(page.locator("#paglet-search")).to_be_visible()


def test_login_lists_the_hosts_of_the_mesh(page: Any, mesh: Mesh) -> None:
    log_in(page, mesh)
    cookie = next(c for c in page.context.cookies() if c["name"] == "paglets_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and KEY not in cookie["value"]
    assert KEY not in page.url
    rows = page.locator("#members tbody tr")
    expect(rows).to_have_count(3, timeout=WAIT_MS)
    for name in ("alpha", "beta", "gamma"):
        row = page.locator(f'#members tr[data-name="{name}"]')
        expect(row.locator(".badge-alive")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator('#members tr[data-name="alpha"]')).to_contain_text("(this host)")
    expect(page.locator('#members tr[data-name="beta"]')).to_contain_text("linux")
    shot(page, "mesh")


def test_finds_a_paglet_by_id_and_follows_it_after_a_move(page: Any, mesh: Mesh) -> None:
    client = mesh.client
    for i in range(30):  # company, so that the search has something to leave out
        client.create_agent(mesh.url("alpha"), COUNTER, COUNTER_STATE, {"name": f"n{i}"})
    walker = client.create_agent(
        mesh.url("alpha"), COUNTER, COUNTER_STATE, {"name": "walker"}, agent_id="walker-e2e-7f3a"
    )
    log_in(page, mesh)
    page.click('#nav a[data-view="paglets"]')
    page.fill("#search", "walker-e2e")
    page.click("#paglet-search button[type=submit]")
    expect(page.locator("#paglets tbody tr")).to_have_count(1)
    expect(page.locator("#page-info")).to_have_text("1\u20131 of 1")
    shot(page, "paglet-search")
    page.click(f'#paglets a:text("{walker.agent_id}")')
    expect(page.locator("#paglet-host")).to_have_text("alpha")
    expect(page.locator("#paglet-mailbox")).to_be_visible()
    shot(page, "paglet-on-alpha")

    client.dispatch(mesh.url("alpha"), walker.agent_id, mesh.url("beta"))
    # The page refreshes by itself; the same detail page on alpha now shows beta.
    expect(page.locator("#paglet-host")).to_have_text("beta")
    kinds = page.locator("#history tbody tr td:nth-child(3)")
    expect(kinds).to_have_text(["create", "dispatch", "arrival"])
    hosts = page.locator("#history tbody tr td:nth-child(2)")
    expect(hosts).to_have_text(["alpha", "alpha", "beta"])
    shot(page, "paglet-after-move")


def test_paging_goes_through_the_server(page: Any, mesh: Mesh) -> None:
    client = mesh.client
    for i in range(60):
        client.create_agent(
            mesh.url("gamma"), COUNTER, COUNTER_STATE, {"name": f"p{i}"}, agent_id=f"pager-{i:03d}"
        )
    log_in(page, mesh, "gamma")
    page.goto(f"{mesh.url('gamma')}/ui/#/paglets?q=pager-")
    expect(page.locator("#paglets tbody tr")).to_have_count(50)
    expect(page.locator("#page-info")).to_have_text("1\u201350 of 60")
    page.click("#next")
    expect(page.locator("#paglets tbody tr")).to_have_count(10)
    expect(page.locator("#page-info")).to_have_text("51\u201360 of 60")
    expect(page.locator("#next")).to_be_disabled()


def test_live_events_arrive_over_the_stream(page: Any, mesh: Mesh) -> None:
    log_in(page, mesh, "beta")
    page.click('#nav a[data-view="events"]')
    expect(page.locator("#stream-status")).to_have_text("live")
    created = mesh.client.create_agent(
        mesh.url("beta"), COUNTER, COUNTER_STATE, {"name": "e"}, agent_id="events-e2e-1"
    )
    row = page.locator("#events tbody tr").filter(has_text=created.agent_id)
    expect(row.filter(has_text="create")).to_have_count(1)
    shot(page, "events")


def test_artifacts_are_listed_and_download(page: Any, mesh: Mesh, tmp_path: Path) -> None:
    source = tmp_path / "result.txt"
    source.write_bytes(b"computed on alpha\n" * 100)
    mesh.client.upload_artifact(mesh.url("alpha"), source, name="result.txt")
    log_in(page, mesh)
    page.click('#nav a[data-view="artifacts"]')
    row = page.locator("#artifacts tbody tr").filter(has_text="result.txt")
    expect(row).to_have_count(1)
    with page.expect_download() as info:
        row.locator("a", has_text="Download").click()
    saved = tmp_path / "downloaded.txt"
    info.value.save_as(saved)
    assert saved.read_bytes() == source.read_bytes()
    shot(page, "artifacts")


def test_jobs_tabs_render_with_or_without_a_jobs_system(page: Any, mesh: Mesh) -> None:
    log_in(page, mesh)
    page.click('#nav a[data-view="jobs"]')
    # A host without the jobs routes says so; one with them shows its tables. Never an error.
    page.wait_for_selector("#jobs, #view .notice-muted, #view .notice")
    assert page.locator("#view .notice-error").count() == 0
    page.click('#nav a[data-view="groups"]')
    page.wait_for_selector("#groups, #view .notice-muted, #view .notice")
    assert page.locator("#view .notice-error").count() == 0
    shot(page, "groups")


def _compute_hosts_ready(mesh: Mesh) -> bool:
    """alpha sees beta and gamma alive with their scheduler's figures (what placement
    reads), so the group's jobs find a host at once."""
    members = mesh.client.get_json(f"{mesh.url('alpha')}/mesh/members")["members"]
    seen = {m["name"]: m for m in members}
    for name in ("beta", "gamma"):
        m = seen.get(name) or {}
        resources = member_resources(m)
        if m.get("status") != "alive" or not resources.get("job_cores"):
            return False
        if resources.get("free_cpu_cores") != resources["job_cores"]:
            return False
    return True


def test_shows_a_job_groups_progress(page: Any, mesh: Mesh) -> None:
    from paglets.examples.demo_jobs import DemoJobPaglet, DemoJobState
    from paglets.system.compute_slots import HostAtUrl, submit_compute_job_group

    wait_until(lambda: _compute_hosts_ready(mesh), timeout=WAIT_MS / 1000)
    states = [
        DemoJobState(
            bundle=f"b{i}",
            seconds=0.2,
            required_host_tags=("linux",),
            memory_bytes=64 * 1024 * 1024,
            estimated_runtime_seconds=1.0,
        )
        for i in range(3)
    ]
    sub = submit_compute_job_group(
        HostAtUrl(mesh.url("alpha"), mesh.client), DemoJobPaglet, states, group_id="e2e-group"
    )
    assert len(sub.jobs) == 3 and not sub.creation_errors
    log_in(page, mesh)
    page.click('#nav a[data-view="groups"]')
    row = page.locator('#groups tr[data-group="e2e-group"]')
    expect(row.locator(".progress")).to_have_count(1)
    # The view refreshes by itself until every job has reported to the collector on alpha.
    expect(row.locator(".progress .label")).to_have_text("3/3 (100%)", timeout=60_000)
    expect(row).to_contain_text("alpha")  # the collector's host
    expect(row.locator(".badge-complete")).to_have_count(1)
    expect(row.locator("td").nth(5)).to_have_text("0")  # failed: none
    shot(page, "group-progress")
    # The jobs tab lists the collector and the scheduler's queue table without an error.
    page.click('#nav a[data-view="jobs"]')
    expect(page.locator("#jobs").filter(has_text="collector-e2e-group")).to_have_count(1)
    assert page.locator("#view .notice-error").count() == 0
    shot(page, "jobs")


def test_logout_ends_the_session(page: Any, mesh: Mesh) -> None:
    log_in(page, mesh)
    page.click("#logout")
    page.wait_for_url(LOGIN_URL)
    page.goto(f"{mesh.url('alpha')}/ui/")
    page.wait_for_url(LOGIN_URL)
