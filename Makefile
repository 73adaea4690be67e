# Entry points: `make study` (the whole study), `make test` (the test suite), `make lab` (JupyterLab).
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

# JupyterLab on the project's environment (python -m visrec_utils lab: visrec_utils/pipeline/lab.py holds
# the command line): rooted here, so notebooks/ and study_output/ are both in the file browser; no
# browser is opened (open the printed URL, token included); --allow-root only when run as root; the
# kernelspec "visrec (.venv)" is installed into the .venv (the notebooks' python3 kernel there is the
# same interpreter). Another port: make lab PORT=8899. A notebook run here refreshes
# study_output/reports/index.html; the next make study reruns what a hand run changed.
PORT ?= 8888
lab: $(STAMP)
	@$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install -q -e '.[lab]'
	$(PY) -m visrec_utils lab --port $(PORT)

# Explicit, never automatic: rerun the test slice and overwrite tests/baselines/slice_metrics.csv.
baseline: $(STAMP)
	$(PY) -m visrec_utils refresh-baseline
