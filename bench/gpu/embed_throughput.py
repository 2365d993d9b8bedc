"""Embedding throughput of the node's model on a GPU, and the same model on 2 CPU cores.

Runs on the GPU machine (`device` tool; PyTorch, transformers and tokenizers are installed
there, nothing can be fetched): the weights come from `make bench-gpu-prepare` (`.gpu/minilm`,
float16, carried with the working tree). TEI itself cannot be installed there, so this
measures what bounds a TEI pod: the BERT encoder (transformers' `BertModel`, PyTorch SDPA
attention), mean pooling and unit length, batched as TEI batches concurrent requests.

Checks first, fails loudly: every reference text's embedding (float32 and float16, batched
with padding) has cosine >= 0.999 with the reference embeddings the node is tested against.
Then, per precision and batch size: texts per second end to end (tokenizer included), the
tokenizer's share, and p50 per batch; short prompts (CLINC-like, ~12 tokens) and long ones
(~100 tokens). The CPU rows (2 threads, float32) are the embedded node's configuration, so
the ratio reads as "one GPU = N two-core nodes" for embedding alone.

    python3 bench/gpu/embed_throughput.py --model .gpu/minilm --out "$OUT/gpu-embedding.json"
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import BertModel

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
MIN_COSINE = 0.999
GPU_BATCHES = (1, 8, 32, 128, 512)
CPU_BATCHES = (1, 8, 32)
SECONDS_PER_POINT = 2.0


def load_model(model_dir: Path, dtype: torch.dtype, device: str) -> BertModel:
    """BertModel with the prepared weights, through `from_pretrained` (which knows the
    checkpoint names of every transformers version); a missing or extra weight is an error."""
    arrays = np.load(model_dir / "weights.npz")
    state = {name: torch.from_numpy(arrays[name].astype(np.float32)) for name in arrays.files}
    with tempfile.TemporaryDirectory() as folder:
        shutil.copyfile(model_dir / "config.json", Path(folder) / "config.json")
        save_file(state, str(Path(folder) / "model.safetensors"))
        model, info = BertModel.from_pretrained(
            folder, add_pooling_layer=False, output_loading_info=True
        )
    missing = [name for name in info["missing_keys"] if not name.endswith("position_ids")]
    if missing or info["unexpected_keys"]:
        raise SystemExit(f"weights do not fit: missing {missing}, extra {info['unexpected_keys']}")
    return model.to(device=device, dtype=dtype).eval()


def load_tokenizer(model_dir: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()  # to the longest text of each batch, as TEI does
    return tokenizer


def embed(model: BertModel, tokenizer: Tokenizer, texts: list[str], device: str) -> torch.Tensor:
    """Unit-length mean-pooled embeddings, float32, on `device`."""
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([encoding.ids for encoding in encodings], device=device)
    mask = torch.tensor([encoding.attention_mask for encoding in encodings], device=device)
    with torch.inference_mode():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return torch.nn.functional.normalize(pooled.float(), dim=1)


def check(model: BertModel, tokenizer: Tokenizer, reference: dict[str, Any], device: str) -> float:
    expected = torch.tensor(reference["embeddings"], dtype=torch.float32, device=device)
    got = embed(model, tokenizer, reference["texts"], device)
    return float((got * expected).sum(1).min())


def measure(
    model: BertModel, tokenizer: Tokenizer, texts: list[str], batch: int, device: str
) -> dict[str, float]:
    """Batches of `batch` texts for about SECONDS_PER_POINT seconds (after 3 warm-ups)."""
    batches = [[texts[(start + i) % len(texts)] for i in range(batch)] for start in range(16)]
    for warm in batches[:3]:
        embed(model, tokenizer, warm, device)
    seconds: list[float] = []
    tokenizing: list[float] = []
    began = time.perf_counter()
    while time.perf_counter() - began < SECONDS_PER_POINT or len(seconds) < 5:
        texts_now = batches[len(seconds) % len(batches)]
        start = time.perf_counter()
        tokenizer.encode_batch(texts_now)
        tokenizing.append(time.perf_counter() - start)
        start = time.perf_counter()
        embed(model, tokenizer, texts_now, device)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    total = sum(seconds)
    return {
        "batch": batch,
        "texts_per_s": round(batch * len(seconds) / total, 1),
        "batch_ms_p50": round(statistics.median(seconds) * 1000, 3),
        "tokenizer_share": round(sum(tokenizing) / total, 3),
        "batches": len(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="folder from bench-gpu-prepare")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on the GPU machine")
    reference = json.loads((args.model / "reference_embeddings.json").read_text())
    short = list(reference["texts"])
    long = [" ".join(short[i : i + 8]) for i in range(0, len(short), 2)]  # ~100 tokens each
    tokenizer = load_tokenizer(args.model)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "tokens": {
            "short_mean": statistics.mean(
                sum(e.attention_mask) for e in tokenizer.encode_batch(short)
            ),
            "long_max": max(sum(e.attention_mask) for e in tokenizer.encode_batch(long)),
        },
        "runs": [],
    }
    settings = [("cuda", torch.float16, GPU_BATCHES), ("cuda", torch.float32, GPU_BATCHES)]
    settings.append(("cpu", torch.float32, CPU_BATCHES))
    for device, dtype, batch_sizes in settings:
        if device == "cpu":
            torch.set_num_threads(2)
        model = load_model(args.model, dtype, device)
        cosine = check(model, tokenizer, reference, device)
        print(f"{device} {dtype}: lowest cosine vs reference {cosine:.5f}", flush=True)
        if cosine < MIN_COSINE:
            raise SystemExit(f"{device} {dtype} embeddings differ from the reference ({cosine})")
        for name, texts in (("short", short), ("long", long)):
            for batch in batch_sizes:
                point = measure(model, tokenizer, texts, batch, device)
                row = {
                    "device": device,
                    "dtype": str(dtype).removeprefix("torch."),
                    "prompts": name,
                }
                results["runs"].append({**row, **point, "lowest_cosine": round(cosine, 5)})
                print(json.dumps(results["runs"][-1]), flush=True)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
