"""Image references through :class:`InputResolver`: real files, real loopback web servers, real decoding."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from imagegen_mcp import inputs
from imagegen_mcp.errors import ErrorCode, InvalidRequestError
from imagegen_mcp.inputs import InputImage, InputPolicy, InputResolver, IPAddress, is_public_address
from imagegen_mcp.storage import ImageStore
from tests.images import bomb_png, data_uri

pytestmark = pytest.mark.anyio

LOOPBACK = IPv4Address("127.0.0.1")


# -- images ------------------------------------------------------------------------------------------------


def photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth gradients in two channels, sensor-like noise in the third."""
    noise = Image.frombytes("L", (width, height), random.Random(seed).randbytes(width * height))
    horizontal = Image.linear_gradient("L").rotate(90).resize((width, height))
    radial = Image.radial_gradient("L").resize((width, height))
    return Image.merge("RGB", (horizontal, noise, radial))


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def mask_image(width: int, height: int, mode: str = "L") -> Image.Image:
    """Black with a white rectangle over the left half's middle."""
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rectangle((width // 8, height // 4, width // 2 - 1, 3 * height // 4 - 1), fill=255)
    return mask.convert(mode)


# -- fixtures ----------------------------------------------------------------------------------------------


@dataclass
class Setup:
    root: Path
    outside: Path
    store: ImageStore

    def resolver(self, **policy: Any) -> InputResolver:
        return InputResolver(InputPolicy(roots=policy.pop("roots", (self.root,)), **policy), self.store.path_for)

    def write(self, name: str, data: bytes, folder: Path | None = None) -> Path:
        path = (folder or self.root) / name
        path.write_bytes(data)
        return path


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    root, outside = tmp_path / "inputs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    return Setup(root, outside, ImageStore(tmp_path / "images", preview_max_px=64, preview_format="jpeg"))


async def refused(resolver: InputResolver, reference: str, argument: str = "image") -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        await resolver.resolve(reference, argument)
    error = caught.value
    assert error.code is ErrorCode.INVALID_REQUEST
    assert error.message.startswith(f"{argument}: ")
    assert error.details == {"argument": argument}
    return error


# -- loopback web servers ----------------------------------------------------------------------------------


@dataclass
class Reply:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: Without a Content-Length the body ends when the connection closes.
    declare_length: bool = True
    #: Hold the answer until the server closes.
    stall: bool = False


class Site:
    """A web server on a loopback address answering from ``routes`` and recording each request's path and Host."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Reply] = {}
        self.requests: list[tuple[str, str]] = []
        self.closing = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                site.requests.append((self.path, self.headers.get("Host", "")))
                reply = site.routes.get(self.path, Reply(status=404))
                if reply.stall:
                    site.closing.wait(10)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.declare_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str, host: str | None = None, scheme: str = "http") -> str:
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    server.routes["/photo.png"] = Reply(encode(photo(seed=3)), headers={"Content-Type": "image/png"})
    yield server
    server.close()


def only_loopback(address: IPAddress) -> bool:
    """The address check of the URL tests: exactly the loopback server's address and nothing else."""
    return address == LOOPBACK


def url_resolver(setup: Setup, **policy: Any) -> InputResolver:
    return setup.resolver(allow_urls=True, address_allowed=only_loopback, **policy)


# -- the local forms ---------------------------------------------------------------------------------------


async def test_a_stored_image_is_found_by_its_uri(setup: Setup) -> None:
    stored = setup.store.save(encode(photo(80, 60)), {"prompt": "a field"})
    image = await setup.resolver().resolve(stored.uri, "image")
    data = stored.path.read_bytes()
    assert image == InputImage(
        data=data,
        mime_type="image/png",
        width=80,
        height=60,
        sha256=hashlib.sha256(data).hexdigest(),
        image_id=stored.id,
        source="imagegen",
        argument="image",
    )


@pytest.mark.parametrize(
    "reference",
    [
        "imagegen://images/20250101T000000Z-0badcafe",
        "imagegen://images/../../etc/passwd",
        "imagegen://images/",
    ],
)
async def test_an_unknown_stored_image_is_refused_naming_it(setup: Setup, reference: str) -> None:
    error = await refused(setup.resolver(), reference, "reference_images[1]")
    assert "no stored image has the id" in error.message
    assert reference.removeprefix("imagegen://images/") in error.message


async def test_another_imagegen_uri_is_refused(setup: Setup) -> None:
    error = await refused(setup.resolver(), "imagegen://jobs/123")
    assert "is not an imagegen://images/<id> URI" in error.message


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
async def test_a_file_under_a_root_is_read_as_is_and_typed_by_content(setup: Setup, fmt: str, mime: str) -> None:
    data = encode(photo(70, 50), fmt)
    path = setup.write("named-like-a.gif", data)
    image = await setup.resolver().resolve(str(path), "image")
    assert (image.data, image.mime_type, image.width, image.height) == (data, mime, 70, 50)
    assert (image.source, image.image_id, image.argument) == ("path", None, "image")
    assert path.read_bytes() == data  # the input is left as it was


async def test_dot_dot_and_symlinks_that_stay_inside_a_root_are_accepted(setup: Setup) -> None:
    data = encode(photo())
    setup.write("photo.png", data)
    (setup.root / "sub").mkdir()
    (setup.root / "sub" / "link.png").symlink_to(setup.root / "photo.png")
    (setup.root / "folder-link").symlink_to(setup.root / "sub")
    resolver = setup.resolver()
    for reference in (
        f"{setup.root}/sub/../photo.png",
        f"{setup.root}/sub/link.png",
        f"{setup.root}/folder-link/link.png",
    ):
        assert (await resolver.resolve(reference, "image")).data == data


async def test_a_root_given_through_a_symlink_is_resolved(setup: Setup, tmp_path: Path) -> None:
    (tmp_path / "root-link").symlink_to(setup.root)
    path = setup.write("photo.png", encode(photo()))
    image = await setup.resolver(roots=(tmp_path / "root-link",)).resolve(str(path), "image")
    assert image.width == 96


async def test_paths_that_end_outside_every_root_are_refused(setup: Setup) -> None:
    secret = setup.write("secret.png", encode(photo()), folder=setup.outside)
    (setup.root / "escape.png").symlink_to(secret)
    (setup.root / "escape-folder").symlink_to(setup.outside)
    (setup.root / "sub").mkdir()
    resolver = setup.resolver()
    for reference in (
        str(secret),
        f"{setup.root}/../outside/secret.png",
        f"{setup.root}/./sub/../../outside/secret.png",
        f"{setup.root}/escape.png",
        f"{setup.root}/escape-folder/secret.png",
    ):
        error = await refused(resolver, reference)
        assert "outside the folders this server reads images from" in error.message
        assert str(setup.root) in error.message  # the allowed roots are named
        assert error.remediation


async def test_a_root_that_only_shares_a_prefix_is_not_a_root(setup: Setup) -> None:
    sibling = setup.root.with_name(setup.root.name + "-other")
    sibling.mkdir()
    path = setup.write("photo.png", encode(photo()), folder=sibling)
    error = await refused(setup.resolver(), str(path))
    assert "outside the folders" in error.message


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("photo.png", "is not an absolute path"),
        ("./inputs/photo.png", "is not an absolute path"),
        ("file:///etc/passwd", "uses a scheme this server does not accept"),
        ("", "is empty"),
    ],
)
async def test_other_forms_are_refused_listing_the_accepted_ones(setup: Setup, reference: str, problem: str) -> None:
    error = await refused(setup.resolver(), reference)
    assert problem in error.message
    assert "imagegen://images/<id>" in error.message
    assert str(setup.root) in error.message
    assert "data:image/png|jpeg|webp;base64" in error.message


async def test_a_missing_file_is_refused(setup: Setup) -> None:
    error = await refused(setup.resolver(), str(setup.root / "nope.png"))
    assert "does not exist" in error.message
    assert str(setup.root) in error.message


async def test_whether_a_file_outside_the_roots_exists_is_not_told(setup: Setup) -> None:
    setup.write("real.png", encode(photo()), folder=setup.outside)
    resolver = setup.resolver()
    for name in ("real.png", "imaginary.png"):
        error = await refused(resolver, str(setup.outside / name))
        assert "outside the folders" in error.message


async def test_a_path_with_a_nul_byte_is_refused(setup: Setup) -> None:
    error = await refused(setup.resolver(), f"{setup.root}/a\x00b.png")
    assert "cannot be read" in error.message


async def test_a_folder_is_refused(setup: Setup) -> None:
    (setup.root / "album").mkdir()
    error = await refused(setup.resolver(), str(setup.root / "album"))
    assert "is a folder, not an image file" in error.message


async def test_a_named_pipe_is_refused_without_waiting_for_a_writer(setup: Setup) -> None:
    fifo = setup.root / "pipe.png"
    os.mkfifo(fifo)

    def release_a_blocked_reader() -> None:  # so that a regression fails the test instead of hanging it
        with contextlib.suppress(OSError):  # raised when nobody is waiting on the pipe
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    watchdog = threading.Timer(5, release_a_blocked_reader)
    watchdog.start()
    try:
        error = await refused(setup.resolver(), str(fifo))
    finally:
        watchdog.cancel()
    assert "is a named pipe" in error.message  # found by stat, before any open could wait for a writer


async def test_a_socket_is_refused(setup: Setup) -> None:
    path = setup.root / "s.png"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        error = await refused(setup.resolver(), str(path))
    assert "is a socket" in error.message


async def test_a_device_is_refused_without_reading_it(setup: Setup) -> None:
    error = await refused(setup.resolver(roots=(Path("/dev"),)), "/dev/zero")
    assert "is a character device" in error.message


def refused_as_nobody(resolver: InputResolver, reference: str) -> str:
    """The resolver's refusal of ``reference`` in a forked child that runs as the unprivileged user ``nobody``
    (file modes do not bind root), read back through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only a blocking read of a local file, then out without running any cleanup
        try:
            os.setgid(65534)
            os.setuid(65534)
            resolver._load_local(reference, "image")
        except InvalidRequestError as error:
            os.write(write_end, error.message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


async def test_an_unreadable_file_is_refused(setup: Setup) -> None:
    folder = Path(tempfile.mkdtemp(prefix="imagegen-locked-"))
    try:
        folder.chmod(0o755)
        path = setup.write("locked.png", encode(photo()), folder)
        path.chmod(0)
        resolver = setup.resolver(roots=(folder,))
        if os.geteuid() == 0:
            message = refused_as_nobody(resolver, str(path))
        else:
            message = (await refused(resolver, str(path))).message
    finally:
        shutil.rmtree(folder)
    assert "cannot be read (Permission denied)" in message


async def test_a_file_over_the_size_limit_is_refused_before_it_is_read(setup: Setup) -> None:
    huge = setup.root / "huge.png"
    with huge.open("wb") as handle:
        handle.truncate(4 * 1024**3)  # sparse: reading it would take seconds and 4 GiB of memory
    error = await refused(setup.resolver(), str(huge))
    assert f"larger than the {20 * 1024 * 1024:,} bytes allowed" in error.message


async def test_the_size_limit_is_inclusive(setup: Setup) -> None:
    data = encode(photo())
    path = setup.write("photo.png", data)
    assert (await setup.resolver(max_bytes=len(data)).resolve(str(path), "image")).data == data
    error = await refused(setup.resolver(max_bytes=len(data) - 1), str(path))
    assert "larger than" in error.message


@pytest.mark.parametrize(
    "content",
    [b"just some text, not an image\n", encode(photo(), "GIF"), encode(photo(), "BMP"), b""],
    ids=["text", "gif", "bmp", "empty"],
)
async def test_content_that_is_not_png_jpeg_or_webp_is_refused(setup: Setup, content: bytes) -> None:
    error = await refused(setup.resolver(), str(setup.write("photo.png", content)))
    assert "the content is not a PNG, JPEG or WebP image" in error.message


async def test_a_png_truncated_in_its_image_data_is_refused(setup: Setup) -> None:
    data = encode(photo(256, 256))
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    truncated = data[: idat + 4 + length // 2]
    error = await refused(setup.resolver(), str(setup.write("cut.png", truncated)))
    assert "the content is a damaged or truncated PNG image" in error.message


async def test_a_jpeg_with_a_damaged_header_is_refused(setup: Setup) -> None:
    data = bytearray(encode(photo(), "JPEG"))
    data[3:40] = bytes(37)
    error = await refused(setup.resolver(), str(setup.write("bad.jpg", bytes(data))))
    assert "damaged or truncated" in error.message


async def test_a_decompression_bomb_is_refused_from_its_header(setup: Setup) -> None:
    bomb = bomb_png(60000, 60000)
    assert len(bomb) < 4096
    error = await refused(setup.resolver(), str(setup.write("bomb.png", bomb)))
    assert "pixels allowed per input image" in error.message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
async def test_an_image_that_pillow_only_warns_about_is_refused(setup: Setup) -> None:
    error = await refused(setup.resolver(), str(setup.write("bomb.png", bomb_png(9500, 9500))))
    assert "the image (9500x9500) has more than the 50,000,000 pixels allowed" in error.message


async def test_the_pixel_limit_holds_without_pillows_own_guard(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    error = await refused(setup.resolver(), str(setup.write("bomb.png", bomb_png(60000, 60000))))
    assert "the image (60000x60000) has more than the 50,000,000 pixels allowed" in error.message


async def test_the_pixel_limit_is_the_policys(setup: Setup) -> None:
    path = setup.write("photo.png", encode(photo(100, 50)))
    assert (await setup.resolver(max_pixels=5000).resolve(str(path), "image")).width == 100
    error = await refused(setup.resolver(max_pixels=4999), str(path))
    assert "(100x50) has more than the 4,999 pixels allowed" in error.message


def test_a_policy_above_pillows_limit_is_rejected(setup: Setup) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        InputPolicy(roots=(setup.root,), max_pixels=10**10)


# -- data URIs ---------------------------------------------------------------------------------------------


async def test_a_data_uri_is_decoded(setup: Setup) -> None:
    data = encode(photo(40, 30), "WEBP")
    image = await setup.resolver().resolve(data_uri(data, "image/webp"), "reference_images[0]")
    assert (image.data, image.mime_type, image.source, image.argument) == (
        data,
        "image/webp",
        "data_uri",
        "reference_images[0]",
    )


async def test_a_data_uri_type_is_taken_from_the_content_not_the_declaration(setup: Setup) -> None:
    data = encode(photo(), "PNG")
    image = await setup.resolver().resolve(data_uri(data, "IMAGE/JPEG"), "image")
    assert image.mime_type == "image/png"


async def test_a_data_uri_over_the_limit_is_refused_before_decoding(setup: Setup) -> None:
    limit = 3000
    # Invalid base64 one character over the limit: only a length check made before decoding refuses it as too large.
    error = await refused(setup.resolver(max_bytes=limit), "data:image/png;base64," + "A" * 4000 + "!")
    assert "larger than the 3,000 bytes allowed" in error.message
    fits = base64.b64encode(bytes(limit)).decode()
    error = await refused(setup.resolver(max_bytes=limit), "data:image/png;base64," + fits)
    assert "not a PNG, JPEG or WebP image" in error.message  # within the limit, so it was decoded


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("data:image/png;base64,iVBORw0K!!!!", "payload is not valid base64"),
        ("data:image/png;base64,iVBORw0KGgo", "payload is not valid base64"),
        ("data:image/gif;base64,R0lGODlhAQABAAAAACw=", "accepted types are image/png, image/jpeg, image/webp"),
        ("data:text/html;base64,PGI+aGk8L2I+", "accepted types are"),
        ("data:image/png,rawbytes", "is not of the form data:<type>;base64,<payload>"),
        ("data:image/png;base64", "is not of the form"),
    ],
)
async def test_malformed_data_uris_are_refused(setup: Setup, reference: str, problem: str) -> None:
    error = await refused(setup.resolver(), reference)
    assert problem in error.message


async def test_error_text_never_repeats_a_payload(setup: Setup) -> None:
    payload = base64.b64encode(b"secret pixels " * 50).decode()
    resolver = setup.resolver()
    for reference in (f"data:image/png;base64,{payload}", payload, f"data:image/png;base64,{payload}@@"):
        error = await refused(resolver, reference)
        text = " ".join([error.message, *error.remediation])
        assert payload[:20] not in text


async def test_bare_base64_is_recognised(setup: Setup) -> None:
    for payload in (base64.b64encode(encode(photo())).decode(), base64.b64encode(encode(photo(), "JPEG")).decode()):
        error = await refused(setup.resolver(), payload)  # a JPEG's base64 starts with "/", like a path
        assert error.message == "image: the value looks like base64 without a data: prefix"


async def test_long_references_are_shortened_in_error_text(setup: Setup) -> None:
    reference = str(setup.outside / ("x" * 300 + ".png"))
    error = await refused(setup.resolver(), reference)
    assert reference[:100] in error.message
    assert reference[:101] not in error.message


# -- URLs ----------------------------------------------------------------------------------------------------


async def test_urls_are_refused_while_they_are_off(setup: Setup, site: Site) -> None:
    error = await refused(setup.resolver(address_allowed=only_loopback), site.url("/photo.png"))
    assert "does not fetch images from URLs" in error.message
    assert any("IMAGEGEN_ALLOW_URL_INPUTS" in step for step in error.remediation)
    assert site.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://localhost/a.png",
        "http://[::1]/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://192.168.1.1/a.png",
        "http://172.16.0.1/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://[::ffff:10.0.0.1]/a.png",
        "http://[2002:7f00:1::]/a.png",
        "http://0.0.0.0/a.png",
        "http://[::]/a.png",
        "http://2130706433/a.png",
        "http://0x7f.1/a.png",
        "http://224.0.0.1/a.png",
        "http://100.64.0.1/a.png",
        "http://[fe80::1]/a.png",
        "http://[fc00::1]/a.png",
        "http://240.0.0.1/a.png",
        "https://255.255.255.255/a.png",
    ],
)
async def test_the_default_check_refuses_every_non_public_address(setup: Setup, url: str) -> None:
    error = await refused(setup.resolver(allow_urls=True), url)
    assert "an address this server does not fetch from" in error.message


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::200e"])
def test_the_default_check_allows_public_addresses(address: str) -> None:
    assert is_public_address(ip_address(address))


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Answer host lookups from ``answers``; returns the hosts looked up, in order."""
    looked_up: list[str] = []

    async def lookup(host: str, port: int) -> list[IPAddress]:
        looked_up.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ip_address(address) for address in answers[host]]

    monkeypatch.setattr(inputs, "resolve_host", lookup)
    return looked_up


async def test_a_host_with_any_private_address_is_refused(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"images.example": ["93.184.216.34", "10.0.0.7"]})
    error = await refused(setup.resolver(allow_urls=True), "https://images.example/cat.png")
    assert "leads to 10.0.0.7" in error.message
    assert "93.184.216.34" not in error.message


async def test_a_host_that_does_not_resolve_is_refused(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {})
    error = await refused(setup.resolver(allow_urls=True), "https://nowhere.example/cat.png")
    assert "could not be resolved" in error.message


async def test_an_allowed_address_is_fetched(setup: Setup, site: Site) -> None:
    image = await url_resolver(setup).resolve(site.url("/photo.png"), "image")
    assert image.data == site.routes["/photo.png"].body
    assert (image.mime_type, image.source, image.width) == ("image/png", "url", 96)


async def test_the_checked_address_is_the_one_connected_to(
    setup: Setup, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up = fake_dns(monkeypatch, {"images.test": ["127.0.0.1"]})
    image = await url_resolver(setup).resolve(site.url("/photo.png", host="images.test"), "image")
    assert image.width == 96
    assert looked_up == ["images.test"]  # resolved once: nothing looks it up again before connecting
    assert site.requests == [("/photo.png", f"images.test:{site.port}")]


async def test_an_https_host_is_verified_under_its_own_name(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_tls, client_tls = tls_contexts(tmp_path, "images.test")
    names: list[str | None] = []

    def record_server_name(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    server_tls.sni_callback = record_server_name
    secure = Site(tls=server_tls)
    secure.routes["/photo.png"] = Reply(encode(photo(seed=5)))
    fake_dns(monkeypatch, {"images.test": ["127.0.0.1"], "127.0.0.1": ["127.0.0.1"]})
    try:
        image = await url_resolver(setup, tls_context=client_tls).resolve(
            secure.url("/photo.png", host="images.test", scheme="https"), "image"
        )
        assert image.data == secure.routes["/photo.png"].body
        assert names == ["images.test"]
        assert secure.requests == [("/photo.png", f"images.test:{secure.port}")]
        # The same server under its address: the certificate does not name 127.0.0.1, so it is refused.
        error = await refused(url_resolver(setup, tls_context=client_tls), secure.url("/photo.png", scheme="https"))
        assert "could not be fetched (ConnectError)" in error.message
    finally:
        secure.close()


async def test_redirects_are_followed_up_to_three_times(setup: Setup, site: Site) -> None:
    for hop in range(1, 5):
        site.routes[f"/hop/{hop}"] = Reply(status=302, headers={"Location": f"/hop/{hop - 1}"})
    site.routes["/hop/0"] = Reply(status=301, headers={"Location": site.url("/photo.png")})
    resolver = url_resolver(setup)
    image = await resolver.resolve(site.url("/hop/2"), "image")
    assert image.data == site.routes["/photo.png"].body
    error = await refused(resolver, site.url("/hop/3"))
    assert "redirects more than 3 times" in error.message


async def test_a_redirect_to_a_refused_address_is_not_followed(setup: Setup, site: Site) -> None:
    other = Site("127.0.0.2")  # reachable, but not an allowed address
    other.routes["/photo.png"] = Reply(encode(photo()))
    site.routes["/to-other"] = Reply(status=307, headers={"Location": other.url("/photo.png")})
    site.routes["/to-metadata"] = Reply(status=302, headers={"Location": "http://169.254.169.254/latest/"})
    try:
        for path, address in (("/to-other", "127.0.0.2"), ("/to-metadata", "169.254.169.254")):
            error = await refused(url_resolver(setup), site.url(path))
            assert f"leads to {address}" in error.message
        assert other.requests == []
    finally:
        other.close()


async def test_a_redirect_to_another_scheme_is_refused(setup: Setup, site: Site) -> None:
    site.routes["/to-file"] = Reply(status=302, headers={"Location": "file:///etc/passwd"})
    error = await refused(url_resolver(setup), site.url("/to-file"))
    assert "'file:/etc/passwd' is not an http(s) URL" in error.message


async def test_a_body_over_the_limit_is_refused(setup: Setup, site: Site) -> None:
    body = encode(photo(200, 200))
    site.routes["/declared.png"] = Reply(body)
    site.routes["/streamed.png"] = Reply(body, declare_length=False)
    resolver = url_resolver(setup, max_bytes=len(body) - 1)
    for path in ("/declared.png", "/streamed.png"):
        error = await refused(resolver, site.url(path))
        assert "larger than" in error.message
    assert (await url_resolver(setup, max_bytes=len(body)).resolve(site.url("/streamed.png"), "image")).data == body


async def test_an_error_status_is_refused(setup: Setup, site: Site) -> None:
    error = await refused(url_resolver(setup), site.url("/missing.png"))
    assert "answered HTTP 404" in error.message


async def test_a_compressed_body_is_refused(setup: Setup, site: Site) -> None:
    site.routes["/zipped.png"] = Reply(zlib.compress(bytes(10**6)), headers={"Content-Encoding": "deflate"})
    error = await refused(url_resolver(setup), site.url("/zipped.png"))
    assert "content encoding 'deflate'" in error.message


async def test_a_server_that_does_not_answer_in_time_is_refused(setup: Setup, site: Site) -> None:
    site.routes["/slow.png"] = Reply(encode(photo()), stall=True)
    error = await refused(url_resolver(setup, url_timeout_s=0.5), site.url("/slow.png"))
    assert "did not deliver an image within 0.5 s" in error.message


async def test_urls_with_credentials_are_refused(setup: Setup, site: Site) -> None:
    error = await refused(url_resolver(setup), site.url("/photo.png", host="user:pw@127.0.0.1"))
    assert "credentials" in error.message
    assert site.requests == []


def test_importing_the_module_does_not_import_httpx() -> None:
    code = "import sys, imagegen_mcp.inputs; print('httpx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- masks ---------------------------------------------------------------------------------------------------


async def checked_photo(setup: Setup, width: int = 96, height: int = 64) -> InputImage:
    return await setup.resolver().resolve(data_uri(encode(photo(width, height))), "image")


def decoded(image: InputImage) -> Image.Image:
    return Image.open(io.BytesIO(image.data))


@pytest.mark.parametrize("mode", ["L", "1", "RGB", "RGBA", "LA", "P"])
async def test_a_mask_becomes_an_l_png_of_the_image_size(setup: Setup, mode: str) -> None:
    image = await checked_photo(setup)
    source = encode(mask_image(96, 64, mode))
    mask = await setup.resolver().resolve_mask(str(setup.write("mask.png", source)), image)
    assert (mask.mime_type, mask.width, mask.height, mask.source, mask.argument) == (
        "image/png",
        96,
        64,
        "path",
        "mask",
    )
    assert mask.sha256 == hashlib.sha256(mask.data).hexdigest()
    pixels = decoded(mask)
    assert (pixels.mode, pixels.size) == ("L", (96, 64))
    assert pixels.getpixel((30, 32)) == 255  # inside the white rectangle: repaint
    assert pixels.getpixel((80, 32)) == 0  # keep


async def test_transparency_in_a_mask_counts_as_black(setup: Setup) -> None:
    image = await checked_photo(setup)
    white = Image.new("LA", (96, 64), (255, 255))
    ImageDraw.Draw(white).rectangle((0, 0, 47, 63), fill=(255, 0))
    mask = await setup.resolver().resolve_mask(data_uri(encode(white)), image)
    assert decoded(mask).getpixel((10, 10)) == 0
    assert decoded(mask).getpixel((80, 10)) == 255


async def test_a_stored_mask_keeps_its_id(setup: Setup) -> None:
    stored = setup.store.save(encode(mask_image(96, 64)), {})
    mask = await setup.resolver().resolve_mask(stored.uri, await checked_photo(setup))
    assert (mask.image_id, mask.source) == (stored.id, "imagegen")


async def test_a_greyscale_jpeg_mask_is_accepted(setup: Setup) -> None:
    image = await checked_photo(setup)
    mask = await setup.resolver().resolve_mask(data_uri(encode(mask_image(96, 64, "RGB"), "JPEG")), image)
    value = decoded(mask).getpixel((30, 32))
    assert isinstance(value, int) and value > 200


async def test_a_mask_of_the_same_aspect_ratio_is_scaled_to_the_image(setup: Setup) -> None:
    image = await checked_photo(setup, 192, 128)
    mask = await setup.resolver().resolve_mask(data_uri(encode(mask_image(96, 64))), image)
    pixels = decoded(mask)
    assert pixels.size == (192, 128)
    assert pixels.getpixel((60, 64)) == 255
    assert pixels.getpixel((160, 64)) == 0


async def test_a_mask_within_one_percent_of_the_aspect_ratio_is_scaled(setup: Setup) -> None:
    image = await checked_photo(setup, 200, 100)
    mask = await setup.resolver().resolve_mask(data_uri(encode(mask_image(101, 50))), image)  # 1.0 % wider
    assert (mask.width, mask.height) == (200, 100)


async def test_a_mask_of_another_aspect_ratio_is_refused(setup: Setup) -> None:
    image = await checked_photo(setup, 200, 100)
    with pytest.raises(InvalidRequestError) as caught:
        await setup.resolver().resolve_mask(data_uri(encode(mask_image(102, 50))), image)
    assert "the mask is 102x50 but the image is 200x100" in caught.value.message
    assert caught.value.message.startswith("mask: ")


async def test_a_colour_photo_is_not_a_mask(setup: Setup) -> None:
    image = await checked_photo(setup)
    with pytest.raises(InvalidRequestError) as caught:
        await setup.resolver().resolve_mask(data_uri(encode(photo(seed=9))), image, argument="mask_image")
    assert caught.value.message.startswith("mask_image: the image given as mask has colours, so it is not a mask")


async def test_an_all_black_mask_is_refused(setup: Setup) -> None:
    image = await checked_photo(setup)
    for black in (Image.new("L", (96, 64), 3), Image.new("RGBA", (96, 64), (255, 255, 255, 0))):
        with pytest.raises(InvalidRequestError) as caught:
            await setup.resolver().resolve_mask(data_uri(encode(black)), image)
        assert "the mask is black everywhere" in caught.value.message


async def test_a_mask_of_another_pixel_format_is_refused(setup: Setup) -> None:
    image = await checked_photo(setup)
    with pytest.raises(InvalidRequestError) as caught:
        await setup.resolver().resolve_mask(data_uri(encode(Image.new("I;16", (96, 64), 40000))), image)
    assert "pixel format (I;16)" in caught.value.message


async def test_a_mask_is_checked_like_any_input(setup: Setup) -> None:
    image = await checked_photo(setup)
    with pytest.raises(InvalidRequestError) as caught:
        await setup.resolver().resolve_mask(str(setup.outside / "mask.png"), image)
    assert caught.value.message.startswith("mask: ")
    assert "outside the folders" in caught.value.message


# -- certificates for the https test ------------------------------------------------------------------------


def tls_contexts(folder: Path, host: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``host`` from a new CA, and a client context trusting that CA."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        is_ca = key is ca_key
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagegen test CA")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        if not is_ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca, leaf = issue("imagegen test CA", ca_key, ca_key), issue(host, leaf_key, ca_key)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return server, ssl.create_default_context(cafile=str(folder / "ca.pem"))
