#!/usr/bin/env bash
# Renders assets/livemirror.svg into the PNG sizes the .deb installs into the
# hicolor theme, and the multi-size .ico the Windows installer uses.
# Needs rsvg-convert (librsvg2-bin) and ImageMagick's convert. The results are
# committed, so packaging does not need these tools; rerun after editing the SVG.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=(16 24 32 48 64 128 256)
mkdir -p assets/icons
for s in "${sizes[@]}"; do
    rsvg-convert -w "$s" -h "$s" assets/livemirror.svg -o "assets/icons/livemirror-$s.png"
done
# /usr/bin/convert explicitly: a stand-in `convert` may shadow ImageMagick on PATH.
/usr/bin/convert assets/icons/livemirror-{16,24,32,48,64,256}.png packaging/windows/livemirror.ico
echo "rendered ${sizes[*]} px PNGs and packaging/windows/livemirror.ico"
