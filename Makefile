# digestflow — developer entry points. Every target creates .venv/ on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
OUT ?= out/sample
SAMPLE ?= out/sample-input
RECORDS ?= 2000

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup run test lint format bench clean report-check

setup: $(STAMP)

# torch first: its CPU wheel is on disk; letting pip pick torch itself pulls a multi-GB CUDA build.
# Then the model's ONNX export for the default embedding backend (openvino), made once here.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -c "from transforms.enrich.embed import export_model; export_model()"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/digestflow generate --out $(SAMPLE) --records $(RECORDS) --records_per_file 100 --seed 7 --overwrite
	$(BIN)/digestflow run --input '$(SAMPLE)/*.txt*' --output $(OUT) --overwrite
	$(BIN)/digestflow sql $(OUT) "SELECT count(*) AS records, count(DISTINCT cluster_id) AS clusters, sum(CASE WHEN is_canonical THEN 0 ELSE 1 END) AS duplicates FROM records"
	$(BIN)/digestflow sql $(OUT) "SELECT title, cluster_size, first_seen, last_seen, tags FROM papers ORDER BY cluster_size DESC, title LIMIT 5"
	$(BIN)/digestflow sql $(OUT) "SELECT tag, count(*) AS papers FROM papers, unnest(tags) AS t(tag) GROUP BY tag ORDER BY papers DESC LIMIT 8"

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

# The analyst's side end to end: generate ten digest days, run the first nine (with
# embeddings), add the tenth as the daily update, print reports, write the HTML page and
# screenshot it in headless Chromium (apt-get install chromium).
REPORT_INPUT ?= out/report-input
REPORT_OUT ?= out/report
REPORT_RECORDS ?= 1000
CHROMIUM ?= chromium
CHROMIUM_FLAGS := --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars

report-check: $(STAMP)
	$(BIN)/digestflow generate --out $(REPORT_INPUT) --records $(REPORT_RECORDS) --records_per_file 100 \
		--seed 7 --malformed_rate 0.02 --overwrite
	mkdir -p $(REPORT_INPUT)/today && mv $$(ls $(REPORT_INPUT)/digest_* | tail -n 1) $(REPORT_INPUT)/today/
	$(BIN)/digestflow run --input '$(REPORT_INPUT)/digest_*' --output $(REPORT_OUT) --overwrite
	$(BIN)/digestflow run --input '$(REPORT_INPUT)/today/*' --output $(REPORT_OUT) --incremental
	$(BIN)/digestflow report $(REPORT_OUT) overview
	$(BIN)/digestflow report $(REPORT_OUT) changes
	$(BIN)/digestflow report $(REPORT_OUT) --html out/report.html
	profile=$$(mktemp -d) && $(CHROMIUM) $(CHROMIUM_FLAGS) --user-data-dir=$$profile \
		--enable-unsafe-swiftshader --virtual-time-budget=10000 \
		--window-size=1200,3600 --screenshot=$(abspath out/report.png) \
		file://$(abspath out/report.html) 2>/dev/null; rm -rf $$profile
	test -s out/report.png && echo "screenshot: out/report.png"

clean:
	rm -rf out .pytest_cache

# Dataflow packaging targets (make dataflow PROJECT=... REGION=... BUCKET=... INPUT=... OUTPUT=...)
-include deploy/dataflow.mk
