# Two entry points: `make study` (the whole study) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.visrec-installed

.PHONY: study test baseline chromium lab

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray,faiss]'
	touch $(STAMP)

study: $(STAMP)
	$(PY) -m visrec_utils study --out study_output --repo-figures

test: $(STAMP) chromium
	$(PY) -m pytest -q -ra

# The report test opens reports/index.html in headless Chromium (Debian's package); installed
# here when missing and when apt-get can be used (as root), else that one check is skipped.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	  echo "chromium not installed: the index.html browser check will be skipped"; }

# JupyterLab on the project's environment: its python3 kernel (the notebooks' kernelspec) is the
# .venv's, and every notebook runs top to bottom with the batch run's defaults.
lab: $(STAMP)
	$(PY) -m pip install -q -e '.[lab]'
	cd notebooks && ../$(PY) -m jupyterlab

# Explicit, never automatic: rerun the test slice and overwrite tests/baselines/slice_metrics.csv.
baseline: $(STAMP)
	$(PY) -m visrec_utils refresh-baseline
