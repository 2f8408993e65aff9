#!/usr/bin/env bash
# Installs the Debian packages that the browser tests (chromium) and the PostgreSQL storage tests use.
# Idempotent; does nothing for packages already present. Without root it only reports what is missing:
# those tests then skip with a reason.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium chromium-driver)
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v fc-list >/dev/null 2>&1 || missing+=(fonts-dejavu-core fontconfig)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "note: not root, so not installing ${missing[*]}; the tests that need them will be skipped." >&2
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
