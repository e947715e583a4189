"""Checkpoints by reference: ``resolve_checkpoint(ref, offline) -> Path`` for local paths, Hub files and URLs.

- A local path is returned as given (callers check that it exists, as before).
- ``hf://OWNER/REPO/FILE`` goes through ``huggingface_hub.hf_hub_download``: its cache (``$HF_HUB_CACHE``, default
  ``~/.cache/huggingface/hub``), ``$HF_ENDPOINT``, ``$HF_TOKEN``. A revision (branch, tag or commit) is pinned
  with ``hf://OWNER/REPO@REVISION/FILE`` (the Hub's own URI syntax, ``huggingface_hub.parse_hf_uri``) or with a
  trailing ``hf://OWNER/REPO/FILE@REVISION``; without one it is ``main``.
- ``https://HOST/PATH#sha256=HEX`` (``http://`` too) is downloaded once with ``torch.hub.download_url_to_file``
  into ``$ALIGNVAR_CACHE/downloads/sha256/HEX/NAME`` (default cache ``~/.cache/alignvar-bench``); the file is
  moved into place only after its SHA256 matched, and a mismatch is refused naming both digests. A URL without
  a digest is allowed (release URLs are usually stable), cached under ``downloads/url/<hash of the URL>/NAME``;
  its digest is printed when it is downloaded so that it can be pinned.
- ``pkg://PACKAGE/PATH`` is a file shipped inside an installed package (the demo's small checkpoints in
  ``experiments/checkpoints/``), found with ``importlib.resources``; never downloaded.

Offline mode (``offline=True``; with ``offline=None``: ``$ALIGNVAR_OFFLINE`` or ``$HF_HUB_OFFLINE`` set to 1) never
touches the network: a reference that is not cached yet is a :class:`FetchError` naming it and the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

from harness.core.logconfig import note
from harness.core.progress import bars_shown

log = logging.getLogger(__name__)

OFFLINE_ENV = "ALIGNVAR_OFFLINE"
NETWORK_TIMEOUT_S = 60.0  # per socket operation; urllib (torch.hub, pyiqa) would otherwise wait forever
_TRUE = {"1", "true", "yes", "on"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
OFFLINE_HOW = f"--offline / {OFFLINE_ENV}=1 / HF_HUB_OFFLINE=1"


class FetchError(OSError):
    """A referenced file could not be provided (offline and not cached, not found, digest mismatch, network)."""

    def __str__(self) -> str:
        return str(self.args[0])


def offline_mode() -> bool:
    """Downloads are off when ``$ALIGNVAR_OFFLINE`` or ``$HF_HUB_OFFLINE`` is 1/true/yes/on (read now)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in (OFFLINE_ENV, "HF_HUB_OFFLINE"))


def set_offline() -> None:
    """Turn offline mode on for this process and its children (call before ``huggingface_hub`` is imported)."""
    os.environ[OFFLINE_ENV] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"


def _offline(offline: bool | None) -> bool:
    return offline_mode() if offline is None else bool(offline)


def is_remote(ref: str | os.PathLike | None) -> bool:
    """True for ``hf://`` references and ``http(s)://`` URLs, False for local paths."""
    text = str(ref or "")
    return text.startswith(("hf://", "https://", "http://"))


@contextlib.contextmanager
def network_timeout(seconds: float = NETWORK_TIMEOUT_S) -> Iterator[None]:
    """Give urllib sockets opened without a timeout (torch.hub, pyiqa) one, so a dead network fails."""
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(saved)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- hf://
@dataclass(frozen=True)
class HubFile:
    """One file of a Hugging Face Hub repository."""

    repo_id: str
    filename: str
    revision: str | None = None  # None: the Hub's default branch (main)
    repo_type: str = "model"


def parse_hub_ref(ref: str) -> HubFile:
    """``hf://[TYPE/]OWNER/REPO[@REV]/FILE`` or ``hf://OWNER/REPO/FILE@REV`` -> :class:`HubFile`."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        uri = parse_hf_uri(ref)
    except HfUriError as exc:
        why = str(exc).strip()
        raise ValueError(f"{ref}: not a Hub file reference ({why}); expected hf://OWNER/REPO/FILE[@REVISION]") from None
    path, revision = uri.path_in_repo, uri.revision
    if revision is None and "@" in path:  # the trailing form: hf://OWNER/REPO/FILE@REVISION
        path, revision = path.rsplit("@", 1)
        if not revision:
            raise ValueError(f"{ref}: empty revision after '@'; expected hf://OWNER/REPO/FILE[@REVISION]")
    if uri.type == "bucket" or not path or path.endswith("/"):
        raise ValueError(f"{ref}: names no file of a repository; expected hf://OWNER/REPO/FILE[@REVISION]")
    return HubFile(uri.id, path, revision, uri.type)


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _resolve_hub(ref: str, offline: bool, progress: bool) -> Path:
    from huggingface_hub import errors, hf_hub_download

    hub = parse_hub_ref(ref)
    at = f"revision {hub.revision or 'main'}"
    kwargs = dict(repo_id=hub.repo_id, filename=hub.filename, revision=hub.revision, repo_type=hub.repo_type)
    try:
        if not progress:
            with _hub_progress_off():
                return Path(hf_hub_download(**kwargs, local_files_only=offline))
        return Path(hf_hub_download(**kwargs, local_files_only=offline))
    except errors.LocalEntryNotFoundError as exc:
        if offline:
            raise FetchError(
                f"{ref}: not in the Hugging Face cache ({hub_cache_dir()}) and downloads are off ({OFFLINE_HOW}); "
                f"run once without --offline to cache it, or give the file's local path"
            ) from None
        cause = exc.__cause__ or exc
        raise FetchError(
            f"{ref}: cannot reach {_hub_endpoint()} and the file is not in the Hugging Face cache "
            f"({hub_cache_dir()}): {type(cause).__name__}: {_first_line(cause)}"
        ) from None
    except errors.RevisionNotFoundError:
        raise FetchError(f"{ref}: {at} not found in {hub.repo_id} on {_hub_endpoint()}") from None
    except errors.RemoteEntryNotFoundError:
        raise FetchError(f"{ref}: file {hub.filename} not found in {hub.repo_id} ({at}) on {_hub_endpoint()}") from None
    except errors.RepositoryNotFoundError:
        raise FetchError(
            f"{ref}: repository {hub.repo_id} not found on {_hub_endpoint()} (private or gated repositories need a "
            f"token: HF_TOKEN or `hf auth login`)"
        ) from None
    except (errors.HfHubHTTPError, OSError) as exc:
        raise FetchError(f"{ref}: download failed: {type(exc).__name__}: {_first_line(exc)}") from None


@contextlib.contextmanager
def _hub_progress_off() -> Iterator[None]:
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


# ----------------------------------------------------------------------------------------------- URLs
@dataclass(frozen=True)
class UrlFile:
    url: str  # without the #sha256= fragment
    sha256: str | None
    name: str


def parse_url_ref(ref: str) -> UrlFile:
    """``https://HOST/PATH[#sha256=HEX]`` -> :class:`UrlFile` (lower-case hex digest of 64 characters)."""
    url, fragment = urldefrag(ref)
    digest = None
    if fragment:
        key, _, value = fragment.partition("=")
        if key != "sha256" or not _SHA256.fullmatch(value.lower()):
            raise ValueError(f"{ref}: the URL fragment must be #sha256=<64 hex digits>, got #{fragment}")
        digest = value.lower()
    parts = urlsplit(url)
    name = Path(parts.path).name
    if parts.scheme not in ("http", "https") or not parts.netloc or not name:
        raise ValueError(f"{ref}: expected http(s)://HOST/PATH/FILE[#sha256=HEX]")
    return UrlFile(url, digest, name)


def download_root() -> Path:
    """``$ALIGNVAR_CACHE/downloads`` (default ``~/.cache/alignvar-bench/downloads``)."""
    env = os.environ.get("ALIGNVAR_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "alignvar-bench") / "downloads"


def url_cache_path(file: UrlFile) -> Path:
    """Where a URL's file is cached: by its digest when pinned, else by a hash of the URL."""
    if file.sha256 is not None:
        return download_root() / "sha256" / file.sha256 / file.name
    return download_root() / "url" / hashlib.sha256(file.url.encode()).hexdigest()[:16] / file.name


def _resolve_url(ref: str, offline: bool, progress: bool) -> Path:
    from torch.hub import download_url_to_file

    from harness.core.atomic import atomic_path

    file = parse_url_ref(ref)
    target = url_cache_path(file)
    if target.is_file():
        return target  # written only after its digest was checked (or, unpinned, recorded)
    if offline:
        raise FetchError(
            f"{ref}: not in the download cache ({target}) and downloads are off ({OFFLINE_HOW}); run once without "
            f"--offline, copy the file to {target}, or give its local path"
        )
    try:
        with network_timeout(), atomic_path(target) as tmp:
            download_url_to_file(file.url, str(tmp), progress=progress)
            digest = sha256_of(tmp)
            if file.sha256 is not None and digest != file.sha256:
                raise FetchError(
                    f"{ref}: SHA256 mismatch: expected {file.sha256}, downloaded file has {digest}; refusing it "
                    f"(the file at the URL changed, or the pinned digest is wrong)"
                )
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, timeouts, disk errors: one clear message
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # only if empty: nothing of a failed download stays behind
        if isinstance(exc, FetchError):
            raise
        raise FetchError(f"{ref}: download failed: {type(exc).__name__}: {_first_line(exc)}") from None
    if file.sha256 is None:
        note(
            log,
            "%s has no #sha256= pin; downloaded file sha256=%s (%s); pin it with %s#sha256=%s",
            file.url, digest, target, file.url, digest,
        )  # fmt: skip
    return target


# ----------------------------------------------------------------------------------------------- entry point
def resolve_checkpoint(ref: str | os.PathLike, offline: bool | None = None, *, progress: bool = True) -> Path:
    """The local file of a checkpoint reference (see the module docstring); downloads unless offline.

    Raises ValueError for a malformed reference and :class:`FetchError` when the file cannot be provided. A
    download's progress bar is drawn on a terminal only (``harness.core.progress.bars_shown``).
    """
    text = str(ref)
    progress = bars_shown(progress)
    if text.startswith("hf://"):
        return _resolve_hub(text, _offline(offline), progress)
    if text.startswith(("https://", "http://")):
        return _resolve_url(text, _offline(offline), progress)
    if text.startswith(PKG_SCHEME):
        return package_file(text)
    return Path(text).expanduser()


PKG_SCHEME = "pkg://"


def package_file(ref: str) -> Path:
    """``pkg://PACKAGE/PATH``: a file shipped inside an installed package (``importlib.resources``), e.g. the
    demo's checkpoints ``pkg://experiments/checkpoints/tiny/varsr.safetensors``; works from any directory."""
    import importlib.resources

    package, _, rel = ref[len(PKG_SCHEME) :].partition("/")
    if not package or not rel:
        raise ValueError(f"{ref}: expected pkg://PACKAGE/PATH (a file inside an installed package)")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise FetchError(f"{ref}: package {package!r} is not installed") from None
    path = Path(str(root.joinpath(rel)))
    if not path.is_file():
        raise FetchError(f"{ref}: no file {rel!r} in package {package!r} ({path})")
    return path


def resolve_optional(ref: str | None, offline: bool | None = None) -> str | None:
    """:func:`resolve_checkpoint` for an optional config value: None stays None, a result is a string."""
    return None if ref is None or str(ref) == "" else str(resolve_checkpoint(ref, offline))


def cached_checkpoint(ref: str | os.PathLike) -> Path | None:
    """The cached file of a remote reference, without any network access (None when not cached)."""
    try:
        return resolve_checkpoint(ref, offline=True, progress=False)
    except FetchError:
        return None


def check_ref(ref: str | os.PathLike | None) -> None:
    """Raise ValueError for a malformed ``hf://`` / ``http(s)://`` reference (config validation; no network)."""
    text = str(ref or "")
    if text.startswith("hf://"):
        parse_hub_ref(text)
    elif is_remote(text):
        parse_url_ref(text)


def cache_path(ref: str) -> Path:
    """Where a remote reference is (or would be) cached: the Hugging Face cache, or the URL's cache file."""
    return hub_cache_dir() if str(ref).startswith("hf://") else url_cache_path(parse_url_ref(str(ref)))


def cache_location(ref: str) -> str:
    """:func:`cache_path` in words, for messages."""
    path = cache_path(ref)
    return f"the Hugging Face cache {path}" if str(ref).startswith("hf://") else str(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
