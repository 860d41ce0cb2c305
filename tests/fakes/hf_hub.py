"""A loopback Hugging Face Hub for tests: the real ``huggingface_hub`` downloads from it over HTTP.

It answers what ``hf_hub_download``, ``snapshot_download``, ``HfApi`` and ``hf download`` call, shaped like
huggingface.co:

- ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``. A regular (git) file answers ``307`` to the
  commit-pinned ``/api/resolve-cache/models/{repo}/{commit}/{path}``, which serves it with ``X-Repo-Commit``,
  ``ETag`` (its git blob id) and ``Content-Length``. An LFS file (``*.safetensors`` and the other weight
  patterns of the Hub's default ``.gitattributes``) answers ``302`` to a second loopback origin standing for
  the CDN, with ``X-Repo-Commit``, ``X-Linked-Etag`` (its sha256) and ``X-Linked-Size``. Being another
  origin, the client neither follows that redirect on ``HEAD`` nor sends its token there.
- File bodies honour ``Range`` (``206`` with ``Content-Range``; ``416`` when unsatisfiable).
- ``GET /api/models/{repo}[/revision/{revision}]`` (``sha``, ``siblings``, with sizes and LFS data when
  ``blobs=true``), ``GET /api/models/{repo}/tree/{revision}[/{path}]`` (``recursive``, ``expand``) and
  ``POST /api/models/{repo}/paths-info/{revision}``.
- Errors carry the Hub's ``X-Error-Code``/``X-Error-Message`` headers and an ``{"error": ...}`` body:
  ``RepoNotFound`` (``401`` without a token, as the Hub answers so as not to reveal private repositories;
  ``404`` with one), ``RevisionNotFound``, ``EntryNotFound`` (with ``X-Repo-Commit``, which the client uses
  to remember the absence), and ``GatedRepo`` for a gated repository's files (``401`` without a token,
  ``403`` with one it does not grant). The API answers for gated repositories without a token, like the Hub.

It never sends Xet headers (``X-Xet-Hash``) or ``xetHash`` fields, so the client downloads over plain HTTP
whether or not ``hf_xet`` is installed. Tests make file bodies misbehave with :meth:`FakeHub.fault` (cut
the connection after some bytes, send slowly) and read :attr:`FakeHub.requests`. :func:`use_fake_hub`
points ``huggingface_hub`` at it, in this process and in subprocesses.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

#: What the Hub's default ``.gitattributes`` stores with LFS (the part that matters for model weights).
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.ckpt", "*.pt", "*.pth", "*.gguf", "*.onnx", "*.msgpack", "*.h5")
#: The token :class:`FakeHub` grants gated repositories to, unless told otherwise.
HUB_TOKEN = "hf_fake_token_123"
COMMIT_DATE = "2025-01-01T00:00:00.000Z"

Origin = Literal["hub", "cdn"]

RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
RESOLVE_CACHE = re.compile(r"^/api/resolve-cache/models/(?P<repo>[^/]+/[^/]+)/(?P<revision>[^/]+)/(?P<path>.+)$")
MODEL_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<revision>[^/]+))?$")
TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<revision>[^/]+)(?:/(?P<path>.+))?$")
PATHS_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<revision>[^/]+)$")
CDN_BLOB = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/(?P<sha256>[0-9a-f]{64})$")
RANGE = re.compile(r"^bytes=(?P<start>\d*)-(?P<end>\d*)$")


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's content: a regular file's ``ETag`` and blob name in the cache."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    """An LFS file's id: its ``X-Linked-Etag`` and blob name in the cache."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FakeRepo:
    files: Mapping[str, bytes]
    #: The commit ``main`` points at; derived from the files when not given.
    sha: str | None = None
    gated: bool = False
    lfs_patterns: tuple[str, ...] = LFS_PATTERNS

    @property
    def commit(self) -> str:
        if self.sha is not None:
            return self.sha
        digest = hashlib.sha1()
        for path in sorted(self.files):
            digest.update(f"{path}\0{git_blob_id(self.files[path])}\n".encode())
        return digest.hexdigest()

    def is_lfs(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern) for pattern in self.lfs_patterns)

    def folders(self) -> set[str]:
        return {path.rsplit("/", depth)[0] for path in self.files for depth in range(1, path.count("/") + 1)}


@dataclass(frozen=True)
class BodyFault:
    """How the next ``times`` GETs of a file's body (from the hub or the CDN) misbehave."""

    times: int = 1
    #: Send this many bytes of what the request asked for, then close the connection.
    cut_after: int | None = None
    #: Send the body in chunks of ``chunk_size`` bytes, waiting this long before each one.
    chunk_delay_s: float = 0.0
    chunk_size: int = 1024


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    origin: Origin
    #: The decoded path, without the query.
    path: str
    query: dict[str, str]
    #: A form body (``paths-info``).
    form: dict[str, list[str]]
    range: str | None
    authorization: str | None

    @property
    def token(self) -> str | None:
        return self.authorization.removeprefix("Bearer ") if self.authorization else None


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    #: The file whose content ``body`` is, as (repo id, path): what faults apply to.
    file: tuple[str, str] | None = None


_Route = Callable[[re.Match[str], RecordedRequest], _Answer]


@dataclass
class _Fault:
    fault: BodyFault
    remaining: int


@dataclass
class _State:
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: dict[tuple[str, str], _Fault] = field(default_factory=dict)


class FakeHub:
    """``with FakeHub({"org/name": {"config.json": b"{}"}}) as hub: ... hub.url ...``

    ``repos`` maps repository ids to their files (or to a :class:`FakeRepo`, for a commit sha or gating);
    ``tokens`` are the tokens that may download gated repositories' files.
    """

    def __init__(
        self, repos: Mapping[str, FakeRepo | Mapping[str, bytes]], tokens: frozenset[str] = frozenset({HUB_TOKEN})
    ) -> None:
        self.repos = {
            repo_id: repo if isinstance(repo, FakeRepo) else FakeRepo(repo) for repo_id, repo in repos.items()
        }
        self.tokens = tokens
        #: Where the CDN finds an LFS file: (repo id, sha256) -> path.
        self._blobs = {
            (repo_id, sha256(data)): path
            for repo_id, repo in self.repos.items()
            for path, data in repo.files.items()
            if repo.is_lfs(path)
        }
        self._routes: dict[Origin, list[tuple[tuple[str, ...], re.Pattern[str], _Route]]] = {
            "cdn": [(("GET", "HEAD"), CDN_BLOB, self._cdn_blob)],
            "hub": [
                (("GET", "HEAD"), RESOLVE, self._resolve),
                (("GET", "HEAD"), RESOLVE_CACHE, self._resolve_cache),
                (("GET",), MODEL_INFO, self._model_info),
                (("GET",), TREE, self._tree),
                (("POST",), PATHS_INFO, self._paths_info),
            ],
        }
        self._state = _State()
        self._lock = threading.Lock()
        self._servers = {origin: _server(self, origin) for origin in ("hub", "cdn")}
        # A short poll interval keeps shutdown (which waits for the next poll) quick between tests.
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=f"fake-hf-{origin}")
            for origin, server in self._servers.items()
        ]
        for thread in self._threads:
            thread.daemon = True

    @property
    def url(self) -> str:
        """The endpoint to give ``huggingface_hub`` (``HF_ENDPOINT``)."""
        return self._url("hub")

    def _url(self, origin: Origin) -> str:
        host, port = self._servers[origin].server_address[:2]
        return f"http://{host!s}:{port}"

    def fault(self, repo_id: str, path: str, fault: BodyFault) -> None:
        """Make the next ``fault.times`` GETs of ``path``'s content misbehave as ``fault`` says."""
        with self._lock:
            self._state.faults[(repo_id, path)] = _Fault(fault, fault.times)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def content_gets(self, repo_id: str, path: str) -> list[RecordedRequest]:
        """The GETs that fetched ``path``'s content (not those answered with a redirect), in order."""
        repo = self.repos[repo_id]
        gets = [request for request in self.requests if request.method == "GET"]
        if repo.is_lfs(path):
            blob = f"/repos/{repo_id}/{sha256(repo.files[path])}"
            return [request for request in gets if request.origin == "cdn" and request.path == blob]
        pinned = f"/api/resolve-cache/models/{repo_id}/{repo.commit}/{path}"
        return [request for request in gets if request.origin == "hub" and request.path == pinned]

    def __enter__(self) -> FakeHub:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    # -- request handling (runs on the servers' threads) --------------------------------------------

    def _answer(self, raw_path: str, request: RecordedRequest) -> _Answer:
        with self._lock:
            self._state.requests.append(request)
        for methods, pattern, route in self._routes[request.origin]:
            match = pattern.match(raw_path)
            if match is not None and request.method in methods:
                return _ranged(route(match, request), request.range)
        return _error(404, None, "Sorry, we can't find the page you are looking for.")

    def _take_fault(self, file: tuple[str, str]) -> BodyFault | None:
        with self._lock:
            state = self._state.faults.get(file)
            if state is None or state.remaining <= 0:
                return None
            state.remaining -= 1
            return state.fault

    def _find(self, repo_id: str, revision: str | None, request: RecordedRequest) -> FakeRepo | _Answer:
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404 if request.token else 401, "RepoNotFound", "Repository not found")
        if revision is not None and unquote(revision) not in ("main", repo.commit):
            return _error(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}")
        return repo

    def _resolve(self, route: re.Match[str], request: RecordedRequest) -> _Answer:
        return self._file(route, request, pinned=False)

    def _resolve_cache(self, route: re.Match[str], request: RecordedRequest) -> _Answer:
        return self._file(route, request, pinned=True)

    def _file(self, route: re.Match[str], request: RecordedRequest, *, pinned: bool) -> _Answer:
        repo_id, path = route["repo"], unquote(route["path"])
        repo = self._find(repo_id, route["revision"], request)
        if isinstance(repo, _Answer):
            return repo
        commit = {"X-Repo-Commit": repo.commit}
        if repo.gated and request.token not in self.tokens:
            return _gated(repo_id, request.token, commit)
        if path not in repo.files:
            return _error(404, "EntryNotFound", "Entry not found", commit)
        data = repo.files[path]
        if repo.is_lfs(path):
            return _Answer(
                302,
                {
                    **commit,
                    "Location": f"{self._url('cdn')}/repos/{repo_id}/{sha256(data)}",
                    "ETag": f'"{git_blob_id(_lfs_pointer(data))}"',
                    "X-Linked-Etag": f'"{sha256(data)}"',
                    "X-Linked-Size": str(len(data)),
                },
            )
        etag = f'"{git_blob_id(data)}"'
        if not pinned:
            location = f"/api/resolve-cache/models/{repo_id}/{repo.commit}/{quote(path)}?etag={quote(etag)}"
            return _Answer(307, {**commit, "Location": location, "ETag": etag})
        return _content(repo_id, path, data, {**commit, "ETag": etag})

    def _cdn_blob(self, route: re.Match[str], request: RecordedRequest) -> _Answer:
        repo_id = route["repo"]
        path = self._blobs.get((repo_id, route["sha256"]))
        if path is None:
            return _error(404, None, "Not Found")
        return _content(repo_id, path, self.repos[repo_id].files[path], {"ETag": f'"{route["sha256"]}"'})

    def _model_info(self, route: re.Match[str], request: RecordedRequest) -> _Answer:
        repo = self._find(route["repo"], route["revision"], request)
        if isinstance(repo, _Answer):
            return repo
        return _json(200, _model_info(route["repo"], repo, blobs=request.query.get("blobs") == "true"))

    def _tree(self, route: re.Match[str], request: RecordedRequest) -> _Answer:
        repo = self._find(route["repo"], route["revision"], request)
        if isinstance(repo, _Answer):
            return repo
        folder = unquote(route["path"] or "")
        if folder and folder not in repo.folders():
            return _error(404, "EntryNotFound", f"{folder} does not exist on {route['revision']}")
        recursive, expand = (request.query.get(name) == "true" for name in ("recursive", "expand"))
        return _json(200, _tree(repo, folder, recursive=recursive, expand=expand))

    def _paths_info(self, route: re.Match[str], request: RecordedRequest) -> _Answer:
        repo = self._find(route["repo"], route["revision"], request)
        if isinstance(repo, _Answer):
            return repo
        expand = request.form.get("expand", ["false"])[0].lower() == "true"
        return _json(200, _paths_info(repo, request.form.get("paths", []), expand=expand))


# -- answers -----------------------------------------------------------------------------------------


def _content(repo_id: str, path: str, data: bytes, headers: dict[str, str]) -> _Answer:
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    return _Answer(200, headers, data, (repo_id, path))


def _ranged(answer: _Answer, header: str | None) -> _Answer:
    """``answer`` narrowed to the single byte range the client asked for, as the Hub and its CDN do."""
    match = RANGE.match(header.strip()) if header and answer.file is not None else None
    if match is None or not (match["start"] or match["end"]):
        return answer
    total = len(answer.body)
    if match["start"]:
        start, end = int(match["start"]), min(int(match["end"] or total - 1), total - 1)
    else:
        start, end = max(total - int(match["end"]), 0), total - 1
    if start >= total or start > end:
        return _Answer(416, {"Content-Range": f"bytes */{total}"})
    headers = {**answer.headers, "Content-Range": f"bytes {start}-{end}/{total}"}
    return _Answer(206, headers, answer.body[start : end + 1], answer.file)


def _gated(repo_id: str, token: str | None, headers: dict[str, str]) -> _Answer:
    if token is None:
        message = (
            f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access "
            "it. Please log in."
        )
        return _error(401, "GatedRepo", message, headers)
    message = f"Access to model {repo_id} is restricted and you are not in the authorized list."
    return _error(403, "GatedRepo", message, headers)


def _error(status: int, code: str | None, message: str, headers: Mapping[str, str] | None = None) -> _Answer:
    error_headers = {**(headers or {}), "X-Error-Message": message}
    if code is not None:
        error_headers["X-Error-Code"] = code
    return _json(status, {"error": message}, error_headers)


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Answer:
    body = json.dumps(payload).encode()
    return _Answer(status, {**(headers or {}), "Content-Type": "application/json; charset=utf-8"}, body)


def _lfs_pointer(data: bytes) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256(data)}\nsize {len(data)}\n".encode()


def _model_info(repo_id: str, repo: FakeRepo, *, blobs: bool) -> dict[str, Any]:
    siblings: list[dict[str, Any]] = []
    for path in sorted(repo.files):
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            entry = _file_entry(repo, path, expand=False)
            sibling.update(size=entry["size"], blobId=entry["oid"])
            if "lfs" in entry:
                lfs = entry["lfs"]
                sibling["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
        siblings.append(sibling)
    return {
        "_id": repo.commit[:24],
        "id": repo_id,
        "modelId": repo_id,
        "author": repo_id.split("/")[0],
        "sha": repo.commit,
        "lastModified": COMMIT_DATE,
        "private": False,
        "gated": "manual" if repo.gated else False,
        "disabled": False,
        "tags": [],
        "siblings": siblings,
    }


def _file_entry(repo: FakeRepo, path: str, *, expand: bool) -> dict[str, Any]:
    data = repo.files[path]
    entry: dict[str, Any] = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": path}
    if repo.is_lfs(path):
        pointer = _lfs_pointer(data)
        entry["oid"] = git_blob_id(pointer)
        entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": len(pointer)}
    if expand:
        entry["lastCommit"] = {"id": repo.commit, "title": "Upload folder using huggingface_hub", "date": COMMIT_DATE}
        entry["securityFileStatus"] = {
            "status": "safe",
            "avScan": {"virusFound": False, "virusNames": None},
            "pickleImportScan": None,
        }
    return entry


def _folder_entry(repo: FakeRepo, folder: str) -> dict[str, Any]:
    oid = hashlib.sha1(f"{repo.commit}:{folder}".encode()).hexdigest()
    return {"type": "directory", "oid": oid, "size": 0, "path": folder}


def _tree(repo: FakeRepo, folder: str, *, recursive: bool, expand: bool) -> list[dict[str, Any]]:
    """The entries under ``folder`` (at any depth when ``recursive``), folders first."""
    prefix = f"{folder}/" if folder else ""

    def listed(path: str) -> bool:
        return path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])

    folders = [_folder_entry(repo, path) for path in sorted(repo.folders()) if listed(path)]
    return folders + [_file_entry(repo, path, expand=expand) for path in sorted(repo.files) if listed(path)]


def _paths_info(repo: FakeRepo, paths: list[str], *, expand: bool) -> list[dict[str, Any]]:
    """Entries for the paths that exist; the Hub leaves the others out."""
    folders = repo.folders()
    found = [_file_entry(repo, path, expand=expand) for path in paths if path in repo.files]
    return found + [_folder_entry(repo, path) for path in paths if path in folders]


def _chunks(body: bytes, fault: BodyFault | None) -> Iterator[bytes]:
    if fault is None:
        yield body
        return
    end = len(body) if fault.cut_after is None else min(fault.cut_after, len(body))
    for start in range(0, end, fault.chunk_size):
        time.sleep(fault.chunk_delay_s)
        yield body[start : min(start + fault.chunk_size, end)]


def _server(hub: FakeHub, origin: Origin) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self._handle("HEAD")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = RecordedRequest(
                method=method,
                origin=origin,
                path=unquote(url.path),
                query={name: values[0] for name, values in parse_qs(url.query).items()},
                form=parse_qs(body.decode()),
                range=self.headers.get("Range"),
                authorization=self.headers.get("Authorization"),
            )
            answer = hub._answer(url.path, request)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if method != "HEAD":
                self._send_body(answer)

        def _send_body(self, answer: _Answer) -> None:
            fault = hub._take_fault(answer.file) if answer.file is not None else None
            sent = 0
            try:
                for chunk in _chunks(answer.body, fault):
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                sent = -1  # the client gave up (e.g. a read timeout)
            if sent != len(answer.body):
                # Closing with less than the Content-Length sent is, for the client, a connection lost mid-body.
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request log is :attr:`FakeHub.requests`."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def use_fake_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path) -> Path:
    """Point ``huggingface_hub`` at ``endpoint``, online, with ``home`` as ``HF_HOME``, no token, no telemetry
    and no update check; returns the hub cache folder (``HF_HUB_CACHE``).

    ``huggingface_hub.constants`` reads these variables once, at import, and the module-level ``HfApi``
    behind ``huggingface_hub.model_info`` and its siblings keeps the endpoint it was made with, so both are
    patched for this process; the environment is set for subprocesses (such as ``hf download``).
    """
    from huggingface_hub import constants, hf_api

    cache = home / "hub"
    environ = {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_ETAG_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    constant_values: dict[str, object] = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_UPDATE_CHECK": True,
        "HF_HUB_ETAG_TIMEOUT": constants.DEFAULT_ETAG_TIMEOUT,
    }
    for name, constant in constant_values.items():
        monkeypatch.setattr(constants, name, constant)
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    return cache
