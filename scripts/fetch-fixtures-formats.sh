#!/usr/bin/env bash
# Fetches the public FHIR R4 example resources (npm package hl7.fhir.r4.examples) that the
# kiban-formats tests read, into <target>/fixtures/formats/. Idempotent: does nothing when present.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
dest="$target/fixtures/formats/fhir-r4-examples"
if [ -f "$dest/.complete" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch-fixtures-formats: npm is needed to fetch hl7.fhir.r4.examples (Debian: apt-get install npm)" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for attempt in 1 2 3; do
  if (cd "$tmp" && npm pack --silent hl7.fhir.r4.examples@4.0.1 >/dev/null 2>&1); then
    break
  fi
  sleep $((attempt * 3))
done
tgz=$(ls "$tmp"/hl7.fhir.r4.examples-*.tgz)
rm -rf "$dest"
mkdir -p "$dest"
# Only the resource types kiban-formats reads (the whole package is ~190 MB unpacked).
tar -xzf "$tgz" -C "$dest" --strip-components=1 --wildcards \
  'package/Patient-*.json' 'package/Encounter-*.json' 'package/Condition-*.json' \
  'package/MedicationRequest-*.json' 'package/Observation-*.json' 'package/Coverage-*.json' 'package/Bundle-*.json'

# The definition Bundles (profiles, value sets, data elements: 5–35 MB each) hold no patient data.
find "$dest" -name 'Bundle-*.json' -size +1M -delete
touch "$dest/.complete"
echo "fetched hl7.fhir.r4.examples into $dest"
