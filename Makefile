VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo gallery test docs docs-build docs-notebook format bench bench-ttq bench-quality clean

# Create the virtual environment if missing and install genai with its test and offline extras,
# pinned to the tested torch pair in constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/genai demo --out runs/demo --overwrite

# The README's gallery: run the demo, copy its pictures and its text sample into docs/images.
gallery: demo
	mkdir -p docs/images
	cp runs/demo/vae/samples.png runs/demo/vae/reconstructions.png runs/demo/vae/completions.png docs/images/
	cp runs/demo/gan/digits.png docs/images/gan-digits.png
	cp runs/demo/diffusion/digits.png docs/images/diffusion-digits.png
	cp runs/demo/gpt/sample.txt docs/images/gpt-sample.txt

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(MAKE) docs-build
	$(PY) -m pytest -q

export NO_MKDOCS_2_WARNING := 1

# The docs site (mkdocs.yml): --strict fails on any warning (a broken link or anchor, a page
# left out of the nav, an API entry that does not resolve, a documented argument the signature
# lacks). No --quiet: it hides the warnings from the count, and the build then passes with them.
# tests/test_docs.py runs this same command on a copy of docs/ with a broken link.
docs-build: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

# Serve the site at http://127.0.0.1:8000, rebuilt on every edit.
docs: $(STAMP)
	$(VENV)/bin/mkdocs serve

# The site with the quickstart notebook executed, so its pages show the outputs (minutes).
docs-notebook: $(STAMP)
	GENAI_DOCS_EXECUTE=true $(VENV)/bin/mkdocs build --strict --site-dir site

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Never two benchmarks at once on one machine; `make bench BENCH_LOCK=` where flock is missing.
BENCH_LOCK ?= flock /tmp/genai-bench.lock

# Side by side with the anchors' own code (one JSON line per anchor), then the 64x64 GAN against a
# pytorch/examples-style DCGAN loop, then fine-tuning and decoding against Hugging Face's own code
# (a tiny Llama: minutes), then the time genai takes to the anchors' quality (about 65 minutes
# on 2 cores): see benchmarks/README.md.
bench: $(STAMP)
	$(BENCH_LOCK) $(PY) benchmarks/anchors.py
	$(BENCH_LOCK) $(PY) benchmarks/gan_speed.py
	$(BENCH_LOCK) $(PY) benchmarks/finetune.py
	$(BENCH_LOCK) $(PY) benchmarks/time_to_quality.py

# Only the time to the anchors' quality (GPT, VAE, GAN, diffusion; 3 rounds each).
bench-ttq: $(STAMP)
	$(BENCH_LOCK) $(PY) benchmarks/time_to_quality.py

# genai's own speed and quality figures (long: the GAN's default run alone takes 10-13 minutes
# in fp32, 7-8 with --precision bf16 on a CPU with native bf16).
bench-quality: $(STAMP)
	$(BENCH_LOCK) $(PY) benchmarks/vae.py
	$(BENCH_LOCK) $(PY) benchmarks/gan.py
	$(BENCH_LOCK) $(PY) benchmarks/lm.py

clean:
	rm -rf runs site .pytest_cache .ruff_cache .import_linter_cache
