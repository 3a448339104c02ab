#!/usr/bin/env bash
# Reproduces the bundled default model from scratch on a 2-core CPU (about 14 hours):
# a 20-hour corpus plus the real `train` splits from ../shared/data/real, nine shipped
# training stages (the fourth adds the neural context biaser, the fifth trains everything
# jointly, the sixth with perturbed features, the seventh on a second corpus, the eighth
# and ninth on two more), export for the device, the understanding model, the end-pointer, the cloud LM, evaluation.
# Each training stage resumes if interrupted (re-run this script).
set -euo pipefail
cd "$(dirname "$0")/../.."
EV=.venv/bin/edgevoice
DATA=(--data corpora/bench20 --data corpora/real/fsdd --data corpora/real/asterisk_en --data corpora/real/wakeword)

$EV corpus build --out corpora/bench20 --hours 20 --seed 0                        # ~6-12 min
$EV corpus build --out corpora/extra40 --hours 40 --seed 1                        # ~25 min; stage 8 only
for set in fsdd asterisk_en wakeword; do                                          # real speech, resampled to 16 kHz
  [ -f corpora/real/$set/manifest.jsonl ] || $EV corpus import real $set --out corpora/real/$set
done

# Stage 1 (4 epochs): modified transducer loss + CTC 0.3, sortagrad. Leaves the model on
# the all-blank plateau, but with useful encoder alignments.
$EV train --config models/default/train.yaml --out runs/default "${DATA[@]}"
# Stage 2 (2 epochs): CTC weight 1.0 takes the transducer off the plateau.
ln -sfn default-cont runs/default-stage2
$EV train --config models/default/train_stage2.yaml --out runs/default-cont "${DATA[@]}"
# Stage 3 (8 epochs, cosine schedule; stops after 1.85 h, re-run to finish the schedule).
$EV train --config models/default/train_stage3.yaml --out runs/default-stage3 "${DATA[@]}"
# Stage 5 (4 epochs; run F, a stage-4 attempt, was not shipped): adds the neural biaser
# and trains only it, on random bias lists drawn from the training utterances' entity
# slots; the recognizer's weights stay as stage 3 left them. (Feature cache: stage 3's.)
mkdir -p runs/default-stage5 && ln -sfn ../default-stage3/cache runs/default-stage5/cache
$EV train --config models/default/train_stage5.yaml --out runs/default-stage5 "${DATA[@]}"

# Stage 6 (12 epochs, ~70 min): the whole model (recognizer + biaser) trained jointly on
# random bias lists, in bfloat16 with the pruned transducer loss (a new simple joiner; the
# full loss for its first 300 steps).
mkdir -p runs/default-stage6 && ln -sfn ../default-stage3/cache runs/default-stage6/cache
# (the shipped config starts from the stage-5 model that models/default held then)
sed 's#init_from: models/default/model.pt#init_from: runs/default-stage5/model.pt#' \
  models/default/train_stage6.yaml > runs/train_stage6.yaml
$EV train --config runs/train_stage6.yaml --out runs/default-stage6 "${DATA[@]}"

# Stage 7 (12 epochs, ~75 min): the stage-6 model with cached features perturbed each time
# they are seen (tempo, mel warp), stronger SpecAugment, dropout 0.2, lr 5e-4.
mkdir -p runs/default-stage7 && ln -sfn ../default-stage3/cache runs/default-stage7/cache
sed 's#init_from: models/default/model.pt#init_from: runs/default-stage6/model.pt#' \
  models/default/train_stage7.yaml > runs/train_stage7.yaml
$EV train --config runs/train_stage7.yaml --out runs/default-stage7 "${DATA[@]}"

# Stage 8 (3 epochs over 61 h, ~75 min): the stage-7 model on the 20-hour corpus plus a
# second, 40-hour one (seed 1). Its own feature cache (the data differ).
sed 's#init_from: models/default/model.pt#init_from: runs/default-stage7/model.pt#' \
  models/default/train_stage8.yaml > runs/train_stage8.yaml
$EV train --config runs/train_stage8.yaml --out runs/default-stage8 --data corpora/bench20 --data corpora/extra40 \
  --data corpora/real/fsdd --data corpora/real/asterisk_en --data corpora/real/wakeword
# The stage-8 run stopped at max_hours, 80 % of the way through its schedule; its model.pt
# averages the epoch-2 checkpoint and the state at the stop (NOTES.md), which is what the
# trainer does for a run stopped inside an epoch.

# Stages 9 and 10 (~2.5 h in bfloat16 on a host with AMX units; far longer without): stage 8
# on two fresh corpora. Stage 9 (2 epochs over 46 h + the real splits) stopped at max_hours
# and was resumed to the end of its schedule (re-run the same command with more max_hours).
$EV corpus build --out corpora/extra25s2 --hours 25 --seed 2                      # ~30 min
$EV corpus build --out corpora/extra18s3 --hours 18 --seed 3                      # ~24 min
sed 's#init_from: models/default/model.pt#init_from: runs/default-stage8/model.pt#' \
  models/default/train_stage9.yaml > runs/train_stage9.yaml
$EV train --config runs/train_stage9.yaml --out runs/default-stage9 --data corpora/bench20 --data corpora/extra25s2 \
  --data corpora/real/fsdd --data corpora/real/asterisk_en --data corpora/real/wakeword
# Stage 10 (a warm restart over 2 epochs on 64 h + the real splits; starts from runs/default-stage9/model.pt).
$EV train --config models/default/train_stage10.yaml --out runs/default-stage10 --data corpora/bench20 \
  --data corpora/extra25s2 --data corpora/extra18s3 --data corpora/real/fsdd --data corpora/real/asterisk_en \
  --data corpora/real/wakeword
# It stops at max_hours at 98 % of its schedule; with average_last: 1 its model.pt is the state
# at the stop (last.pt), which is what ships (NOTES.md: the average with epoch 1 was not kept).

# Ship: the model, what is needed to use it, and its device export; the training records of
# stage 10 (train_summary.json, log.csv, curves.png) and of the earlier stages (stage3_*, ...).
for f in model.pt tokenizer.model cmvn.json features.json train_config.json train_summary.json log.csv curves.png; do
  cp runs/default-stage10/$f models/default/
done
for f in train_summary.json log.csv curves.png; do
  for stage in 3 5 6 7 8; do cp runs/default-stage$stage/$f models/default/stage${stage}_$f; done
done
cp runs/default-stage9/train_summary.json models/default/stage9_train_summary.json
cp runs/default-stage9/log.csv models/default/stage9_log.csv
$EV export --checkpoint models/default --out models/default --int8
$EV nlu train --out models/default/nlu.npz

# The device's token n-gram LM (order 6 over the recognizer's tokens, from the train-split
# text: ~1 min), its fusion settings and the beam, tuned on the dev split within the device's
# real-time budget, in int8 (writes lm_fusion.json; ~22 min). Every measurement below uses them (the
# recognizer's defaults from then on).
$EV lm ngram --model models/default
.venv/bin/python benchmarks/lm_fusion_eval.py --model models/default --corpus corpora/bench20

# What the heard-forms rewriter knows of the training text (everyday words, where entities start).
$EV context word-stats --corpus corpora/bench20 --out models/default/word_context.json

# Measure (each writes benchmarks/results/*.json + .md; the end-pointing run also fits
# models/default/endpointer.json on the end-pointing set's dev split).
$EV corpus build --out corpora/endpointing --hours 1.0 --seed 5 --profile endpointing
$EV corpus build --out corpora/endpointing_train --hours 3 --seed 6 --profile endpointing-train   # end-of-query detector
for seed in 8 10 11; do   # 12 hours in all: the recurrent detector gains from more (the logistic one did not)
  $EV corpus build --out corpora/endpointing_train$seed --hours 3 --seed $seed --profile endpointing-train
done
$EV corpus build --out corpora/endpointing_plan --hours 3 --seed 9 --profile endpointing   # its dev split: planning
.venv/bin/python benchmarks/recognizer_eval.py --model models/default --corpus corpora/bench20
.venv/bin/python benchmarks/device_eval.py --model models/default --corpus corpora/bench20
.venv/bin/python benchmarks/endpointing_eval.py --model models/default --corpus corpora/endpointing --text-corpus corpora/bench20 --plan-corpus corpora/endpointing_plan \
  --eoq-corpus corpora/endpointing_train,corpora/endpointing_train8,corpora/endpointing_train10,corpora/endpointing_train11
.venv/bin/python benchmarks/nlu_eval.py --model models/default --corpus corpora/bench20

# Context biasing: the evaluation set (held-out rare names, lists of 10/100/1000), then
# no biasing vs shallow fusion vs the neural biaser vs both, and fusion / both with heard
# forms (the first run enrolls the lists' ~700 phrases of sizes 10 and 100, ~7 min, into
# corpora/biasing/heard_forms.json; `--forms-sizes 10 100 1000` enrolls the whole pool of
# ~10,000 phrases, ~1.5 h). It also writes models/default/biasing.json: the mode that
# biasing="auto" means for this model, the one with the lowest dev WER.
$EV corpus build --out corpora/biasing --hours 0.8 --seed 7 --profile biasing
.venv/bin/python benchmarks/biasing_eval.py --model models/default --corpus corpora/biasing
.venv/bin/python benchmarks/biasing_overhead.py --model models/default --corpus corpora/biasing   # decoding cost alone, ~13 min
.venv/bin/python benchmarks/biasing_reach.py --model models/default --corpus corpora/biasing      # the true name alone, ~1 min

# Where the recognizer's errors come from: its training audio, fresh audio in its training
# voices, unseen voices (~3 min).
$EV corpus build --out corpora/fresh21 --hours 0.5 --seed 21
.venv/bin/python benchmarks/generalization_gap.py --model models/default --corpus corpora/bench20 --fresh corpora/fresh21

# The cloud side: the LM (~45 min), weights tuned on dev lattices, rescoring WER, load test.
$EV lm train --out models/cloud-lm --config models/cloud-lm/lm.yaml
.venv/bin/python benchmarks/rescoring_eval.py --model models/default --lm models/cloud-lm --corpus corpora/bench20
