"""Acoustic templates: how each bias phrase sounds to the recognizer's encoder.

Heard forms find a name by the letters of the words the recognizer puts in its place; with
100 phrases and more, the recognizer's words for everyday things resemble some phrase's
forms, and a span's letters are often closest to the wrong phrase. The encoder frames of
the enrollment hearings tell the phrases apart by sound instead (query by example): the
span's frames are compared with every listed phrase's templates by subsequence dynamic time
warping, and a rewrite stands only if its phrase is the closest of the list. On the biasing
set's dev and test splits this let a much looser letter threshold through while cutting the
wrong rewrites (benchmarks/biasing_eval.py; README).

Each template is the stretch of encoder frames between the carrier words ("call" ...
"please") of one hearing, unit-normalized, centred and projected onto the principal
directions of the enrollment's frames (the file keeps the projection, so phrases enrolled
later land in the same space), normalized again and stored as int8. Centring by the mean
frame of the template's own hearing, and of the user's utterance on the other side
("context" centring, like cepstral mean normalization), takes out some of what a voice and a
channel add; with 128 directions instead of 32 it ranked the true name first of its
100-phrase list in 46 % of the biasing test split's rare-name utterances instead of 38 %
(NOTES, session 16). Numpy only (device side).
"""

from __future__ import annotations

import base64
import itertools

import numpy as np

from edgevoice.errors import ConfigError

# Projected dimensions. With the hearing's own mean taken out ("context" centring) 128 were as
# good as all 320 at ranking names (32, the first choice, lost 4 points: NOTES, session 16).
DIMS = 128
CENTERINGS = ("global", "context")
CENTERING = "context"  # what enrollment makes now; files with other templates are enrolled again
# Frames around the span's emitted tokens that the span's sound may occupy (a transducer
# emits a little after the sound, and a word's first token may come late).
REGION_PAD = 4
# The template search (HeardForms.search_distance) starts an alignment within this many frames
# of a word after which an entity may start, and looks this far ahead (2.4 s).
SEARCH_START_SLACK = 6
SEARCH_FRAMES = 60
_BLOCK = 512  # templates compared at once (memory: block x length x region floats)
_SCALE = 127.0  # int8 storage of unit vectors
# A hearing whose carrier edges were misheard can give a slot many seconds long: not a template.
MAX_TEMPLATE_FRAMES = 100
_SERIALS = itertools.count()


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _from_b64(text: str, dtype, shape: tuple, what: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        return np.frombuffer(raw, dtype).reshape(shape).copy()
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"acoustic templates: {what} is not {np.dtype(dtype).name} data of shape {shape}: {exc}") from exc


class AcousticTemplates:
    """Per phrase, the projected encoder frames of its enrollment hearings (int8 [m, dims] each)."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray, templates: dict[str, list[np.ndarray]] | None = None,
                 centering: str = "global"):
        if centering not in CENTERINGS:
            raise ConfigError(f"acoustic templates: unknown centring {centering!r} (one of {', '.join(CENTERINGS)})")
        # "global": frames minus the enrollment's mean frame; "context": minus the mean frame of
        # their own hearing or utterance first (files from before session 16 are "global").
        self.centering = centering
        self.mean = np.asarray(mean, np.float32)  # [J]
        self.basis = np.asarray(basis, np.float32)  # [J, dims]
        if self.mean.ndim != 1 or self.basis.ndim != 2 or self.basis.shape[0] != self.mean.shape[0]:
            raise ConfigError(f"acoustic templates: a projection of shape {self.basis.shape} does not fit a mean of "
                              f"shape {self.mean.shape}")
        self.templates: dict[str, list[np.ndarray]] = {p: list(t) for p, t in (templates or {}).items()}
        self._stacked = None  # built on first use (_stack)
        # A serial no other instance shares (a stream caches distances by it without keeping the templates alive).
        self.serial = next(_SERIALS)
        self._restrictions: dict[tuple, AcousticTemplates] = {}

    @property
    def input_dim(self) -> int:
        return self.mean.shape[0]

    @property
    def dims(self) -> int:
        return self.basis.shape[1]

    @staticmethod
    def fit(hearings, dims: int = DIMS, centering: str = CENTERING) -> "AcousticTemplates":
        """An empty set whose projection is the principal directions of these encoder frames:
        a list of hearings ([n, J] each; each centred on its own mean with "context" centring)
        or one array of frames."""
        parts = [hearings] if isinstance(hearings, np.ndarray) else list(hearings)
        if not parts or any(np.ndim(h) != 2 for h in parts):
            raise ConfigError("acoustic templates fit their projection on encoder frames [n, J]")
        x = np.concatenate([_unit(h) - (AcousticTemplates.context_mean(h) if centering == "context" else 0.0)
                            for h in parts])
        if len(x) < 2:
            raise ConfigError("acoustic templates need at least two encoder frames to fit their projection")
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        return AcousticTemplates(mean, vt[: min(dims, len(vt))].T, centering=centering)

    @staticmethod
    def context_mean(frames: np.ndarray) -> np.ndarray:
        """The mean unit-normalized frame of a hearing or utterance (what "context" centring takes out)."""
        frames = np.asarray(frames, np.float32)
        return _unit(frames).mean(axis=0) if len(frames) else np.zeros(frames.shape[-1], np.float32)

    def project(self, frames: np.ndarray, context_mean: np.ndarray | None = None) -> np.ndarray:
        """Encoder frames [n, J] -> unit vectors [n, dims] in the templates' space. With
        "context" centring, `context_mean` is the mean frame of the hearing or utterance the
        frames come from (context_mean(); None: these frames' own)."""
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 2 or frames.shape[1] != self.input_dim:
            raise ConfigError(f"acoustic templates compare {self.input_dim}-dim encoder frames, got shape {frames.shape}: "
                              "enroll the phrases again with this model")
        x = _unit(frames)
        if self.centering == "context":
            x = x - (self.context_mean(frames) if context_mean is None else np.asarray(context_mean, np.float32))
        return _unit((x - self.mean) @ self.basis)

    def add(self, phrase: str, frames: np.ndarray, context_mean: np.ndarray | None = None) -> None:
        """One hearing of `phrase`: its encoder frames [m, J] (and its hearing's mean frame, see project)."""
        q = np.clip(np.round(self.project(frames, context_mean) * _SCALE), -127, 127).astype(np.int8)
        self.templates.setdefault(phrase, []).append(q)
        self._stacked = None
        self._restrictions = {}

    def merged(self, other: "AcousticTemplates") -> "AcousticTemplates":
        """These templates and `other`'s (made with the same projection; `other` wins per phrase)."""
        if other.basis.shape != self.basis.shape or other.centering != self.centering or not (
                np.array_equal(other.basis, self.basis) and np.array_equal(other.mean, self.mean)):
            raise ConfigError("acoustic templates made with another projection cannot be merged: enroll them into "
                              "the same file")
        return AcousticTemplates(self.mean, self.basis, {**self.templates, **other.templates}, self.centering)

    def restricted(self, phrases) -> "AcousticTemplates":
        """The templates of these phrases only; the last few lists' are remembered, so a list
        that comes back keeps its stacked templates (and a stream's cached distances)."""
        key = tuple(dict.fromkeys(phrases))
        known = self._restrictions.get(key)
        if known is None:
            known = AcousticTemplates(self.mean, self.basis, {p: self.templates[p] for p in key if p in self.templates},
                                      self.centering)
            if len(self._restrictions) >= 32:
                self._restrictions.pop(next(iter(self._restrictions)))
            self._restrictions[key] = known
        return known

    def __contains__(self, phrase: str) -> bool:
        return bool(self.templates.get(phrase))

    # ---- matching ---------------------------------------------------------------------

    def _stack(self):
        """(phrases, per block: owner phrase index, lengths, [B, its longest, dims] float32): the
        templates sorted by length, so a block is padded to its own longest only."""
        if self._stacked is None:
            phrases = list(self.templates)
            items = sorted(((len(t), i, t) for i, p in enumerate(phrases) for t in self.templates[p]), key=lambda x: x[0])
            blocks = []
            for lo in range(0, len(items), _BLOCK):
                chunk = items[lo : lo + _BLOCK]
                stacked = np.zeros((len(chunk), chunk[-1][0], self.dims), np.float32)
                for k, (n, _, t) in enumerate(chunk):
                    stacked[k, :n] = t.astype(np.float32) / _SCALE
                blocks.append((np.array([i for _, i, _ in chunk], np.int64), np.array([n for n, _, _ in chunk], np.int64),
                               stacked))
            self._stacked = (phrases, blocks)
        return self._stacked

    def scores(self, frames: np.ndarray, context_mean: np.ndarray | None = None) -> dict[str, float]:
        """Each phrase's distance to this stretch of encoder frames [n, J]: the least mean
        cosine distance per template frame of a subsequence alignment (each template frame
        advances the stretch by 0, 1 or 2 frames; the alignment may start and end anywhere
        in it), over the phrase's templates. Lower is closer. `context_mean`: the
        utterance's mean frame (see project)."""
        phrases, blocks = self._stack()
        if not phrases:
            return {}
        x = self.project(frames, context_mean)
        if not len(x):
            return {p: float("inf") for p in phrases}
        best = np.full(len(phrases), np.inf)
        for owner, lengths, stacked in blocks:
            np.minimum.at(best, owner, subsequence_dtw(stacked, lengths, x))
        return {p: float(best[i]) for i, p in enumerate(phrases)}

    def search(self, frames: np.ndarray, context_mean: np.ndarray | None = None) -> tuple[str | None, float, float, int]:
        """The phrase whose templates best align with a stretch that starts within the first
        SEARCH_START_SLACK of these encoder frames [n, J] (a place where an entity may start):
        (phrase, its distance, the next phrase's distance, the frame after the alignment's end)."""
        phrases, blocks = self._stack()
        x = self.project(frames, context_mean)
        if not phrases or not len(x):
            return None, float("inf"), float("inf"), 0
        best = np.full(len(phrases), np.inf)
        ends = np.zeros(len(phrases), np.int64)
        for owner, lengths, stacked in blocks:
            dist, end = subsequence_dtw(stacked, lengths, x, start_within=SEARCH_START_SLACK, with_ends=True)
            for k in range(len(owner)):  # per phrase, the best template and where it ended
                i = owner[k]
                if dist[k] < best[i]:
                    best[i], ends[i] = dist[k], end[k]
        order = np.argsort(best, kind="stable")
        second = float(best[order[1]]) if len(order) > 1 else float("inf")
        return phrases[order[0]], float(best[order[0]]), second, int(ends[order[0]]) + 1

    def closest(self, frames: np.ndarray, context_mean: np.ndarray | None = None) -> tuple[str | None, float]:
        scores = self.scores(frames, context_mean)
        if not scores:
            return None, float("inf")
        phrase = min(scores, key=scores.get)
        return phrase, scores[phrase]

    # ---- storage ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"dims": self.dims, "input_dim": self.input_dim, "centering": self.centering, "mean": _b64(self.mean),
                "basis": _b64(self.basis),
                "phrases": {p: {"lengths": [len(t) for t in ts],
                                "frames": _b64(np.concatenate(ts) if ts else np.zeros((0, self.dims), np.int8))}
                            for p, ts in self.templates.items()}}

    @staticmethod
    def from_dict(d: dict) -> "AcousticTemplates":
        if not isinstance(d, dict):
            raise ConfigError("acoustic templates must be an object (made by `edgevoice context enroll`)")
        try:
            dims, input_dim = int(d["dims"]), int(d["input_dim"])
            centering = d.get("centering", "global")
            if dims <= 0 or input_dim <= 0:
                raise ValueError("dims and input_dim must be positive")
            mean = _from_b64(d["mean"], np.float32, (input_dim,), "the mean")
            basis = _from_b64(d["basis"], np.float32, (input_dim, dims), "the projection")
            templates = {}
            for phrase, entry in d["phrases"].items():
                lengths = [int(n) for n in entry["lengths"]]
                if any(n <= 0 for n in lengths):
                    raise ValueError(f"template lengths of {phrase!r} must be positive")
                frames = _from_b64(entry["frames"], np.int8, (sum(lengths), dims), f"the frames of {phrase!r}")
                templates[phrase] = np.split(frames, np.cumsum(lengths)[:-1]) if lengths else []
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"bad acoustic templates: {exc}") from exc
        return AcousticTemplates(mean, basis, templates, centering)


def subsequence_dtw(templates: np.ndarray, lengths: np.ndarray, x: np.ndarray, start_within: int | None = None,
                    with_ends: bool = False):
    """templates [K, M, D] (each padded after its length), x [n, D], all unit vectors ->
    per template the least mean cosine distance of aligning all its frames to a stretch of x,
    each template frame advancing x by 0, 1 or 2 frames; the stretch starts anywhere, or
    within the first `start_within` frames. With `with_ends`, also the frame each best
    alignment ends at."""
    k, m, d = templates.shape
    cost = 1.0 - (templates.reshape(k * m, d) @ x.T).reshape(k, m, len(x))  # [K, M, n]
    out = np.full(len(templates), np.inf)
    ends = np.zeros(len(templates), np.int64)
    acc = cost[:, 0, :].copy()
    if start_within is not None:
        acc[:, start_within:] = np.inf
    done = lengths == 1
    out[done] = acc[done].min(axis=1)
    ends[done] = acc[done].argmin(axis=1)
    for i in range(1, templates.shape[1]):
        prev = acc
        step = prev.copy()
        np.minimum(step[:, 1:], prev[:, :-1], out=step[:, 1:])
        np.minimum(step[:, 2:], prev[:, :-2], out=step[:, 2:])
        acc = cost[:, i, :] + step
        done = lengths == i + 1
        if done.any():
            out[done] = acc[done].min(axis=1) / (i + 1)
            ends[done] = acc[done].argmin(axis=1)
    return (out, ends) if with_ends else out
