# The two commands README.md promises, plus the pieces they are made of.
.PHONY: install demo test lint pytest

install:
	./scripts/install.sh

# Main job (for now): train CryptoRec and the baselines on MovieLens 1M, print the accuracy table.
demo: install
	.venv/bin/cryptorec bench accuracy --dataset ml-1m --repeats 1 --no-transfer --download

# Everything CI checks: lint, types, and the whole test suite (slow and integration included).
test: install lint pytest

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy libcryptorec services

pytest:
	.venv/bin/python -m pytest
