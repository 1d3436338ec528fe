#!/usr/bin/env bash
# Installs the Debian packages shoal's demo and tests use, when they are missing and we are root:
# python3-venv (to make the virtualenv), Chromium + chromedriver (render = "browser"),
# Tesseract with Korean and English data (OCR), a Korean font (the demo's OCR image), nginx (bench),
# iproute2 and systemd-analyze (the fleet tests).
set -euo pipefail

want=()
need() { dpkg -s "$1" >/dev/null 2>&1 || want+=("$1"); }

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need python3-venv; fi
command -v chromium >/dev/null 2>&1 || need chromium
command -v chromedriver >/dev/null 2>&1 || need chromium-driver
command -v tesseract >/dev/null 2>&1 || need tesseract-ocr
[ -n "$(ls /usr/share/tesseract-ocr/*/tessdata/kor.traineddata 2>/dev/null)" ] || need tesseract-ocr-kor
[ -n "$(ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata 2>/dev/null)" ] || need tesseract-ocr-eng
fc-list 2>/dev/null | grep -qi nanum || need fonts-nanum
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need nginx-light
command -v openssl >/dev/null 2>&1 || need openssl           # the browser https test makes a certificate
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need iproute2      # local fleet: network namespaces
command -v systemd-analyze >/dev/null 2>&1 || need systemd    # the fleet test verifies the worker's unit file

if [ ${#want[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "shoal: these Debian packages are missing: ${want[*]}" >&2
  echo "shoal: install them with: sudo apt-get install -y ${want[*]}" >&2
  echo "shoal: (continuing; tests that need them fail in CI and skip elsewhere)" >&2
  exit 0
fi
echo "shoal: installing Debian packages: ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null
