#!/usr/bin/env bash
# Installs everything the service, the trainer and the tests need on a fresh Debian 12 machine (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

# The trainer and its tests: Debian's PyTorch, ONNX, NumPy, Pillow, pytest, and OpenBLAS (the reference BLAS that
# python3-torch links by default is ~50x slower for matrix products; see docs/contracts.md). Chromium: the web
# playground's end-to-end test (test/playground.test.ts drives it with playwright-core).
APT_PACKAGES=(python3-torch python3-onnx python3-numpy python3-pil python3-pytest libopenblas0-pthread chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The service: .npmrc skips onnxruntime-node's CUDA download (its host is unreachable here; the GPU image installs it).
npm ci --no-audit --no-fund
