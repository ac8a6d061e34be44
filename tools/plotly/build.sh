#!/usr/bin/env bash
# Rebuilds mnist_ae/report/plotly_js/*.min.js.gz from npm (run after changing plotly.js's version in
# package.json, which must match the plotly.js inside the pinned `plotly` Python package).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/build.mjs" "$work/"
(cd "$work" && npm install --no-audit --no-fund --loglevel=error && node build.mjs "$here/../../mnist_ae/report/plotly_js")
