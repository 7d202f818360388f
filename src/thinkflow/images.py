"""Untrusted images, opened in one place: references stay inside their root, decoding stays bounded.

Every image that comes from outside (dataset sources, built datasets, evaluation benchmarks, reward inputs) goes
through this module:

* `resolve` turns a reference into a file *inside* its root. Rejected, with a reason naming the reference:
  ``..`` that leaves the root, an absolute path outside it, a symlink whose target is outside it, the same
  tricks written URL-encoded (``%2e%2e%2f``), NUL bytes. A leading ``/`` on a path that is not inside the root is
  read as relative to the root (the published ALLaVA paths are written ``/allava_laion/…``), so ``/etc/passwd``
  names ``ROOT/etc/passwd``, never the system file. Checks are lexical first (nothing outside the root is ever
  opened or listed), then on the real path (symlinks resolved) before the file is opened.
* `read_file` reads at most `ImageLimits.max_bytes` of a regular file (a FIFO or device is refused, not opened).
* `probe` / `decode` check the header first: a picture of more than `ImageLimits.max_pixels` pixels (a
  decompression bomb: a 190 KB PNG of 40000×40000) is refused before a single pixel is decoded; a 0-byte file,
  a file that is no image and a truncated image each get their own readable reason.

All of these raise `ImageError` (a `ValueError`): callers turn it into one rejected record.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field

from thinkflow import storage
from thinkflow.errors import ThinkFlowError

# Real benchmark and VLAA-Thinking images are at most a few megapixels (the largest MathVista/ChartQA pictures
# are ~4000×3000 = 12 Mpx); the default is PIL's own warning threshold (89.5 Mpx: 256 MiB as RGB), 7× that.
DEFAULT_MAX_PIXELS = 89_478_485
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class ImageLimits(BaseModel):
    """Bounds on one untrusted image."""

    model_config = ConfigDict(extra="forbid")

    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        description="Largest width×height decoded; bigger images (decompression bombs) are rejected from the header.",
    )
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1, description="Largest image file read, in bytes.")


DEFAULT_LIMITS = ImageLimits()


class ImageError(ThinkFlowError, ValueError):
    """An image reference or file that is refused; the message says which one and why."""


@dataclass(frozen=True)
class ImageInfo:
    """What `probe` learned from a good image."""

    format: str
    width: int
    height: int


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def resolve(ref: str, root: str | os.PathLike[str]) -> Path:
    """The real path of image ``ref`` inside ``root``; `ImageError` when it would lead outside (or is not there).

    The returned path has its symlinks resolved and is a regular file inside ``root``'s real path.
    """
    if not ref:
        raise ImageError("empty image reference")
    if "\x00" in ref:
        raise ImageError(f"image reference {ref!r} contains a NUL byte")
    decoded = unquote(ref)
    if decoded != ref and (
        "\x00" in decoded
        or storage.climbs_out(Path(decoded.lstrip("/")).parts)
        or decoded.startswith("/") != ref.startswith("/")
    ):
        raise ImageError(f"image reference {ref!r} leaves the image root once URL-decoded ({decoded!r})")
    base = Path(os.path.abspath(root))
    path = Path(ref)
    outside = False
    if path.is_absolute():
        norm = Path(os.path.normpath(path))
        if norm == base or base in norm.parents:
            rel_parts = norm.relative_to(base).parts
        else:  # ALLaVA's `/allava_laion/…`: relative to the root, whatever the leading slash says
            rel_parts = Path(ref.lstrip("/")).parts
            outside = True
    else:
        rel_parts = path.parts
    if storage.climbs_out(rel_parts):
        raise ImageError(f"image reference {ref!r} leaves the image root with '..'")
    candidate = Path(os.path.normpath(base.joinpath(*rel_parts))) if rel_parts else base
    real_base = base.resolve()
    real = candidate.resolve()  # follows symlinks; stats only paths under the root and the links' targets
    if real != real_base and real_base not in real.parents:
        raise ImageError(f"image reference {ref!r} is a symlink to {real}, outside the image root {real_base}")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        if outside:
            raise ImageError(
                f"image {ref!r} is an absolute path outside the image root {base} (read relative to the root, "
                f"{candidate} does not exist)"
            ) from None
        raise ImageError(f"image not found: {ref!r} (looked for {candidate})") from None
    except OSError as exc:
        raise ImageError(f"cannot read image {ref!r}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ImageError(f"image {ref!r} is {what} ({candidate})")
    return real


def read_file(path: str | os.PathLike[str], *, limits: ImageLimits = DEFAULT_LIMITS, what: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``limits.max_bytes`` (a FIFO/device is refused without opening it)."""
    name = what or str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(f"image not found: {name}") from None
    except OSError as exc:
        raise ImageError(f"cannot read image {name}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"image {name} is not a regular file")
    if st.st_size > limits.max_bytes:
        raise ImageError(f"image {name} is {_size(st.st_size)}, over the limit of {_size(limits.max_bytes)}")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"cannot read image {name}: {exc.strerror or exc}") from None
    if len(data) > limits.max_bytes:
        raise ImageError(f"image {name} grew past the limit of {_size(limits.max_bytes)} while being read")
    return data


def _open(data: bytes, what: str, limits: ImageLimits) -> Any:
    """A PIL image opened from ``data`` with its header checked (nothing decoded yet)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{what}: empty file (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageError(f"{what}: {_size(len(data))}, over the limit of {_size(limits.max_bytes)}")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{what}: not an image ({_size(len(data))} in no format PIL reads)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{what}: decompression bomb refused ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{what}: corrupt image header ({exc})") from None
    fmt = im.format or "image"
    width, height = int(im.width), int(im.height)
    if width * height > limits.max_pixels:
        im.close()
        raise ImageError(
            f"{what}: {fmt} of {width}×{height} = {width * height:,} pixels is over the limit of "
            f"{limits.max_pixels:,} (a decompression bomb?) — not decoded"
        )
    return im


def _load(im: Any, what: str) -> None:
    from PIL import Image

    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{what}: decompression bomb refused ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        detail = str(exc) or type(exc).__name__
        raise ImageError(
            f"{what}: truncated or corrupt {im.format or 'image'} of {im.width}×{im.height} ({detail})"
        ) from None


def probe(data: bytes, *, what: str = "image", limits: ImageLimits = DEFAULT_LIMITS) -> ImageInfo:
    """Check that ``data`` is a whole image within the limits (decoded once, then dropped)."""
    im = _open(data, what, limits)
    with im:
        _load(im, what)
        return ImageInfo(im.format or "PNG", int(im.width), int(im.height))


def decode(data: bytes, *, what: str = "image", limits: ImageLimits = DEFAULT_LIMITS, mode: str = "RGB") -> Any:
    """A PIL image (``mode``) decoded from ``data`` within the limits."""
    im = _open(data, what, limits)
    with im:
        _load(im, what)
        return im.convert(mode) if mode else im.copy()


def header_size(data: bytes, *, what: str = "image", limits: ImageLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """Width and height from the header only (no pixel decoded)."""
    im = _open(data, what, limits)
    with im:
        return int(im.width), int(im.height)


def check_pil(image: Any, *, what: str = "image", limits: ImageLimits = DEFAULT_LIMITS) -> Any:
    """An in-memory PIL image, refused when it holds more than ``limits.max_pixels`` pixels."""
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(f"{what}: {width}×{height} pixels is over the limit of {limits.max_pixels:,}")
    return image


def load(ref: str, root: str | os.PathLike[str], *, limits: ImageLimits = DEFAULT_LIMITS, mode: str = "RGB") -> Any:
    """The decoded image of reference ``ref`` inside ``root`` (`resolve` + `read_file` + `decode`)."""
    path = resolve(ref, root)
    return decode(read_file(path, limits=limits, what=ref), what=f"image {ref}", limits=limits, mode=mode)
