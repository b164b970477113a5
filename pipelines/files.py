"""Cheap up-front checks of image and mask files (header and end marker, no full decode).

The header also gives the EXIF orientation tag (JPEG, WebP, and PNG files whose eXIf chunk comes
before the pixel data): images are used the way up every viewer shows them, as
`PIL.ImageOps.exif_transpose` turns them (`pipelines.image_ops.orient_image`).

They run before a `tf.data` pipeline is built, so a missing, empty, truncated, oversized or
non-image file is reported with its path instead of failing later inside a tf.data worker.
File names that are not valid UTF-8 are refused (TensorFlow paths are UTF-8 strings); the
messages show such names as Python bytes literals.
"""
import os
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# Formats `tf.io.decode_image` reads.
DECODABLE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
# Bytes read from the end of a file when looking for its end marker; some writers append padding.
_TAIL_BYTES = 1024
# The EXIF tag holding how the stored pixels are to be turned for display (1: as stored).
ORIENTATION_TAG = 0x0112
# Orientations that swap height and width (a transpose is part of the turn).
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
# Decoding a larger image takes gigabytes of memory, and a corrupt or hostile header can claim
# any size: such files are refused from their header, before anything is decoded.
MAX_IMAGE_PIXELS = 64_000_000


class BadFileError(ValueError):
    """A file that cannot be used; the message names the file and says what is wrong."""


@dataclass(frozen=True)
class FileInfo:
    """What the header of an image file says: `size` is the stored (height, width), `mode` a PIL
    mode, `orientation` the EXIF orientation (1..8, 1 when absent or invalid)."""

    path: str
    format: str
    size: tuple
    mode: str
    orientation: int = 1

    @property
    def displayed_size(self):
        """(height, width) of the image as shown: turned by its orientation tag."""
        return self.size[::-1] if self.orientation in TRANSPOSING_ORIENTATIONS else self.size


def _orientation(image):
    """EXIF orientation of an opened PIL image, without decoding its pixels."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # an eXIf chunk after the pixel data is only found by decoding them all
    try:
        orientation = image.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError, TypeError):  # a malformed EXIF block: shown as stored
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def read_orientation(path):
    """EXIF orientation (1..8) of an image file; 1 for files without one."""
    with Image.open(path) as image:
        return _orientation(image)


def inspect_image_file(path):
    """Reads the header of `path` and checks the end marker of PNG and JPEG files.

    Returns a `FileInfo`; raises `BadFileError` naming the file for a missing, empty,
    unidentifiable, unsupported or truncated file.
    """
    if not is_utf8_path(path):
        raise BadFileError(f"{shown_path(path)}: the file name is not valid UTF-8; rename the file")
    if os.path.isdir(path):
        raise BadFileError(f"{path}: is a directory, not an image file")
    if not os.path.isfile(path):
        raise BadFileError(f"{path}: file not found")
    byte_count = os.path.getsize(path)
    if byte_count == 0:
        raise BadFileError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Sizes are checked below against our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                info = FileInfo(path, image.format, (image.height, image.width), image.mode,
                                _orientation(image))
    except Image.DecompressionBombError:
        raise BadFileError(f"{path}: the header claims more than {MAX_IMAGE_PIXELS:,} pixels; "
                           "a corrupt file, or an image to resize first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadFileError(f"{path}: not a readable image ({error})") from error
    height, width = info.size
    if height * width > MAX_IMAGE_PIXELS:
        raise BadFileError(f"{path}: {width}x{height} pixels is more than the {MAX_IMAGE_PIXELS:,} "
                           "pixels accepted; a corrupt header, or an image to resize first")
    if info.format not in DECODABLE_FORMATS:
        raise BadFileError(f"{path}: unsupported image format {info.format}; "
                           f"use one of {', '.join(DECODABLE_FORMATS)}")
    with open(path, "rb") as handle:
        handle.seek(max(0, byte_count - _TAIL_BYTES))
        tail = handle.read()
    if info.format == "PNG" and b"IEND" not in tail:
        raise BadFileError(f"{path}: truncated PNG (no IEND chunk at the end of the file)")
    if info.format == "JPEG" and b"\xff\xd9" not in tail:
        raise BadFileError(f"{path}: truncated JPEG (no end-of-image marker)")
    return info


def is_utf8_path(path):
    """False for a path whose bytes are not valid UTF-8 (Python holds them as surrogates)."""
    try:
        os.fsdecode(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_path(path):
    """`path` for a message; a name that is not valid UTF-8 is shown as a bytes literal."""
    return os.fsdecode(path) if is_utf8_path(path) else repr(os.fsencode(path))


def list_image_files(directory):
    """Sorted paths of the image files (`IMAGE_SUFFIXES`, not hidden) directly inside `directory`.

    Raises FileNotFoundError for a missing directory and ValueError naming the file for an
    image file name that is not valid UTF-8.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory not found: {directory}")
    files = []
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        # A folder named like an image is listed too: reading it then fails naming it.
        if entry.lower().endswith(IMAGE_SUFFIXES) and not entry.startswith("."):
            if not is_utf8_path(entry):
                raise ValueError(f"{shown_path(path)}: the file name is not valid UTF-8; rename the file")
            files.append(path)
    return files


def list_images_by_stem(directory):
    """Maps file stem -> path for the image files directly inside `directory` (see
    `list_image_files`); two images with one stem are an error."""
    by_stem = {}
    for path in list_image_files(directory):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in by_stem:
            raise ValueError(f"{directory}: two image files share the stem {stem!r} "
                             f"({os.path.basename(by_stem[stem])} and {os.path.basename(path)})")
        by_stem[stem] = path
    return by_stem
