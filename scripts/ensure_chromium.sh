#!/usr/bin/env bash
# Browser tests use Debian's Chromium (never a downloaded browser build).  Install it
# when we are root on a Debian-like machine; otherwise the e2e tests skip with a reason.
set -u
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: chromium not found; browser (e2e) tests will be skipped. Install Debian's 'chromium' to run them."
  exit 0
fi
echo "Installing Debian chromium for the browser tests (one time)…"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/tmp/latentsky-chromium-install.log 2>&1 \
  || echo "note: chromium install failed (see /tmp/latentsky-chromium-install.log); e2e tests will be skipped."
