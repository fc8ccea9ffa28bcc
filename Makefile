# Two commands set everything up: `make demo` and `make test`.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: demo test test-slow lint typecheck bench bench-quick docs uv sync

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

sync: uv
	@$(UV) sync --quiet --extra docs

demo: sync
	$(UV) run python -m paglets.examples.quickstart

test: sync
	$(UV) run ruff check src tests bench
	$(UV) run ruff format --check src tests bench
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
