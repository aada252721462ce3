# `make demo` and `make test` work on a machine that has never seen the project:
# they install Debian packages (as root), create .venv, install the project, then run.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := libsndfile1 libportaudio2 jackd2 amsynth dpf-plugins-vst fluidsynth timgm6mb-soundfont ardour
STAMPS := .stamps

.PHONY: demo test lint bench install system clean

demo: install
	$(BIN)/sendlearn demo

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest

bench: install
	$(BIN)/python scripts/bench_process.py
	$(BIN)/python scripts/bench_wire.py --seconds 30
	$(BIN)/python scripts/bench_offline.py --runs 3
	$(BIN)/python scripts/bench_faults.py --windows 2
	$(BIN)/python scripts/bench_receiver.py --streams 16 64 --seconds 10
	$(BIN)/python scripts/bench_live.py --seconds 20
	$(BIN)/python scripts/bench_features.py --seconds 300
	$(BIN)/python scripts/bench_batch.py --files 12
	$(BIN)/python scripts/bench_export.py --minutes 60 --limit-mb 1024

# Debian packages the instruments and the live bridge need (skipped when all are present); `ardour`
# (7.3, with ardour7-lua and ACE Reasonable Synth) is the real DAW tests/test_ardour.py drives headless.
system: $(STAMPS)/system
$(STAMPS)/system: Makefile
	@mkdir -p $(STAMPS)
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then echo "system packages present"; else \
		echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(APT_PACKAGES); fi
	@touch $@

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

# Dependencies are installed when pyproject.toml changes; the package's link tree is
# refreshed every time (strict editable mode, so import-linter can see the layout and new
# modules appear), which takes a few seconds.
$(STAMPS)/deps: pyproject.toml | $(BIN)/python
	@mkdir -p $(STAMPS)
	$(BIN)/python -m pip install -q -e '.[hosts,live,link,dev,dataset,batch,export]' --config-settings editable_mode=strict \
		>$(STAMPS)/deps.log 2>&1 || (cat $(STAMPS)/deps.log; exit 1)
	@touch $@

install: system $(STAMPS)/deps
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . \
		--config-settings editable_mode=strict >$(STAMPS)/link.log 2>&1 || (cat $(STAMPS)/link.log; exit 1)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(STAMPS) build *.egg-info
