# Two entry points: `make study` (the whole study) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.visrec-installed

.PHONY: study test baseline

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray,faiss]'
	touch $(STAMP)

study: $(STAMP)
	$(PY) -m visrec_utils study --out study_output --figures-to figures

test: $(STAMP)
	$(PY) -m pytest -q -ra

# Explicit, never automatic: rerun the test slice and overwrite tests/baselines/slice_metrics.csv.
baseline: $(STAMP)
	$(PY) -m visrec_utils refresh-baseline
