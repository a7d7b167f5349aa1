# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench serve clean lock

# The HTML eval report is checked in headless Chromium: Debian's package, since Playwright's own
# browser downloads are not reachable from here (nor wanted on CI).
CHROMIUM := /usr/bin/chromium

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/dripline demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

$(CHROMIUM):
	command -v chromium >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# axe-core, which the console's browser tests inject into every page: the version pinned by
# package.json and package-lock.json, installed by npm exactly as locked.
AXE := node_modules/axe-core/axe.min.js
$(AXE): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

test: lint $(CHROMIUM) $(AXE)
	$(BIN)/pytest

# The send benchmark's SMTP relay and its ceiling: smtp-sink and smtp-source from Debian's postfix
# package. The "No configuration" answer leaves postfix unconfigured, so no mail daemon starts.
SMTP_SINK := /usr/sbin/smtp-sink
$(SMTP_SINK):
	command -v smtp-sink >/dev/null || ( \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postfix )

bench: $(STAMP) $(SMTP_SINK)
	$(BIN)/python -m benchmarks.engine_throughput

serve: $(STAMP)
	$(BIN)/dripline serve

lock: $(STAMP)
	( echo "# Versions the tests last passed with; 'make lock' regenerates this file."; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^-e' ) > constraints.txt

clean:
	rm -rf $(VENV) node_modules .dripline .dripline-demo .dripline-sim .dripline-screens .mypy_cache .pytest_cache .ruff_cache
