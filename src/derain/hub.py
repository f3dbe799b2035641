"""Weights on the Hugging Face Hub: ``hf-hub:owner/name[@revision]`` and ``save_pretrained`` folders.

A derain Hub repository is a folder as ``save_pretrained`` writes one: ``model.safetensors``
(the weights, with derain's model name and configuration in the safetensors metadata, so the
file alone rebuilds the model), ``config.json`` (the same, readable by the Hub and by people),
and ``README.md`` (the model card: YAML metadata with licence, test sets and the paper's
metrics, then prose). :func:`derain.load_checkpoint` accepts ``hf-hub:owner/name`` or
``hf-hub:owner/name@revision`` and reads through ``huggingface_hub``, so its cache, the
``HF_HUB_OFFLINE``/``HF_HUB_CACHE``/``HF_HOME`` settings and revision pinning (a branch, tag
or commit) work as for any Hub library. Nothing is downloaded at import, nor unless a
``hf-hub:`` name is given. Reading needs the ``hub`` extra: ``pip install 'derain[hub]'``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from . import models  # noqa: F401  (registers the architectures whose cards the README quotes)
from .files import atomic_write
from .registry import ModelCard

PREFIX = "hf-hub:"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
README_NAME = "README.md"
# The Hub's own rule for a repository id: owner/name, letters, digits, "-", "_", "."
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# Licence texts of the cards that the Hub knows by an identifier; anything else is "other".
_HUB_LICENCES = {"apache-2.0": "apache-2.0", "mit": "mit", "bsd-3-clause": "bsd-3-clause", "gpl-3.0": "gpl-3.0"}


class HubError(ValueError):
    """A ``hf-hub:`` name that is malformed, or weights the Hub or its cache cannot give."""


def is_hub_name(value: str | Path) -> bool:
    return str(value).startswith(PREFIX)


def parse(name: str) -> tuple[str, str | None]:
    """``"hf-hub:owner/name@rev"`` -> ``("owner/name", "rev")``; the revision is ``None`` when absent."""
    body = str(name)[len(PREFIX) :]
    repo_id, at_sign, revision = body.partition("@")
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or (at_sign and not revision):
        raise HubError(f"{name!r} is not a Hub name; expected hf-hub:owner/name or hf-hub:owner/name@revision")
    return repo_id, revision or None


def download(name: str) -> Path:
    """The local path of the weights of ``hf-hub:owner/name[@revision]``, from the Hub's cache
    or, unless ``HF_HUB_OFFLINE`` is set, downloaded into it."""
    repo_id, revision = parse(name)
    try:
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError:
        raise HubError(f"{name}: reading weights from the Hub needs huggingface_hub: pip install 'derain[hub]'") from None
    at = f" at revision {revision!r}" if revision else ""
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, WEIGHTS_NAME, revision=revision))
    except errors.LocalEntryNotFoundError:
        raise HubError(
            f"{name}: {WEIGHTS_NAME}{at} is not in the Hub cache, and it cannot be downloaded "
            "(HF_HUB_OFFLINE is set, or the Hub cannot be reached)"
        ) from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{name}: the repository {repo_id} has no revision {revision!r}") from None
    except errors.EntryNotFoundError:
        raise HubError(f"{name}: the repository {repo_id}{at} has no {WEIGHTS_NAME}; is it a derain export?") from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"{name}: no repository {repo_id} on the Hub (or it is private: huggingface-cli login)") from None


def weights_in(folder: Path) -> Path:
    """The weights of a ``save_pretrained`` folder."""
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise HubError(f"{folder}: a folder, but without {WEIGHTS_NAME}; pass the weights file itself")
    return weights


def save_pretrained(
    folder: str | Path, state_dict: Mapping[str, torch.Tensor], name: str, config: Mapping[str, Any], card: ModelCard
) -> Path:
    """Write ``folder`` as a Hub repository of model ``name`` (see the module docstring); returns it.

    Upload it with ``huggingface-cli upload owner/name FOLDER``.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_write(folder / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"derain.model": name, "derain.config": json.dumps(dict(config))})
    description = {"library_name": "derain", "architecture": name, "config": dict(config)}
    with atomic_write(folder / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(description, indent=2) + "\n")
    with atomic_write(folder / README_NAME) as tmp:
        tmp.write_text(model_card_text(name, config, card))
    return folder


def card_metadata(name: str, card: ModelCard) -> dict[str, Any]:
    """The model card's YAML header: the Hub's fields for licence, task, test sets and metrics."""
    licence = _HUB_LICENCES.get(card.licence.split(" ")[0].lower())
    meta: dict[str, Any] = {"library_name": "derain", "license": licence or "other"}
    if licence is None:
        meta["license_name"] = "see-model-card"
    meta.update(pipeline_tag="image-to-image", tags=["derain", "deraining", "image-restoration", name])
    if card.paper_results:
        meta["datasets"] = sorted(card.paper_results)
        source = {"name": "the paper (official weights, MATLAB PSNR/SSIM on the Y channel)"}
        if card.official_repo:
            source["url"] = card.official_repo
        meta["model-index"] = [{
            "name": name,
            "results": [
                {
                    "task": {"type": "image-to-image", "name": "Single-image rain removal"},
                    "dataset": {"name": test_set, "type": test_set},
                    "metrics": [
                        {"type": "psnr", "name": "PSNR (Y)", "value": psnr},
                        {"type": "ssim", "name": "SSIM (Y)", "value": ssim},
                    ],
                    "source": source,
                }
                for test_set, (psnr, ssim) in card.paper_results.items()
            ],
        }]
    return meta


def model_card_text(name: str, config: Mapping[str, Any], card: ModelCard) -> str:
    """README.md of a Hub folder: the YAML header of :func:`card_metadata`, then how to use it."""
    header = yaml.safe_dump(card_metadata(name, card), sort_keys=False, allow_unicode=True)
    lines = [
        f"---\n{header}---",
        "",
        f"# {name} for single-image rain removal (derain)",
        "",
        f"Paper: {card.paper}",
        f"Official code: {card.official_repo or 'none published'}",
        f"Licence of the architecture: {card.licence}",
        f"Configuration: `{json.dumps(dict(config))}`",
        "",
        "```python",
        "import derain",
        'model = derain.load_checkpoint("hf-hub:OWNER/NAME")  # this repository',
        'restored = derain.derain(rainy_image, model=model)',
        "```",
        "",
        "or `derain run --weights hf-hub:OWNER/NAME photo.jpg` (`pip install 'derain[hub]'`).",
    ]
    if card.paper_results:
        lines += [
            "",
            "The metrics in the header are the paper's, for the official weights; the weights in "
            "this repository were not scored by the export.",
        ]
    return "\n".join(lines) + "\n"
