#!/usr/bin/env bash
# Installs the system packages some tests need: headless Chromium for the HTML report check
# (tests/report/test_report_browser.py), and ChromeDriver with it for the gateway's review pages
# (tests/gateway/test_review_ui.py, driven through Selenium). As root it installs what is
# missing; as anyone else, or when everything is there, it does nothing and succeeds, so it
# never fails a build it cannot act in.
set -euo pipefail

if [[ "$(id -u)" -ne 0 ]]; then
    echo "system-deps: not root, installing nothing"
    exit 0
fi

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
