#!/usr/bin/env bash
# Installs the prebuilt OHIF viewer pinned in viewer/package.json into viewer/dist (gitignored).
#
# Only the package's own tarball is fetched (`npm pack`, checked against the pinned integrity)
# and its dist/ extracted: the viewer is already built, so none of its build dependencies are
# installed. Does nothing when the pinned version is already there.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dist="$here/dist"
read -r package version integrity < <(
  node -e '
    const p = require(process.argv[1]);
    const [name, version] = Object.entries(p.dependencies)[0];
    console.log(name, version, p.dicomflow.integrity);
  ' "$here/package.json"
)
stamp="$package@$version $integrity"
if [ -f "$dist/.installed" ] && [ "$(cat "$dist/.installed")" = "$stamp" ]; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "installing the viewer: $package@$version"
packed="$(cd "$work" && npm pack "$package@$version" --silent --json --no-audit --no-fund)"
got="$(node -e 'console.log(JSON.parse(process.argv[1])[0].integrity)' "$packed")"
if [ "$got" != "$integrity" ]; then
  echo "integrity mismatch for $package@$version: expected $integrity, got $got" >&2
  exit 1
fi
tar -xzf "$work"/*.tgz -C "$work" package/dist
[ -f "$work/package/dist/index.html" ] || { echo "no dist/index.html in $package" >&2; exit 1; }
echo "$stamp" > "$work/package/dist/.installed"
rm -rf "$dist"
mv "$work/package/dist" "$dist"
