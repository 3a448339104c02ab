"""Speech synthesis: voices, the voice catalog and its split, and the three TTS engines.

A voice is (engine, engine voice, pitch, vocal-tract warp) with a stable id such as
``flite:slt:p1.09:w0.95`` or ``espeak:en-gb-scotland+m3:p65:w1.06``. The pitch is the
engine's own F0 control; the warp resamples the output (formants move) while the engine
is asked for compensating pitch and duration, so each setting is a distinct
pseudo-speaker. Only five recorded humans stand behind flite and festival (kal, awb,
rms, slt, ked); espeak-ng's formant synthesis adds accents and variants.

Split of voices (no voice id is in two splits):
- test: festival ked (the one held-out human), espeak accent en-gb-x-gbcwmd, espeak
  variants in TEST_VARIANTS;
- dev: espeak accent en-029, espeak variants in DEV_VARIANTS, and for the other humans
  the pitch/warp settings with (pitch index + 2 * warp index) % 5 == 0;
- train: everything else.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgevoice.audio.augment import vocal_tract_warp
from edgevoice.audio.io import SAMPLE_RATE, parse_wav_bytes
from edgevoice.errors import EngineMissingError, VoiceError

ENGINES = ("espeak", "flite", "festival")

# "en" is British English: espeak-ng ignores the +variant on the alias "en-gb".
ESPEAK_TRAIN_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-us-nyc")
ESPEAK_DEV_ACCENTS = ("en-029",)
ESPEAK_TEST_ACCENTS = ("en-gb-x-gbcwmd",)
ESPEAK_TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "klatt", "klatt2", "klatt3",
                         "Andy", "Annie", "adam", "linda")
DEV_VARIANTS = ("m7", "f4", "klatt4")
TEST_VARIANTS = ("m8", "f5", "klatt5", "edward")
WHISPER_VARIANTS = ("whisper", "whisperf")
ESPEAK_PITCHES = (35, 50, 65)
ESPEAK_WARPS = (0.94, 1.0, 1.06)

NATURAL_PITCHES = (0.85, 0.92, 1.0, 1.09, 1.18)
NATURAL_WARPS = (0.9, 0.95, 1.0, 1.05, 1.1)

# (engine, engine voice) -> the recorded human behind it, and its default mean F0 (Hz)
# where the engine lets us set F0 (None: no pitch control, pitch follows the warp).
NATURAL_VOICES = {
    ("flite", "kal16"): ("kal", 93.0),
    ("flite", "awb"): ("awb", 132.0),
    ("flite", "slt"): ("slt", 176.0),
    ("flite", "rms"): ("rms", None),
    ("festival", "kal_diphone"): ("kal", 105.0),
    ("festival", "ked_diphone"): ("ked", 105.0),
    ("festival", "cmu_us_slt_arctic_hts"): ("slt", None),
}
TEST_HUMANS = ("ked",)

_ID = re.compile(r"^(espeak|flite|festival):([A-Za-z0-9_+\-]+):p([0-9.]+):w([0-9.]+)$")


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str  # the engine's voice name; for espeak "accent+variant"
    pitch: float  # espeak: -p value (0-99); flite/festival: F0 factor
    warp: float  # vocal-tract warp (resampling) factor

    @property
    def id(self) -> str:
        pitch = f"{int(self.pitch)}" if self.engine == "espeak" else f"{self.pitch:.2f}"
        return f"{self.engine}:{self.name}:p{pitch}:w{self.warp:.2f}"

    @property
    def speaker(self) -> str:
        """The human (or espeak voice) behind this pseudo-speaker."""
        if self.engine == "espeak":
            return f"espeak:{self.name}"
        return NATURAL_VOICES[(self.engine, self.name)][0]

    @property
    def accent(self) -> str:
        return self.name.split("+")[0] if self.engine == "espeak" else "en-us" if self.speaker != "awb" else "en-sc"

    @property
    def variant(self) -> str:
        return self.name.split("+", 1)[1] if self.engine == "espeak" and "+" in self.name else ""

    @property
    def is_whisper_voice(self) -> bool:
        return self.variant in WHISPER_VARIANTS

    @property
    def split(self) -> str:
        return voice_split(self)

    @staticmethod
    def parse(voice_id: str) -> "Voice":
        m = _ID.match(voice_id)
        if not m:
            raise VoiceError(f"unknown voice id {voice_id!r}: expected ENGINE:NAME:pPITCH:wWARP, "
                             f"e.g. 'flite:slt:p1.00:w1.00' (see `edgevoice corpus voices`)")
        engine, name, pitch, warp = m.group(1), m.group(2), float(m.group(3)), float(m.group(4))
        voice = Voice(engine, name, pitch, warp)
        if engine == "espeak":
            accent, _, variant = name.partition("+")
            known_accents = ESPEAK_TRAIN_ACCENTS + ESPEAK_DEV_ACCENTS + ESPEAK_TEST_ACCENTS
            known_variants = ESPEAK_TRAIN_VARIANTS + DEV_VARIANTS + TEST_VARIANTS + WHISPER_VARIANTS
            if accent not in known_accents or (variant and variant not in known_variants):
                raise VoiceError(f"unknown espeak-ng voice {name!r} in {voice_id!r}")
            if not 0 <= pitch <= 99:
                raise VoiceError(f"espeak-ng pitch must be 0-99, got {pitch} in {voice_id!r}")
        elif (engine, name) not in NATURAL_VOICES:
            names = sorted(n for e, n in NATURAL_VOICES if e == engine)
            raise VoiceError(f"unknown {engine} voice {name!r} in {voice_id!r}; known: {', '.join(names)}")
        elif not 0.5 <= pitch <= 2.0:
            raise VoiceError(f"pitch factor must be within 0.5-2.0, got {pitch} in {voice_id!r}")
        if not 0.7 <= warp <= 1.4:
            raise VoiceError(f"warp factor must be within 0.7-1.4, got {warp} in {voice_id!r}")
        return voice


def voice_split(voice: Voice) -> str:
    if voice.engine == "espeak":
        if voice.accent in ESPEAK_TEST_ACCENTS or voice.variant in TEST_VARIANTS:
            return "test"
        if voice.accent in ESPEAK_DEV_ACCENTS or voice.variant in DEV_VARIANTS:
            return "dev"
        return "train"
    if voice.speaker in TEST_HUMANS:
        return "test"
    pi = NATURAL_PITCHES.index(voice.pitch) if voice.pitch in NATURAL_PITCHES else 2
    wi = NATURAL_WARPS.index(voice.warp) if voice.warp in NATURAL_WARPS else 2
    return "dev" if (pi + 2 * wi) % 5 == 0 else "train"


@lru_cache(maxsize=None)
def voice_catalog() -> tuple[Voice, ...]:
    """Every voice the corpus builder may use (whisper variants excluded: whispering is
    an utterance property, applied on top of a voice)."""
    voices: list[Voice] = []
    accents = ESPEAK_TRAIN_ACCENTS + ESPEAK_DEV_ACCENTS + ESPEAK_TEST_ACCENTS
    variants = ESPEAK_TRAIN_VARIANTS + DEV_VARIANTS + TEST_VARIANTS
    for accent in accents:
        for variant in variants:
            for pitch in ESPEAK_PITCHES:
                for warp in ESPEAK_WARPS:
                    voices.append(Voice("espeak", f"{accent}+{variant}", pitch, warp))
    for (engine, name), (_, f0) in NATURAL_VOICES.items():
        for pitch in NATURAL_PITCHES if f0 is not None else (1.0,):
            for warp in NATURAL_WARPS:
                voices.append(Voice(engine, name, pitch, warp))
    return tuple(voices)


def voices_for_split(split: str) -> list[Voice]:
    return [v for v in voice_catalog() if v.split == split]


# ---------------------------------------------------------------- engines

def require_program(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise EngineMissingError(f"the TTS engine {program!r} is not installed; install it with "
                                 f"`sudo apt-get install {package}`")
    return path


def _check_text(text: str) -> None:
    # Commas only between words: where a phrase break (a pause that goes on) is wanted.
    if not text or not re.fullmatch(r"[a-z' ]+(, [a-z' ]+)*", text):
        raise VoiceError(f"TTS input must be non-empty spoken-form text (lowercase words, commas between them), "
                         f"got {text!r}")


class Synthesizer:
    """Synthesizes spoken-form text with any catalog voice: 16 kHz float32, engine
    silence trimmed off by the caller. One instance per process (festival runs as a
    persistent child process, since its start-up dominates short utterances)."""

    def __init__(self, workdir: str | Path | None = None):
        self._tmp = tempfile.mkdtemp(prefix="edgevoice-tts-", dir=workdir)
        self._festival: subprocess.Popen | None = None
        self._festival_voice: str | None = None
        self._lock = threading.Lock()
        self._counter = 0

    def close(self) -> None:
        if self._festival is not None:
            try:
                self._festival.stdin.close()
                self._festival.wait(timeout=5)
            except Exception:
                self._festival.kill()
            self._festival = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def synthesize(self, text: str, voice: Voice, tempo: float = 1.0, pitch_shift: float = 1.0,
                   whisper: bool = False) -> np.ndarray:
        """`tempo` > 1 speaks faster; `pitch_shift` multiplies F0 where the engine allows;
        `whisper` uses espeak-ng's whisper variants (other engines are whisperized later)."""
        _check_text(text)
        if not 0.5 <= tempo <= 2.0:
            raise VoiceError(f"tempo must be within 0.5-2.0, got {tempo}")
        stretch = voice.warp / tempo  # the warp shortens by `warp`; the engine pre-lengthens
        if voice.engine == "espeak":
            audio, rate = self._espeak(text, voice, stretch, pitch_shift, whisper)
        elif voice.engine == "flite":
            audio, rate = self._flite(text, voice, stretch, pitch_shift)
        elif voice.engine == "festival":
            audio, rate = self._festival_say(text, voice, stretch, pitch_shift)
        else:
            raise VoiceError(f"unknown TTS engine {voice.engine!r}; choose from {ENGINES}")
        if audio.size == 0:
            raise VoiceError(f"{voice.id} produced no audio for {text!r}")
        return vocal_tract_warp(audio, voice.warp, rate, SAMPLE_RATE)

    # espeak-ng: accents x variants, native pitch (-p) and rate (-s, words per minute)
    def _espeak(self, text, voice, stretch, pitch_shift, whisper):
        exe = require_program("espeak-ng", "espeak-ng")
        name = voice.name
        if whisper:
            name = f"{voice.accent}+{'whisperf' if voice.variant.startswith('f') else 'whisper'}"
        pitch = int(np.clip(round(voice.pitch * pitch_shift), 0, 99))
        speed = int(np.clip(round(175 / stretch), 80, 450))
        proc = subprocess.run([exe, "-v", name, "-p", str(pitch), "-s", str(speed), "--stdout", text],
                              capture_output=True)
        if proc.returncode != 0 or not proc.stdout:
            raise VoiceError(f"espeak-ng failed for voice {name!r}: {proc.stderr.decode(errors='replace').strip()}")
        return parse_wav_bytes(proc.stdout, f"espeak-ng {name}")

    # flite: four built-in voices; F0 mean and duration stretch as features
    def _flite(self, text, voice, stretch, pitch_shift):
        exe = require_program("flite", "flite")
        cmd = [exe, "-voice", voice.name, "--setf", f"duration_stretch={stretch:.4f}"]
        f0 = NATURAL_VOICES[("flite", voice.name)][1]
        if f0 is not None:
            target = f0 * voice.pitch * pitch_shift / voice.warp
            cmd += ["--setf", f"int_f0_target_mean={target:.1f}"]
        proc = subprocess.run(cmd + ["-t", text, "-o", "/dev/stdout"], capture_output=True)
        if proc.returncode != 0 or not proc.stdout.startswith(b"RIFF"):
            raise VoiceError(f"flite failed for voice {voice.name!r}: {proc.stderr.decode(errors='replace').strip()}")
        return parse_wav_bytes(proc.stdout, f"flite {voice.name}")

    # festival: persistent process, Scheme commands over a pipe
    def _festival_start(self):
        exe = require_program("festival", "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts")
        # festival block-buffers stdout into a pipe, so completion markers (and errors)
        # are read from the unbuffered stderr.
        self._festival = subprocess.Popen([exe, "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True, bufsize=1)
        self._festival_voice = None

    def _festival_cmd(self, command: str) -> None:
        marker = f"EV_DONE_{self._counter}"
        self._counter += 1
        assert self._festival is not None
        self._festival.stdin.write(f"{command}\n(format stderr \"{marker}\\n\")\n")
        self._festival.stdin.flush()
        errors = []
        while True:
            line = self._festival.stderr.readline()
            if not line:
                self._festival = None
                raise VoiceError(f"festival exited while running: {command[:120]}")
            if marker in line:
                if errors:
                    raise VoiceError(f"festival failed: {' '.join(errors)[:300]} (command: {command[:120]})")
                return
            if "error" in line.lower():
                errors.append(line.strip())

    def _festival_say(self, text, voice, stretch, pitch_shift):
        with self._lock:
            if self._festival is None or self._festival.poll() is not None:
                self._festival_start()
            setup = []
            if self._festival_voice != voice.name:
                setup.append(f"(voice_{voice.name})")
                setup.append("(set! ev_default_int_lr_params int_lr_params)")
                if voice.name.endswith("_hts"):
                    setup.append(f"(set! ev_default_hts_params {voice.name.replace('_hts', '')}_hts::hts_engine_params)")
                self._festival_voice = voice.name
            f0 = NATURAL_VOICES[("festival", voice.name)][1]
            if voice.name.endswith("_hts"):
                speed = 1.0 / stretch
                setup.append(f"(set! hts_engine_params (append ev_default_hts_params (list (list \"-r\" {speed:.4f}))))")
                setup.append("(Parameter.set 'Duration_Stretch 1.0)")
            else:
                setup.append(f"(Parameter.set 'Duration_Stretch {stretch:.4f})")
            if f0 is not None:
                target = f0 * voice.pitch * pitch_shift / voice.warp
                setup.append(f"(set! int_lr_params (cons (list 'target_f0_mean {target:.1f}) (cdr ev_default_int_lr_params)))")
            out = os.path.join(self._tmp, f"fest{os.getpid()}.wav")
            cmd = " ".join(setup) + f" (utt.save.wave (utt.synth (Utterance Text \"{text}\")) \"{out}\" 'riff)"
            self._festival_cmd(cmd)
            blob = Path(out).read_bytes()
            return parse_wav_bytes(blob, f"festival {voice.name}")
