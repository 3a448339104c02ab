#!/usr/bin/env bash
# Reproduces the bundled default model from scratch on a 2-core CPU (about 2 hours):
# a 20-hour corpus, the real `train` splits from ../shared/data/real, training, evaluation.
set -euo pipefail
cd "$(dirname "$0")/../.."
EV=.venv/bin/edgevoice

$EV corpus build --out corpora/bench20 --hours 20 --seed 0            # ~6 min
for set in fsdd asterisk_en wakeword; do                                # real speech, resampled to 16 kHz
  [ -f corpora/real/$set/manifest.jsonl ] || $EV corpus import real $set --out corpora/real/$set
done
$EV train --config models/default/train.yaml --out runs/default \
  --data corpora/bench20 --data corpora/real/fsdd --data corpora/real/asterisk_en --data corpora/real/wakeword

# Ship: the averaged model and everything needed to use it.
for f in model.pt tokenizer.model cmvn.json features.json train_config.json train_summary.json log.csv curves.png; do
  cp runs/default/$f models/default/
done
.venv/bin/python benchmarks/recognizer_eval.py --model models/default --corpus corpora/bench20
