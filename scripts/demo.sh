#!/usr/bin/env bash
# The main job on an embedded default: a generated background sweep -> imported
# -> binned -> plotted and reported (HTML), in ./demo (or $1). Installs what it needs first.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/bootstrap.sh"
OUT="$(realpath -m "${1:-$REPO/demo}")"
mkdir -p "$OUT"
cd "$OUT"
echo "== 1. generating a synthetic Pilatus background sweep in $OUT/images"
python -m dials_mdxbg.testing.pilatus "$OUT/images" --frames 30 --modules 3 4
echo "== 2. dials.mdx_import"
dials.mdx_import images/background.expt output.data=bkg_data.nxs chunks=10,211,493 \
    output.json=bkg_data.json
echo "== 3. dials.mdx_bin_background"
dials.mdx_bin_background bkg_data.nxs insulin_background.phil output.json=bkg_data_binned.json
echo "== done: $OUT/bkg_data.nxs, $OUT/bkg_data_binned.nxs, $OUT/bkg_data_binned.png,"
echo "   $OUT/bkg_data_binned.html (open it in a browser)"
