.PHONY: setup serve test bench

setup:
	bash scripts/setup.sh

# Set up everything and start the service on the bundled model.
serve: setup
	.venv/bin/susik serve --host 127.0.0.1 --port 8000

# Set up everything and run the test suite.
test: setup
	bash scripts/run_tests.sh

bench: setup
	.venv/bin/python benchmarks/run_all.py
