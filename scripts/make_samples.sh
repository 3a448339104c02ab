#!/usr/bin/env bash
# The bundled sample audio: short commands spoken by held-out (test-split) voices, which
# the default model never heard in training. Re-create with: scripts/make_samples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EV=.venv/bin/edgevoice
$EV corpus say "hey edgevoice turn on the kitchen lights" --voice festival:ked_diphone:p1.00:w1.00 --out samples/kitchen_lights.flac
$EV corpus say "set a timer for ten minutes" --voice espeak:en-gb-x-gbcwmd+klatt:p65:w1.00 --out samples/timer.flac
$EV corpus say "computer what is the weather like tomorrow" --voice espeak:en-us+klatt5:p35:w0.94 --out samples/weather.flac
$EV corpus say "alexa play some jazz in the living room" --voice festival:ked_diphone:p0.85:w0.95 --out samples/jazz.flac
