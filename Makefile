# The two commands README.md promises, plus the pieces they are made of.
.PHONY: install demo test lint pytest

install:
	./scripts/install.sh

# Main job: train a model, start the key, model and evaluator services on local ports (embedded
# store, no Redis), and get encrypted recommendations for a held-out MovieLens user.
demo: install
	.venv/bin/cryptorec demo --download

# Everything CI checks: lint, types, and the whole test suite (slow and integration included).
test: install lint pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy -p libcryptorec -p cryptorec.services -p cryptorec.benchmarks

pytest:
	.venv/bin/python -m pytest
