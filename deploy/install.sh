#!/usr/bin/env bash
# Installs what geoflux needs on a fresh Debian machine (run as root, or with sudo available):
# Java 17 + Maven (the Kafka broker comes from Maven Central), PostgreSQL 15 + PostGIS 3,
# and geoflux itself with its test extras. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need+=(postgresql-15-postgis-3)
# headless Chromium for the console's browser tests (Playwright drives it; no browser download)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "install.sh: apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The packaged cluster is not used (tests and `geoflux up` start their own); keep it off.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
  $SUDO pg_ctlcluster --force "$(pg_lsclusters -h | awk 'NR==1{print $1}')" main stop || true
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test,rocksdb]'

# Warm the caches once: the Kafka jars and Apicurio Registry from Maven Central.
python3 - <<'PY'
from services.devstack.local_kafka import LocalKafka
from services.devstack.local_registry import LocalRegistry
print("install.sh: kafka jars in", LocalKafka().ensure_jars())
print("install.sh: apicurio in", LocalRegistry().ensure_dist().parent)
PY
