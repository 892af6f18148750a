#!/usr/bin/env bash
# Installs the Debian packages dicomflow's local stack and tests need, when any is missing.
set -euo pipefail

# chromium and the CJK fonts: the viewer's end-to-end test (headless) and its screenshots;
# npm: fetches the viewer (viewer/install.sh).
packages=(postgresql redis-server mariadb-server dcmtk default-jre-headless maven chromium
  fonts-noto-cjk npm)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
# The JDK may come from elsewhere (e.g. a pre-installed OpenJDK): only java itself is needed.
if command -v java >/dev/null 2>&1; then
  missing=("${missing[@]/default-jre-headless}")
fi
if command -v mvn >/dev/null 2>&1; then
  missing=("${missing[@]/maven}")
fi
# Node.js and npm may come from elsewhere too (e.g. NodeSource): only the npm command is needed.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
