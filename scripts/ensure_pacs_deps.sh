#!/usr/bin/env bash
# Installs Orthanc (a small open-source PACS) and its DICOMweb plugin for the PACS round-trip tests, only when
# missing. The tests start their own Orthanc on a free 127.0.0.1 port with a throw-away storage folder; the packaged
# service is not needed, so it is stopped and disabled when the install started it (it would hold 8042/4242).
set -euo pipefail
bash "$(dirname "$0")/apt_install_missing.sh" "the PACS used by the tests" orthanc orthanc-dicomweb
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
  $SUDO systemctl disable --now orthanc || true
fi
