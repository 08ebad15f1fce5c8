# The two commands of the README: `make demo` and `make test`.
.PHONY: setup demo test test-fast lint bench

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/python scripts/demo.py

# two workers: a crawl test keeps about one core busy (tests/conftest.py orders the modules)
test: setup
	.venv/bin/pytest -n 2 --dist loadgroup

# the unit tests and the simulated site's, on SQLite only (no crawl): the quick check while working
test-fast: setup
	.venv/bin/pytest -n 2 --dist loadgroup -m "not postgresql" tests/unit tests/sitesim

# every benchmark of docs/benchmarks.md in one run (about 85 minutes, an hour of it the real-site-cost section; see bench/run_all.py --help)
bench: setup
	@# the bench extra (crawlee, aiohttp), installed again only when setup.py changes
	[ .venv/.installed-bench -nt setup.py ] || { .venv/bin/pip install -q -e '.[bench]' && touch .venv/.installed-bench; }
	.venv/bin/python bench/run_all.py

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

