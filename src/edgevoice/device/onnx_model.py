"""The three ONNX parts of the transducer behind a small numpy API (ONNX Runtime, CPU).

One OnnxTransducer is shared by every stream: ONNX Runtime sessions may be run from
several threads at once, and all per-stream state lives in the caller's arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevoice.device.model_dir import ModelDirectory
from edgevoice.errors import ModelError


@dataclass
class BiasMemory:
    """A phrase list encoded by the neural biaser: attention keys [H, d, M] and values
    [H, M, d] of the audio and label sides (entry 0: the "no bias" entry)."""

    audio_keys: np.ndarray
    audio_values: np.ndarray
    label_keys: np.ndarray
    label_values: np.ndarray


@dataclass
class EncoderState:
    conv1: np.ndarray  # [N, 1, ctx, bins]
    conv2: np.ndarray  # [N, C, ctx, bins']
    h: np.ndarray  # [layers, N, D]
    c: np.ndarray


class OnnxTransducer:
    def __init__(self, model_dir: ModelDirectory, threads: int = 1):
        import onnxruntime as ort

        self.model_dir = model_dir
        meta = model_dir.metadata
        self.blank = int(meta["blank_id"])
        self.vocab_size = int(meta["vocab_size"])
        self.enc = meta["encoder"]
        self.pred_dim = int(meta["predictor"]["dim"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.sessions = {}
        for part, file in model_dir.files.items():
            try:
                self.sessions[part] = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # ORT raises its own exception types for bad protobufs
                raise ModelError(f"{file} is not a loadable ONNX model: {str(exc).splitlines()[0]}") from exc
        self.has_biaser = "biaser" in self.sessions
        bias_enc, bias_pred = (["audio_keys", "audio_values"], ["label_keys", "label_values"]) if self.has_biaser else ([], [])
        expected = {"encoder": ["features", "conv1_cache", "conv2_cache", "h", "c", *bias_enc],
                    "predictor": ["token", "h", "c", *bias_pred], "joiner": ["encoder_out", "predictor_out"]}
        if self.has_biaser:
            expected["biaser"] = ["phrase_tokens", "phrase_lengths"]
        if "predictor_no_list" in self.sessions:
            expected["predictor_no_list"] = ["token", "h", "c"]
        for part, names in expected.items():
            got = [i.name for i in self.sessions[part].get_inputs()]
            if got != names:
                raise ModelError(f"{model_dir.files[part]} has inputs {got}, expected {names}: not an edgevoice {part}")
        vocab = self.sessions["joiner"].get_outputs()[0].shape[-1]
        if isinstance(vocab, int) and vocab != self.vocab_size:
            raise ModelError(f"{model_dir.files['joiner']} scores {vocab} tokens but metadata says {self.vocab_size}")
        self._encoder, self._predictor, self._joiner = (self.sessions[p] for p in ("encoder", "predictor", "joiner"))
        # Width of the encoder frames the search (and the end-pointer's speech detector) sees.
        self.joiner_dim = self._joiner.get_inputs()[0].shape[-1]
        # Streams without a phrase list still attend to the "no bias" entry, in the encoder,
        # and in the predictor where the model has no list-free one.
        self.no_bias = self.bias_memory([]) if self.has_biaser else None
        self._predictor_no_list = self.sessions.get("predictor_no_list")

    def bias_memory(self, phrases: list[list[int]]) -> BiasMemory:
        """Token ids of each bias phrase -> the neural biaser's memory (once per list)."""
        if not self.has_biaser:
            raise ModelError("this model has no neural biaser (train with model.bias_dim > 0 and re-export)")
        phrases = [p for p in phrases if p]
        # The "no bias" row does not depend on the phrases: an empty list runs one dummy phrase.
        rows = phrases or [[self.blank]]
        tokens = np.zeros((len(rows), max(len(p) for p in rows)), np.int64)
        for i, p in enumerate(rows):
            tokens[i, : len(p)] = p
        lengths = np.array([len(p) for p in rows], np.int64)
        out = self.sessions["biaser"].run(None, {"phrase_tokens": tokens, "phrase_lengths": lengths})
        audio_keys, audio_values, label_keys, label_values = out
        if not phrases:  # keep only the "no bias" entry
            audio_keys, label_keys = audio_keys[..., :1].copy(), label_keys[..., :1].copy()
            audio_values, label_values = audio_values[:, :1].copy(), label_values[:, :1].copy()
        return BiasMemory(audio_keys, audio_values, label_keys, label_values)

    def initial_encoder_state(self, n: int = 1) -> EncoderState:
        e = self.enc
        return EncoderState(np.zeros((n, 1, e["conv_context"], e["num_mel_bins"]), np.float32),
                            np.zeros((n, e["conv_channels"], e["conv_context"], e["conv1_bins"]), np.float32),
                            np.zeros((e["layers"], n, e["dim"]), np.float32), np.zeros((e["layers"], n, e["dim"]), np.float32))

    def encode(self, feats: np.ndarray, state: EncoderState, bias: BiasMemory | None = None) -> tuple[np.ndarray, EncoderState]:
        """feats [N, T, bins] normalized -> (encoder frames projected for the joiner [N, ceil(T/4), J], state)."""
        inputs = {"features": feats, "conv1_cache": state.conv1, "conv2_cache": state.conv2, "h": state.h, "c": state.c}
        if self.has_biaser:
            bias = bias or self.no_bias
            inputs.update(audio_keys=bias.audio_keys, audio_values=bias.audio_values)
        out, c1, c2, h, c = self._encoder.run(None, inputs)
        return out, EncoderState(c1, c2, h, c)

    def initial_predictor_state(self, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((1, n, self.pred_dim), np.float32), np.zeros((1, n, self.pred_dim), np.float32)

    def predict(self, tokens: np.ndarray, h: np.ndarray, c: np.ndarray,
                bias: BiasMemory | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """tokens [N] -> (predictor output projected for the joiner [N, J], h, c)."""
        inputs = {"token": tokens.reshape(-1, 1).astype(np.int64), "h": h, "c": c}
        if bias is None and self._predictor_no_list is not None:
            return tuple(self._predictor_no_list.run(None, inputs))
        if self.has_biaser:
            bias = bias or self.no_bias
            inputs.update(label_keys=bias.label_keys, label_values=bias.label_values)
        return tuple(self._predictor.run(None, inputs))

    def join(self, enc: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """enc [N, J], pred [N, J] -> log-probabilities [N, V]."""
        return self._joiner.run(None, {"encoder_out": enc, "predictor_out": pred})[0]
