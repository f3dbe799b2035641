"""The clean-photo corpus: 72 real photographs from seven Debian packages.

The public deraining sets cannot be downloaded everywhere, so derain synthesises its pairs from
real clean photos. ``clean_photos.tsv`` (shipped with the package) names each photo by package,
version, path and sha256, with the licence stated in the package's ``copyright`` file.
``build_corpus`` fetches the packages with ``apt-get download`` (nothing is installed), unpacks
them with ``dpkg-deb -x``, refuses any photo whose sha256 differs, downsamples about 2x (most are
JPEGs at quality 70-90; halving hides the blocks) and splits train/val/test by photo.
Any folder of your own clean photos can replace the corpus in every command.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from PIL import Image

from ..files import sha256_of

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Photo:
    package: str
    version: str
    path: str  # inside the package
    width: int
    height: int
    bytes: int
    sha256: str
    licence: str

    @property
    def name(self) -> str:
        """Output stem: the file stem, or the wallpaper folder for KDE's ``<Name>/contents/images/WxH.jpg``."""
        parts = Path(self.path).parts
        stem = Path(self.path).stem
        return parts[-4] if re.fullmatch(r"\d+x\d+", stem) and "contents" in parts else stem


class CorpusError(RuntimeError):
    """The corpus cannot be built: a missing tool, a failed download, a photo with a wrong sha256."""


def read_manifest(path: str | Path | None = None) -> list[Photo]:
    """The photos of ``clean_photos.tsv`` (the packaged one unless ``path`` is given)."""
    source = Path(path) if path else resources.files("derain.data") / "clean_photos.tsv"
    with source.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    photos = [
        Photo(r["package"], r["version"], r["path_in_package"], int(r["width"]), int(r["height"]), int(r["bytes"]), r["sha256"], r["licence"])
        for r in rows
    ]
    names = [p.name for p in photos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CorpusError(f"{source}: several photos get the name(s) {duplicates}")
    return photos


def split_of(photos: list[Photo]) -> dict[str, str]:
    """``{name: split}``: photos ranked by sha256; every 9th from rank 0 is test, from 1 val.

    A fixed rule on content hashes: 8 test, 8 val and 56 train photos, independent of the
    manifest's order and stable when photos are added elsewhere in the ranking.
    """
    ranked = sorted(photos, key=lambda p: p.sha256)
    return {p.name: ("test", "val", *["train"] * 7)[rank % 9] for rank, p in enumerate(ranked)}


def _require_tools() -> None:
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise CorpusError(
            f"building the photo corpus needs a Debian-family system with {' and '.join(missing)} "
            "on PATH; elsewhere use any folder of your own clean photos instead"
        )


def download_packages(photos: list[Photo], folder: Path) -> list[Path]:
    """``apt-get download`` each package at its manifest version into ``folder`` (no install)."""
    _require_tools()
    wanted = sorted({f"{p.package}={p.version}" for p in photos})
    result = subprocess.run(["apt-get", "download", *wanted], cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        raise CorpusError(f"apt-get download {' '.join(wanted)} failed (run 'apt-get update' first?):\n{result.stderr.strip()}")
    return sorted(folder.glob("*.deb"))


def unpack(debs: list[Path], root: Path) -> None:
    _require_tools()
    for deb in debs:
        result = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
        if result.returncode != 0:
            raise CorpusError(f"dpkg-deb -x {deb} failed: {result.stderr.strip()}")


def downsample(image: Image.Image) -> Image.Image:
    """Half size (Lanczos), in RGB."""
    image = image.convert("RGB")
    return image.resize((round(image.width / 2), round(image.height / 2)), Image.Resampling.LANCZOS)


def build_corpus(out: str | Path, *, debs: str | Path | None = None, manifest: str | Path | None = None) -> dict[str, int]:
    """Build ``out/{train,val,test}/<name>.png`` and ``out/LICENSES.tsv``; returns photos per split.

    ``debs``: a folder that already holds the ``.deb`` files (skips the download). The corpus is
    built in a temporary folder beside ``out`` and renamed at the end.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; choose a new folder")
    photos = read_manifest(manifest)
    splits = split_of(photos)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
            scratch = Path(scratch)
            packages = sorted(Path(debs).glob("*.deb")) if debs else download_packages(photos, scratch)
            unpack(packages, scratch / "root")
            for split in SPLITS:
                (staging / split).mkdir()
            for photo in photos:
                source = scratch / "root" / photo.path.lstrip("/")
                if not source.is_file():
                    raise CorpusError(f"{photo.path} is missing from {photo.package} {photo.version}")
                digest = sha256_of(source)
                if digest != photo.sha256:
                    raise CorpusError(f"{photo.path} ({photo.package}): sha256 {digest} does not match the manifest's {photo.sha256}; refused")
                with Image.open(source) as image:
                    downsample(image).save(staging / splits[photo.name] / f"{photo.name}.png")
            (staging / "copyright").mkdir()
            for package in sorted({p.package for p in photos}):
                shutil.copy(scratch / "root" / "usr/share/doc" / package / "copyright", staging / "copyright" / package)
        _write_licences(staging / "LICENSES.tsv", photos, splits)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {split: sum(1 for s in splits.values() if s == split) for split in SPLITS}


def _write_licences(path: Path, photos: list[Photo], splits: dict[str, str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "licence", "package", "version", "path_in_package", "sha256", "copyright"])
        for p in photos:
            writer.writerow([f"{splits[p.name]}/{p.name}.png", p.licence, p.package, p.version, p.path, p.sha256, f"copyright/{p.package}"])
