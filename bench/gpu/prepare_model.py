"""Turn the node's ONNX embedding model into float16 weights a GPU machine can load.

The GPU machine has PyTorch and transformers but no network, and takes at most 64 MiB of files:
the ONNX file (90 MB, float32) does not fit, its float16 weights (45 MB) do. The ONNX export
names the projection matrices by node number, so each one is named here after the bias its
MatMul feeds (`...query.bias` -> `...query.weight`, transposed to PyTorch's `[out, in]`).

Before writing, the weights are checked: a plain numpy forward pass of the BERT encoder (mean
pooling, unit length) over the reference texts must reproduce the reference embeddings
(cosine >= 0.999). Run by `make bench-gpu-prepare` with `onnx` in a throwaway environment.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from tokenizers import Tokenizer

COPIED = ("config.json", "tokenizer.json", "reference_embeddings.json")
PREFIX = "b."  # the export's prefix of the named weights
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model


def bert_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every weight under its BertModel state-dict name, float32."""
    graph = model.graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    weights = {
        name.removeprefix(PREFIX): array
        for name, array in initializers.items()
        if name.startswith(PREFIX)
    }
    adds = {name: node for node in graph.node if node.op_type == "Add" for name in node.input}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in initializers:
            continue
        add = adds.get(node.output[0])
        bias = next((name for name in add.input if name.endswith(".bias")), None) if add else None
        if bias is None or not bias.startswith(PREFIX):
            raise ValueError(f"MatMul {node.name}: no bias names its weight")
        weights[bias.removeprefix(PREFIX).removesuffix(".bias") + ".weight"] = initializers[
            node.input[1]
        ].T
    return weights


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_erf = np.vectorize(math.erf)


def encode(
    weights: dict[str, np.ndarray], config: dict, ids: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Sentence embeddings (mean of the last hidden states over real tokens, unit length)."""
    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]

    def linear(x: np.ndarray, name: str) -> np.ndarray:
        return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        return _layer_norm(x, weights[f"{name}.weight"], weights[f"{name}.bias"], eps)

    batch, length = ids.shape
    x = (
        weights["embeddings.word_embeddings.weight"][ids]
        + weights["embeddings.position_embeddings.weight"][np.arange(length)]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    x = norm(x, "embeddings.LayerNorm")
    blocked = (1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min
    for layer in range(config["num_hidden_layers"]):
        at = f"encoder.layer.{layer}"

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)

        q, k, v = (
            split(linear(x, f"{at}.attention.self.{part}")) for part in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + blocked
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, -1)
        x = norm(
            x + linear(context, f"{at}.attention.output.dense"), f"{at}.attention.output.LayerNorm"
        )
        inner = linear(x, f"{at}.intermediate.dense")
        inner = 0.5 * inner * (1.0 + _erf(inner / math.sqrt(2.0)))
        x = norm(x + linear(inner, f"{at}.output.dense"), f"{at}.output.LayerNorm")
    pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="all-MiniLM-L6-v2 folder")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (carried)")
    args = parser.parse_args()
    config = json.loads((args.model_dir / "config.json").read_text())
    weights = bert_weights(onnx.load(str(args.model_dir / "onnx" / "model.onnx")))

    reference = json.loads((args.model_dir / "reference_embeddings.json").read_text())
    tokenizer = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()  # the file pads to 128 tokens; one text at a time needs none
    lowest = 1.0
    for text, expected in zip(reference["texts"], reference["embeddings"], strict=True):
        ids = np.array([tokenizer.encode(text).ids])
        got = encode(weights, config, ids, np.ones(ids.shape, dtype=np.float32))[0]
        lowest = min(lowest, float(got @ np.asarray(expected, dtype=np.float64)))
    print(
        f"numpy forward vs reference embeddings: lowest cosine {lowest:.6f}"
        f" over {len(reference['texts'])} texts"
    )
    if lowest < 0.999:
        raise SystemExit("the weights do not reproduce the reference embeddings: not written")

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out / "weights.npz",
        **{name: array.astype(np.float16) for name, array in weights.items()},
    )
    for name in COPIED:
        shutil.copyfile(args.model_dir / name, args.out / name)
    size = sum(path.stat().st_size for path in args.out.iterdir()) / 2**20
    print(
        f"wrote {len(weights)} float16 weights and {len(COPIED)} files to {args.out}"
        f" ({size:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
