# Shortcuts; each target is one script, so the scripts stay the single source of truth.
.PHONY: serve test models budget-check bench export-onnx config-table

serve:
	./scripts/serve.sh

test:
	./scripts/test.sh

# Download, export to ONNX and verify every enabled model into MODEL_DIR (needs huggingface.co);
# options in ARGS, e.g. make models ARGS="--models language --from language=/data/whisper-tiny"
models:
	./scripts/setup.sh full && .venv/bin/python scripts/fetch_models.py $(ARGS)

# Prove a configuration fits before deploying it; settings as make variables (they reach the
# script's environment), options in ARGS, e.g.
#   make budget-check WORKERS=2 BACKEND=onnx ARGS="--duration 120 --concurrency 4"
#   make budget-check ARGS="--matrix scripts/budget/configs.txt"
budget-check:
	./scripts/setup.sh dev && .venv/bin/python scripts/budget_check.py $(ARGS)

bench:
	./scripts/setup.sh dev && .venv/bin/python scripts/bench_boot.py

export-onnx:
	./scripts/setup.sh full && .venv/bin/python scripts/export_onnx.py --out models/onnx

config-table:
	./scripts/setup.sh dev && .venv/bin/python scripts/config_table.py --write
