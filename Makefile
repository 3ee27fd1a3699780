# The whole set-up: `make demo` runs the main job, `make test` runs the checks and the tests.
# Both create .venv on first use and install torch==2.13.0 (a local CPU build) before the package,
# so that nothing asks the registry for a CUDA build of torch.
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT   ?= out/demo

.PHONY: demo test lint clean peers test-peers clean-peers

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

# Optional: the peer libraries of `posteria bench restore` (azula, deepinv). deepinv imports torchvision,
# which has no CPU build beside torch 2.13.0, so they get their own environment with torch 2.14.1 and
# torchvision 0.29.1 (a CUDA build that runs on the CPU, about 6 GB): `.venv-peers/bin/posteria bench
# restore` then runs ours and both peers in one process; `make test-peers` runs the peers' tests there.
PEERS_VENV := .venv-peers

$(PEERS_VENV)/.installed: pyproject.toml
	test -x $(PEERS_VENV)/bin/python || python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" deepinv==0.5.0
	$(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps azula==0.11.1 einops
	touch $@

peers: $(PEERS_VENV)/.installed

test-peers: $(PEERS_VENV)/.installed
	$(PEERS_VENV)/bin/pytest tests/test_bench_peers.py tests/test_bench_peers_deepinv.py tests/test_bench_restore.py

clean-peers:
	rm -rf $(PEERS_VENV)

demo: $(STAMP)
	$(VENV)/bin/posteria demo --out $(OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) out .pytest_cache
