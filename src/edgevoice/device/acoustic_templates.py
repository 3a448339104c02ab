"""Acoustic templates: how each bias phrase sounds to the recognizer's encoder.

Heard forms find a name by the letters of the words the recognizer puts in its place; with
100 phrases and more, the recognizer's words for everyday things resemble some phrase's
forms, and a span's letters are often closest to the wrong phrase. The encoder frames of
the enrollment hearings tell the phrases apart by sound instead (query by example): the
span's frames are compared with the listed phrases' templates by subsequence dynamic time
warping, and a rewrite stands only if its phrase is the closest of the list. On the biasing
set's dev and test splits this let a much looser letter threshold through while cutting the
wrong rewrites (benchmarks/biasing_eval.py; README). The alignment costs per template, so a
cheap first stage (each template's mean frame over four parts, against the same summary of
the utterance's stretches) picks the few phrases, and their few templates, worth aligning.

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
from typing import NamedTuple

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
# The first stage (AcousticTemplates._shortlist): each template summarized as the mean of its
# first SUMMARY_DIMS projected dimensions over SUMMARY_PARTS equal parts, compared with the
# same summary of windows of the utterance; only the SHORTLIST best phrases are aligned. On the
# biasing set's rare-name utterances with their 100-phrase lists (whole utterances searched),
# the true name came first as often with 8 or 16 phrases aligned as with all 100 (test 46.3
# against 45.9 %, dev 65.8 % each; 4: 44.8 %; NOTES, session 17).
SHORTLIST = 8
# ... and of each shortlisted phrase only the templates whose summaries matched best. The true
# name came first as often with 3-6 of a phrase's 12 as with all (2: 44.5 %, 1: 41.3 %), but
# the benchmark's rewrites with 4 lost a little on test (B-WER -18.6 against -19.9 % with all
# 12; 6: -20.1 %, dev WER the same; NOTES, session 17).
TEMPLATES_PER_PHRASE = 6  # (None: all of them)
SUMMARY_PARTS = 4
SUMMARY_DIMS = 32
_WINDOW_GRID = np.unique(np.round(1.25 ** np.arange(4, 22)).astype(np.int64))  # window lengths, 2-108 frames
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


class _Stacked(NamedTuple):
    """A set's templates, ready for matching (AcousticTemplates._stack)."""
    phrases: list  # those with templates, in order
    owner: np.ndarray  # per template: its phrase's index (a phrase's templates are consecutive)
    lengths: np.ndarray  # per template: frames
    starts: np.ndarray  # per template: its first row in `flat`
    flat: np.ndarray  # every template's frames, int8 [sum of lengths, dims]
    summaries: np.ndarray  # per template, in by_length's order: its summary for the first stage (_summaries)
    by_length: np.ndarray  # the templates in the order of the window length nearest their own
    bounds: list  # per window length of _WINDOW_GRID: the slice of by_length the first stage compares with it


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

    def prepare(self) -> "AcousticTemplates":
        """Stacks the templates for matching now (else the first match does): a list is
        prepared once, when a request brings it, not inside the decoding."""
        self._stack()
        return self

    def forget_lists(self) -> None:
        """Drops the remembered restrictions (a benchmark timing the preparation of a new list)."""
        self._restrictions = {}

    # ---- matching ---------------------------------------------------------------------

    def _stack(self):
        """The templates as one int8 array of frames [sum of lengths, dims], with per template
        its phrase's index, length, first row and summary (see _summaries), and the templates
        compared with each window length of the first stage."""
        if self._stacked is None:
            phrases = [p for p in self.templates if self.templates[p]]
            owner = np.array([i for i, p in enumerate(phrases) for _ in self.templates[p]], np.int64)
            ts = [t for p in phrases for t in self.templates[p]]
            lengths = np.array([len(t) for t in ts], np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if ts else np.zeros(0, np.int64)
            flat = np.concatenate(ts) if ts else np.zeros((0, self.dims), np.int8)
            summaries = _summaries(flat[:, :SUMMARY_DIMS].astype(np.float32), starts, lengths)
            # Per window length of _WINDOW_GRID, the templates compared with windows of that length:
            # those whose own length is within a grid step of it (an alignment stretches a
            # template by 0-2 frames a frame, mostly near 1). Sorted by their nearest grid length,
            # each window length's templates are one slice of the summaries.
            nearest = np.abs(np.log(_WINDOW_GRID)[:, None] - np.log(np.maximum(lengths, 1))[None, :]).argmin(axis=0)
            by_length = np.argsort(nearest, kind="stable")
            bounds = [(int(np.searchsorted(nearest[by_length], g - 1, "left")),
                       int(np.searchsorted(nearest[by_length], g + 1, "right"))) for g in range(len(_WINDOW_GRID))]
            self._stacked = _Stacked(phrases, owner, lengths, starts, flat, summaries[by_length], by_length, bounds)
        return self._stacked

    def _aligned(self, x: np.ndarray, start_within: int | None):
        """Subsequence alignment of the shortlisted phrases' templates with x (projected):
        (phrases, owner index per aligned template, distances, end frames)."""
        phrases, owner, lengths, starts, flat = self._stack()[:5]
        shortlist, template_best = self._shortlist(x, start_within)
        keep = np.flatnonzero(np.isin(owner, shortlist))
        if template_best is not None and TEMPLATES_PER_PHRASE is not None:
            # each shortlisted phrase's templates whose summaries matched best
            keep = keep[np.lexsort((-template_best[keep], owner[keep]))]
            first = np.flatnonzero(np.diff(owner[keep], prepend=-1))
            rank = np.arange(len(keep)) - np.repeat(first, np.diff(np.append(first, len(keep))))
            keep = keep[rank < TEMPLATES_PER_PHRASE]
        m = int(lengths[keep].max())
        rows = starts[keep, None] + np.arange(m)[None, :]
        inside = np.arange(m)[None, :] < lengths[keep, None]
        stacked = flat[np.where(inside, rows, 0)].astype(np.float32) / _SCALE  # [K, m, dims]
        stacked[~inside] = 0.0
        dist, end = subsequence_dtw(stacked, lengths[keep], x, start_within=start_within, with_ends=True)
        return phrases, owner[keep], dist, end

    def _shortlist(self, x: np.ndarray, start_within: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(the indices of the SHORTLIST phrases whose templates' summaries best match some
        stretch of x (all phrases when there are no more), each template's best summary
        similarity (None then)): a cheap first stage, so that the alignment's dynamic
        programme, which costs per template, runs on a few phrases only."""
        phrases, owner, _, _, _, summaries, by_length, bounds = self._stack()
        if len(phrases) <= SHORTLIST:
            return np.arange(len(phrases)), None
        n = len(x)
        grid = np.minimum(_WINDOW_GRID, n)
        head = x[:, :SUMMARY_DIMS]
        cs = np.concatenate([np.zeros((1, head.shape[1]), np.float32), np.cumsum(head, axis=0, dtype=np.float32)])
        # the summaries of every window of every grid length at once
        last_starts = n - grid if start_within is None else np.minimum(n - grid, start_within - 1)
        counts = last_starts + 1
        offsets = np.cumsum(counts) - counts
        window_starts = np.arange(counts.sum()) - np.repeat(offsets, counts)
        windows = _summaries_from_cumsum(cs, window_starts, np.repeat(grid, counts))
        sorted_best = np.full(len(owner), -np.inf, np.float32)
        for g, (lo, hi) in enumerate(bounds):
            if hi > lo:
                best = (windows[offsets[g] : offsets[g] + counts[g]] @ summaries[lo:hi].T).max(axis=0)
                np.maximum(sorted_best[lo:hi], best, out=sorted_best[lo:hi])
        template_best = np.empty_like(sorted_best)
        template_best[by_length] = sorted_best
        # (a phrase's templates are consecutive)
        phrase_best = np.maximum.reduceat(template_best, np.flatnonzero(np.diff(owner, prepend=-1)))
        return np.argsort(-phrase_best, kind="stable")[:SHORTLIST], template_best

    def scores(self, frames: np.ndarray, context_mean: np.ndarray | None = None) -> dict[str, float]:
        """Each phrase's distance to this stretch of encoder frames [n, J]: the least mean
        cosine distance per template frame of a subsequence alignment (each template frame
        advances the stretch by 0, 1 or 2 frames; the alignment may start and end anywhere
        in it), over the phrase's templates. Lower is closer. Only the SHORTLIST phrases
        whose summaries match best are aligned (with their TEMPLATES_PER_PHRASE best), the
        others score inf. `context_mean`: the utterance's mean frame (see project)."""
        phrases = self._stack()[0]
        if not phrases:
            return {}
        x = self.project(frames, context_mean)
        if not len(x):
            return {p: float("inf") for p in phrases}
        best = np.full(len(phrases), np.inf)
        _, owner, dist, _ = self._aligned(x, None)
        np.minimum.at(best, owner, dist)
        return {p: float(best[i]) for i, p in enumerate(phrases)}

    def search(self, frames: np.ndarray, context_mean: np.ndarray | None = None) -> tuple[str | None, float, float, int]:
        """The phrase whose templates best align with a stretch that starts within the first
        SEARCH_START_SLACK of these encoder frames [n, J] (a place where an entity may start):
        (phrase, its distance, the next phrase's distance, the frame after the alignment's end).
        Only the SHORTLIST phrases whose summaries match best are aligned."""
        phrases = self._stack()[0]
        x = self.project(frames, context_mean)
        if not phrases or not len(x):
            return None, float("inf"), float("inf"), 0
        best = np.full(len(phrases), np.inf)
        ends = np.zeros(len(phrases), np.int64)
        _, owner, dist, end = self._aligned(x, SEARCH_START_SLACK)
        for k in np.argsort(dist, kind="stable")[::-1]:  # per phrase, its best template's end
            best[owner[k]], ends[owner[k]] = dist[k], end[k]
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


def _summaries_from_cumsum(cs: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Summaries of stretches of frames given their cumulative sum cs [N + 1, d] (row 0 zeros):
    per stretch (starts[k], lengths[k]) the unit mean of each of SUMMARY_PARTS equal parts
    (at least a frame each), concatenated and unit-normalized -> [K, SUMMARY_PARTS * d]."""
    parts = []
    for i in range(SUMMARY_PARTS):
        lo = np.minimum(i * lengths // SUMMARY_PARTS, lengths - 1)
        hi = np.maximum((i + 1) * lengths // SUMMARY_PARTS, lo + 1)
        parts.append(_unit(cs[starts + hi] - cs[starts + lo]))
    return _unit(np.concatenate(parts, axis=1)) if parts else np.zeros((len(starts), 0), np.float32)


def _summaries(frames: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Summaries (see _summaries_from_cumsum) of the stretches of `frames` [N, d]."""
    cs = np.concatenate([np.zeros((1, frames.shape[1]), np.float32), np.cumsum(frames, axis=0, dtype=np.float32)])
    return _summaries_from_cumsum(cs, starts, lengths)


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
