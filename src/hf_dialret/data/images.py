"""Safe resolution and checking of image files referenced by dataset records.

Images are never decoded here: a reader resolves the reference to a file strictly inside ``image_dir`` and checks its
header (format and size against a pixel limit, so a decompression bomb is rejected before anything allocates its
pixels). Decoding happens lazily when a row is accessed, through the ``datasets.Image`` feature.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image

from .errors import DataFormatError, MissingImageError

#: Default pixel limit (width x height). Open Images photos are at most ~20 MP; 64 MP leaves room for real photos and
#: stays below PIL's own bomb threshold, so our clear error fires first.
DEFAULT_MAX_PIXELS = 64_000_000

PHOTOCHAT_PHOTOS_HELP = (
    "PhotoChat photos are not shipped with the dialogues. Download them from Open Images: write one photo_id per line "
    "(e.g. 'train/3b4a85bac6ead3c8') to a list file and run the official Open Images downloader "
    "(https://raw.githubusercontent.com/openimages/dataset/master/downloader.py <list> --download_folder <dir>), "
    "then pass image_dir=<dir> to load_photochat; files are looked up as <dir>/<subset>/<id>.jpg or <dir>/<id>.jpg."
)


def safe_join(image_dir: str | os.PathLike, reference: str, *, file: str | None = None, record: int | None = None,
              field: str | None = None) -> Path:
    """Join ``reference`` onto ``image_dir``, refusing anything that would leave the directory.

    Absolute paths, ``..`` components, drive letters, NUL bytes and symlinks resolving outside ``image_dir`` are
    rejected with a :class:`DataFormatError`: a record must not make the reader open arbitrary files.
    """
    def escape(why: str) -> DataFormatError:
        return DataFormatError(f"image reference {reference!r} escapes image_dir ({why})", file, record, field)

    if not reference or "\x00" in reference:
        raise escape("empty or NUL byte")
    parts = reference.replace("\\", "/").split("/")
    if reference.startswith(("/", "\\")) or os.path.isabs(reference) or (len(reference) > 1 and reference[1] == ":"):
        raise escape("absolute path")
    if ".." in parts:
        raise escape("'..' component")
    root = Path(image_dir).resolve()
    path = (root / Path(*[p for p in parts if p not in ("", ".")])).resolve()
    if path != root and root not in path.parents:
        raise escape("resolves outside through a link")
    return path


def check_image_file(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, *, file: str | None = None,
                     record: int | None = None, field: str | None = None) -> None:
    """Check that ``path`` is a readable image of at most ``max_pixels`` pixels.

    Reads the header, then decodes a reduced-size draft (JPEG decodes at 1/8 scale, cheap) so that truncated or
    corrupt pixel data is caught at load time rather than in the middle of training.
    """
    if not path.is_file():
        raise MissingImageError(f"image file not found: {path}", file, record, field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise DataFormatError(
                        f"image {path} has {width}x{height} = {width * height} pixels, over the limit of "
                        f"{max_pixels} (decompression bomb guard; raise max_pixels if the image is genuine)",
                        file, record, field)
                image.draft("RGB", (64, 64))
                image.load()
    except DataFormatError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataFormatError(f"image {path} is over PIL's decompression-bomb limit: {error}", file, record,
                              field) from error
    except (OSError, SyntaxError, ValueError) as error:  # PIL reports corrupt data with all three
        raise DataFormatError(f"image {path} is corrupt or not an image: {error}", file, record, field) from error


def resolve_image(image_dir: str | os.PathLike, candidates: list[str], max_pixels: int = DEFAULT_MAX_PIXELS,
                  verify: bool = True, *, file: str | None = None, record: int | None = None,
                  field: str | None = None) -> str:
    """Return the absolute path of the first existing of ``candidates`` (relative names) inside ``image_dir``.

    Absolute paths are returned because ``datasets`` resolves relative image paths against the working directory at
    decode time. Every candidate is checked for escapes before any is looked up.
    """
    paths = [safe_join(image_dir, name, file=file, record=record, field=field) for name in candidates]
    for path in paths:
        if path.is_file():
            if verify:
                check_image_file(path, max_pixels, file=file, record=record, field=field)
            return str(path)
    tried = ", ".join(str(p) for p in paths)
    raise MissingImageError(f"image not found (tried {tried})", file, record, field)


def photochat_photo_candidates(photo_id: str | None, photo_url: str | None) -> list[str]:
    """File names tried for a PhotoChat photo, in order.

    With ``photo_id = "<subset>/<id>"``: ``<subset>/<id>.jpg`` (Open Images downloader layout), then ``<id>.jpg``
    (flat layout, as PaCE stores them). The oldest PhotoChat variant has no ``photo_id``; its photo is then looked up
    by the file name of ``photo_url`` (``<flickr name>.jpg``).
    """
    if photo_id:
        return [f"{photo_id}.jpg", f"{photo_id.rsplit('/', 1)[-1]}.jpg"] if "/" in photo_id else [f"{photo_id}.jpg"]
    if photo_url:
        return [photo_url.rstrip("/").rsplit("/", 1)[-1]]
    return []


def missing_image_message(dialogue_id: str, where: str) -> str:
    """The error text when an example needs an image that was not loaded (e.g. no ``image_dir`` was given)."""
    message = f"dialogue {dialogue_id!r}: {where} has no image data (the dataset was loaded without its images)."
    if dialogue_id.startswith("photochat/"):
        message += " " + PHOTOCHAT_PHOTOS_HELP
    return message
