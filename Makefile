.PHONY: install check test bench fmt

install:
	pip install torch==2.13.0 && pip install -e ".[dev]"

check:
	ruff check p2pfl tests benchmarks
	ruff format --check p2pfl tests benchmarks
	mypy

fmt:
	ruff check --fix p2pfl tests benchmarks
	ruff format p2pfl tests benchmarks

test:
	python -m pytest -q

bench:
	python benchmarks/bench_sim.py
	python benchmarks/bench_privacy.py
	python benchmarks/bench_aggregators.py
	python benchmarks/bench_transport.py
