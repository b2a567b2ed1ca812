"""Downloading (urllib, with a tqdm progress bar) and checksums for the data set readers."""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request

__all__ = ["download_url", "file_digest", "bytes_digest"]

_CHUNK = 1 << 16


def bytes_digest(content, algorithm="sha256"):
    """Hex digest of in-memory bytes."""
    return hashlib.new(algorithm, content).hexdigest()


def file_digest(path, algorithm="md5"):
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total, description, enabled):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: download silently without it
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description, disable=not enabled)


def download_url(url, path, md5=None, progress=True, timeout=30):
    """Download ``url`` to ``path`` (via ``path + '.part'``), checking its MD5 when given."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".part"
    request = urllib.request.Request(url, headers={"User-Agent": "cnnkit"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(partial, "wb") as out:
            length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            bar = _progress_bar(int(length) if length else None, os.path.basename(path), progress)
            try:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
        if md5 is not None:
            actual = file_digest(partial, "md5")
            if actual != md5:
                raise ValueError(f"downloaded {url} has MD5 {actual}, expected {md5} (corrupt or changed file)")
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def download_first(urls, path, md5=None, progress=True):
    """Try each URL in turn; raise ``RuntimeError`` listing every failure if none works."""
    failures = []
    for url in urls:
        try:
            return download_url(url, path, md5=md5, progress=progress)
        except (urllib.error.URLError, OSError, ValueError) as error:
            failures.append(f"{url}: {getattr(error, 'reason', error)}")
    raise RuntimeError("could not download " + os.path.basename(path) + ":\n  " + "\n  ".join(failures))
