# Two commands set everything up: `make demo` and `make test`.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: demo test test-slow lint typecheck bench bench-quick docs uv sync browser

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

sync: uv
	@$(UV) sync --quiet --extra docs

# The dashboard's browser tests drive Debian's Chromium (never a downloaded browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) \
		|| echo "chromium not installed: browser tests will be skipped"; }

# Three hosts on loopback, a job group, the laptop away and back (< 20 s). The one-host
# tour of the programming model: `uv run python -m paglets.examples.quickstart`.
demo: sync
	$(UV) run paglets demo

test: sync browser
	$(UV) run ruff check src tests bench
	$(UV) run ruff format --check src tests bench
	$(UV) run pyright
	$(UV) run mkdocs build --strict --quiet --site-dir "$$(mktemp -d)"
	$(UV) run python -m bench --quick --out bench/results
	$(UV) run pytest -m "not slow" -q

test-slow: sync
	$(UV) run pytest -m slow -q

lint: sync
	$(UV) run ruff check src tests bench
	$(UV) run ruff format --check src tests bench

typecheck: sync
	$(UV) run pyright

bench: sync
	$(UV) run python -m bench

bench-quick: sync
	$(UV) run python -m bench --quick

docs: sync
	$(UV) run mkdocs build --strict
