#!/usr/bin/env bash
# Install and prepare the real-music corpus for `genrestore bench --clean corpus/`.
#
#   corpus/wesnoth/*.ogg   41 orchestral tracks, 44.1 kHz stereo, from Debian's
#                          wesnoth-1.16-music package (GPL-2+), linked, not copied
#   corpus/midi/*.wav      pieces from music21's bundled corpus of scores (public-domain
#                          compositions), rendered by fluidsynth with the FluidR3 GM SoundFont
#
# Needs root for apt-get (or the packages already installed).  Nothing here is committed:
# corpus/ is in .gitignore.  Run from the repository root: bash scripts/prepare-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-corpus}
SF2=/usr/share/sounds/sf2/FluidR3_GM.sf2
MUSIC=/usr/share/games/wesnoth/1.16/data/core/music

need=()
[ -d "$MUSIC" ] || need+=(wesnoth-1.16-music)
command -v fluidsynth >/dev/null || need+=(fluidsynth)
[ -f "$SF2" ] || need+=(fluid-soundfont-gm)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

mkdir -p "$OUT/wesnoth" "$OUT/midi"
for f in "$MUSIC"/*.ogg; do ln -sf "$f" "$OUT/wesnoth/$(basename "$f")"; done

# MIDI renders: music21 (a large package) goes into a throw-away venv of its own.
TOOLS=$(mktemp -d)
trap 'rm -rf "$TOOLS"' EXIT
python3 -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/pip" install --quiet music21
"$TOOLS/venv/bin/python" - "$TOOLS" <<'PY'
import sys
from pathlib import Path
from music21 import corpus, instrument

# The four pieces the README's tables are made on.  Mozart's K. 80 (first movement) hangs
# fluidsynth at the end of the file here every time, and Schumann's Op. 48 No. 2 in some runs
# only: a corpus that depends on which renders finish makes a table nobody can remake (the
# benchmark's --clips N takes files spread over the sorted list), so neither is rendered.
pieces = {  # name -> (corpus path, General MIDI instrument for every part)
    "bach_bwv66_strings": ("bach/bwv66.6", instrument.StringInstrument()),
    "bach_bwv1_organ": ("bach/bwv1.6", instrument.Organ()),
    "beethoven_op18no1_quartet": ("beethoven/opus18no1/movement1", None),
    "joplin_maple_leaf_piano": ("joplin/maple_leaf_rag", instrument.Piano()),
}
for name, (path, inst) in pieces.items():
    score = corpus.parse(path)
    if inst is not None:
        for part in score.parts:
            part.insert(0, inst)
    score.write("midi", fp=str(Path(sys.argv[1]) / f"{name}.mid"))
PY
rm -f "$OUT"/midi/*.wav  # renders of an earlier run (of pieces no longer listed, too)
for mid in "$TOOLS"/*.mid; do
    name=$(basename "$mid" .mid)
    # A few scores hang fluidsynth at the end of the file: cap each render.
    timeout 120 fluidsynth -ni -q -g 0.6 -r 44100 -F "$OUT/midi/$name.wav" "$SF2" "$mid" >/dev/null \
        || { echo "skipped $name (render failed or hung)"; rm -f "$OUT/midi/$name.wav"; }
done
echo "corpus ready: $(find -L "$OUT" -type f | wc -l) files in $OUT/"
