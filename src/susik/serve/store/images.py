"""Content-addressed image files: the name is the sha256 of the bytes, so re-uploads cost no space."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_image(folder: Path, data: bytes, image_format: str, digest: str) -> str:
    """Write the bytes once under `ab/abcdef….ext` and return that path relative to `folder`."""
    relative = Path(digest[:2]) / f"{digest}{EXTENSIONS.get(image_format, '.bin')}"
    target = folder / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a crash leaves a stray temp file, never a truncated image under the real name.
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    return relative.as_posix()
