#!/usr/bin/env bash
# vendor.sh installs the browser libraries pinned by package-lock.json
# (npm ci) and copies only the files the portal embeds into
# ../assets/vendor, with their licenses (and the third-party notices of
# swagger-ui's bundle) and a manifest (VERSIONS) of each
# file's package, version and sha256. portal's TestVendoredMatchesLock
# fails when the lock and the copies disagree: run this script after
# changing package.json and commit the new copies.
#
# Install scripts are skipped (--ignore-scripts): swagger-ui-dist depends
# on @scarf/scarf, whose install script only reports download analytics.
set -euo pipefail

cd "$(dirname "$0")"
out=../assets/vendor

npm ci --ignore-scripts --no-audit --no-fund

rm -rf "$out"
mkdir -p "$out"

# copy PACKAGE FILE DEST: node_modules/PACKAGE/FILE → $out/DEST
copy() {
  cp "node_modules/$1/$2" "$out/$3"
}
copy swagger-ui-dist swagger-ui-bundle.js swagger-ui-bundle.js
copy swagger-ui-dist swagger-ui.css swagger-ui.css
copy swagger-ui-dist LICENSE swagger-ui-dist.LICENSE
copy swagger-ui-dist NOTICE swagger-ui-dist.NOTICE
copy swagger-ui-dist swagger-ui-bundle.js.LICENSE.txt swagger-ui-bundle.js.LICENSE.txt
copy uplot dist/uPlot.iife.min.js uPlot.iife.min.js
copy uplot dist/uPlot.min.css uPlot.min.css
copy uplot LICENSE uplot.LICENSE

# The manifest: one line per copied file, "FILE PACKAGE VERSION SHA256",
# the version read from the installed package.json.
version() {
  node -p "require('./node_modules/$1/package.json').version"
}
{
  echo "# Written by portal/web/vendor.sh from package-lock.json; do not edit."
  echo "# file package version sha256"
  for entry in \
    swagger-ui-bundle.js:swagger-ui-dist \
    swagger-ui.css:swagger-ui-dist \
    swagger-ui-dist.LICENSE:swagger-ui-dist \
    swagger-ui-dist.NOTICE:swagger-ui-dist \
    swagger-ui-bundle.js.LICENSE.txt:swagger-ui-dist \
    uPlot.iife.min.js:uplot \
    uPlot.min.css:uplot \
    uplot.LICENSE:uplot; do
    file=${entry%%:*}
    pkg=${entry##*:}
    sum=$(sha256sum "$out/$file" | cut -d' ' -f1)
    echo "$file $pkg $(version "$pkg") $sum"
  done
} >"$out/VERSIONS"

echo "vendored into portal/assets/vendor:"
cat "$out/VERSIONS"
