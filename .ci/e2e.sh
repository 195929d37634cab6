#!/usr/bin/env bash
# Browser end-to-end tests of the web console (test/e2e): Debian's chromium,
# driven by playwright-core from npm (pinned in test/e2e/package-lock.json),
# against a local stack on OS-picked ports. No browser is downloaded.
# Screenshots go to $SCREENSHOT_DIR (default .ci/artifacts/screenshots).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v kcat >/dev/null || missing+=(kcat)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export SCREENSHOT_DIR=${SCREENSHOT_DIR:-$PWD/.ci/artifacts/screenshots}
mkdir -p "$SCREENSHOT_DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/stack" ./cmd/stack
(cd test/e2e && npm ci --no-audit --no-fund --loglevel=error)
echo "e2e: chromium $(chromium --version 2>/dev/null | awk '{print $2}'), screenshots in $SCREENSHOT_DIR"
(cd test/e2e && STACK_BIN="$work/stack" CHROMIUM=/usr/bin/chromium timeout 600 node --test console.test.mjs)
echo "e2e: screenshots saved in $SCREENSHOT_DIR"
