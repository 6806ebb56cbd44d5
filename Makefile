# Two commands for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install browser demo test test-fast clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# constraints.txt pins torch to the CPU build kept on these machines
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# The browser tests (tests/browser) drive Debian's chromium through playwright's Python package: no
# browser is downloaded at test time. fonts-wqy-microhei makes Chinese readable in their screenshots.
# Installed only when missing (apt-get needs root: sudo when not root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ ! -x /usr/bin/chromium ] || ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium fonts-wqy-microhei; \
	fi

demo: install
	$(BIN)/tuneforge train examples/demo/identity_lora.yaml
	printf 'Who are you?\n你是谁\n' | $(BIN)/tuneforge chat examples/demo/identity_chat.yaml

test: install browser
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf saves build *.egg-info .pytest_cache
