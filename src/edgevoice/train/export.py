"""`edgevoice export`: a trained checkpoint -> a self-describing device model directory.

The transducer is split the way the device uses it (as sherpa-onnx does):

- encoder.onnx    normalized fbank chunk + carried state -> encoder frames already passed
                  through the joiner's encoder projection, new state
- predictor.onnx  last token + LSTM state -> joiner's predictor projection, new state
- joiner.onnx     both projections -> log-probabilities over the vocabulary
- biaser.onnx     (models with a neural biaser) bias phrases' token ids -> the attention
                  keys and values of the audio and label sides, computed once per phrase
                  list; encoder.onnx and predictor.onnx then take them as extra inputs
- predictor_no_list.onnx  (models with a neural biaser) the predictor without the biaser's
                  attention, for streams with no phrase list: there the attention can only
                  pick the "no bias" entry, whose value is zero, so it adds exactly nothing,
                  and the predictor runs for every hypothesis of every frame (the encoder's
                  attention, once per chunk, is not worth a second copy of the encoder)

Projections live with their inputs, so beam search only adds, applies tanh and one
matrix per frame and hypothesis. `--int8` adds dynamically quantized copies
(`*.int8.onnx`, int8 weights, float activations). metadata.json describes everything the
device needs and the SHA-256 of every file; `edgevoice.device.model_dir` validates it.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from edgevoice.device.model_dir import BIASER_MEMORY_LAYOUT, FORMAT_NAME, FORMAT_VERSION, METADATA_FILE, file_sha256
from edgevoice.errors import ConfigError
from edgevoice.train.evaluate import TrainedModel
from edgevoice.train.model import BiasMemory, CausalConvSubsampling, Transducer

OPSET = 17


class _EncoderStep(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.encoder = model.encoder
        self.biaser = model.biaser
        self.enc_proj = model.joiner.enc_proj

    def forward(self, x, conv1_cache, conv2_cache, h, c, audio_keys=None, audio_values=None):
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        state = {"conv": (conv1_cache, conv2_cache),
                 "lstm": [(h[i : i + 1], c[i : i + 1]) for i in range(h.shape[0])]}
        enc, _, new = self.encoder(x, lengths, state)
        if self.biaser is not None:
            enc = self.biaser.audio(enc, audio_keys, audio_values)
        new_h = torch.cat([s[0] for s in new["lstm"]], dim=0)
        new_c = torch.cat([s[1] for s in new["lstm"]], dim=0)
        return self.enc_proj(enc), new["conv"][0], new["conv"][1], new_h, new_c


class _PredictorStep(nn.Module):
    def __init__(self, model: Transducer, with_biaser: bool = True):
        super().__init__()
        self.predictor = model.predictor
        self.biaser = model.biaser if with_biaser else None
        self.pred_proj = model.joiner.pred_proj

    def forward(self, token, h, c, label_keys=None, label_values=None):
        out, (h1, c1) = self.predictor(token, (h, c))
        if self.biaser is not None:
            out = self.biaser.label(out, label_keys, label_values)
        return self.pred_proj(out[:, -1]), h1, c1


class _BiaserStep(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.biaser = model.biaser

    def forward(self, phrase_tokens, phrase_lengths):
        m: BiasMemory = self.biaser.keys_values(self.biaser.memory(phrase_tokens, phrase_lengths))
        return m.audio_keys, m.audio_values, m.label_keys, m.label_values


class _JoinerStep(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.out = model.joiner.out

    def forward(self, enc_proj, pred_proj):
        return self.out(torch.tanh(enc_proj + pred_proj)).log_softmax(-1)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's LSTM batch-size advice: states are inputs here
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def quantize_int8(src: Path, dst: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Weights of matrix products and LSTMs to int8; activations are quantized on the fly.
    # (The quantizer's advice to pre-process applies to static quantization: silenced.)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm", "LSTM"])
    finally:
        root.setLevel(level)


def export_model(checkpoint_dir: str | Path, out: str | Path, int8: bool = False, chunk_frames: int = 32) -> dict:
    """Export a run or model folder (model.pt, tokenizer.model, cmvn.json) to OUT."""
    if chunk_frames <= 0 or chunk_frames % 4:
        raise ConfigError(f"chunk_frames must be a positive multiple of 4 (the encoder subsamples by 4), got {chunk_frames}")
    trained = TrainedModel(checkpoint_dir)
    model, cfg = trained.model.eval(), trained.config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L, D, P, J = cfg.encoder_layers, cfg.encoder_dim, cfg.predictor_dim, cfg.joiner_dim
    ctx = CausalConvSubsampling.CONTEXT
    conv1_bins = (cfg.num_mel_bins - 3) // 2 + 1
    biased = model.biaser is not None
    C = cfg.bias_dim
    H = cfg.bias_heads
    memory = (torch.zeros(H, C // H, 2), torch.zeros(H, 2, C // H)) if biased else ()
    # M: phrase list length + 1 (the "no bias" entry); keys are [H, d, M], values [H, M, d].
    memory_axes = {"audio_keys": {2: "M"}, "label_keys": {2: "M"}, "audio_values": {1: "M"}, "label_values": {1: "M"}}
    with torch.no_grad():
        enc_bias_inputs = ["audio_keys", "audio_values"] if biased else []
        _export(_EncoderStep(model), (torch.zeros(1, chunk_frames, cfg.num_mel_bins), torch.zeros(1, 1, ctx, cfg.num_mel_bins),
                                      torch.zeros(1, cfg.subsampling_channels, ctx, conv1_bins), torch.zeros(L, 1, D),
                                      torch.zeros(L, 1, D), *memory),
                out / "encoder.onnx", ["features", "conv1_cache", "conv2_cache", "h", "c", *enc_bias_inputs],
                ["encoder_out", "new_conv1_cache", "new_conv2_cache", "new_h", "new_c"],
                {"features": {0: "N", 1: "T"}, "conv1_cache": {0: "N"}, "conv2_cache": {0: "N"}, "h": {1: "N"},
                 "c": {1: "N"}, "encoder_out": {0: "N", 1: "T_out"}, "new_conv1_cache": {0: "N"},
                 "new_conv2_cache": {0: "N"}, "new_h": {1: "N"}, "new_c": {1: "N"},
                 **{name: memory_axes[name] for name in enc_bias_inputs}})
        pred_bias_inputs = ["label_keys", "label_values"] if biased else []
        pred_args = (torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, P), torch.zeros(1, 1, P))
        pred_outputs = ["predictor_out", "new_h", "new_c"]
        pred_axes = {"token": {0: "N"}, "h": {1: "N"}, "c": {1: "N"}, "predictor_out": {0: "N"}, "new_h": {1: "N"},
                     "new_c": {1: "N"}}
        _export(_PredictorStep(model), (*pred_args, *memory), out / "predictor.onnx",
                ["token", "h", "c", *pred_bias_inputs], pred_outputs,
                {**pred_axes, **{name: memory_axes[name] for name in pred_bias_inputs}})
        if biased:
            _export(_PredictorStep(model, with_biaser=False), pred_args, out / "predictor_no_list.onnx",
                    ["token", "h", "c"], pred_outputs, pred_axes)
            _export(_BiaserStep(model), (torch.ones(3, 4, dtype=torch.long), torch.tensor([4, 2, 1])),
                    out / "biaser.onnx", ["phrase_tokens", "phrase_lengths"],
                    ["audio_keys", "audio_values", "label_keys", "label_values"],
                    {"phrase_tokens": {0: "N", 1: "L"}, "phrase_lengths": {0: "N"},
                     **memory_axes})
        _export(_JoinerStep(model), (torch.zeros(1, J), torch.zeros(1, J)), out / "joiner.onnx",
                ["encoder_out", "predictor_out"], ["log_probs"],
                {"encoder_out": {0: "N"}, "predictor_out": {0: "N"}, "log_probs": {0: "N"}})
    target = out / "tokenizer.model"
    if not (target.exists() and target.samefile(trained.tokenizer.path)):  # exporting into the model folder itself
        shutil.copyfile(trained.tokenizer.path, target)
    parts = ("encoder", "predictor", "joiner", "biaser", "predictor_no_list") if biased else ("encoder", "predictor", "joiner")
    variants = {"float32": {part: f"{part}.onnx" for part in parts}}
    if int8:
        variants["int8"] = {}
        for part in parts:
            quantize_int8(out / f"{part}.onnx", out / f"{part}.int8.onnx")
            variants["int8"][part] = f"{part}.int8.onnx"
    files = sorted({"tokenizer.model", *(f for v in variants.values() for f in v.values())})
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sample_rate": trained.features.sample_rate,
        "features": trained.features.to_dict(),
        "cmvn": {"mean": trained.cmvn.mean.tolist(), "std": trained.cmvn.std.tolist()},
        "tokenizer": "tokenizer.model",
        "vocab_size": cfg.vocab_size,
        "blank_id": model.blank,
        "subsampling": 4,
        "chunk_frames": chunk_frames,
        "encoder": {"layers": L, "dim": D, "conv_channels": cfg.subsampling_channels, "conv_context": ctx,
                    "conv1_bins": conv1_bins, "num_mel_bins": cfg.num_mel_bins},
        "predictor": {"dim": P},
        "joiner_dim": J,
        **({"biaser": {"dim": C, "heads": cfg.bias_heads, "memory_layout": BIASER_MEMORY_LAYOUT}} if biased else {}),
        "parameters": sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("ctc_head", "biaser", "simple_am", "simple_lm"))),
        **({"biaser_parameters": sum(p.numel() for p in model.biaser.parameters())} if biased else {}),
        "variants": variants,
        "sha256": {f: file_sha256(out / f) for f in files},
        "source": str(checkpoint_dir),
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2))
    return meta
