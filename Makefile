# The two commands of the README: `make demo` and `make test`.
.PHONY: setup demo test lint bench

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/python scripts/demo.py

test: setup
	.venv/bin/pytest

# every benchmark of docs/benchmarks.md in one run (about 25 minutes; see bench/run_all.py --help)
bench: setup
	@# the bench extra (crawlee, aiohttp), installed again only when setup.py changes
	[ .venv/.installed-bench -nt setup.py ] || { .venv/bin/pip install -q -e '.[bench]' && touch .venv/.installed-bench; }
	.venv/bin/python bench/run_all.py

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

