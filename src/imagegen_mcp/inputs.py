"""Image references from tool arguments, turned into checked image bytes.

Every image an agent hands to the server (the image to edit, a mask, reference images) comes through
:class:`InputResolver`, in one of these forms:

* ``imagegen://images/<id>``: an image this server stored, found through the store's ``image_path``;
* an absolute path whose real path (symlinks resolved, ``..`` normalised) lies under an allowed root;
* ``data:image/png|jpeg|webp;base64,<payload>``;
* ``http(s)://`` when the policy allows URLs, and then only to public addresses.

The checks run cheapest first and nothing is decoded before it has passed the ones before: the size limit
from ``stat`` (or the base64 length, or the byte count while streaming) before reading, the format from the
content (never the name or a declared type), the pixel count from the header before decoding, then a full
decode so that a damaged or truncated file is refused here rather than by a provider. Input files are only
ever opened for reading. Every refusal is an :class:`~imagegen_mcp.errors.InvalidRequestError` naming the
argument and what it accepts; no error text repeats file contents or a data URI's payload.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import os
import re
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.to_thread
import pybase64
from PIL import Image, ImageChops

from imagegen_mcp.errors import InvalidRequestError
from imagegen_mcp.images import PIL_FORMATS, UnusableImageError, decode_image
from imagegen_mcp.storage import IMAGE_ID_PATTERN, URI_PREFIX

if TYPE_CHECKING:
    import ssl

    import httpx

IPAddress = IPv4Address | IPv6Address
InputSource = Literal["imagegen", "path", "data_uri", "url"]

DEFAULT_MAX_INPUT_BYTES = 20 * 1024 * 1024
#: 50 megapixels admits full-resolution photos from 48 and 50 MP phone cameras and 8K frames (33 MP), while
#: one decoded RGBA image stays under 200 MB. It is below Pillow's own warning threshold (about 89 MP).
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_URL_TIMEOUT_S = 15.0
#: Redirects followed, each one checked like the first URL.
MAX_REDIRECTS = 3

_FORMS_SHOWN = "PNG, JPEG or WebP"
_ECHO_LIMIT = 100
_BARE_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]{100,}")
_NOT_REGULAR = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}
#: A file is opened without following a final symlink and without waiting on a pipe (where those exist).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
#: How far apart an RGB mask's channels may be and still count as grey (JPEG's colour noise stays well below).
_GREY_TOLERANCE = 24
#: A mask whose brightest pixel is darker than this marks nothing to repaint (JPEG noise included).
_BLACK_LEVEL = 16
_ASPECT_TOLERANCE = 0.01


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is a globally routable unicast address: the default :attr:`InputPolicy.address_allowed`.

    Loopback, private, link-local, shared (CGNAT), multicast, reserved and unspecified addresses are refused,
    and so is an IPv6 address that embeds a refused IPv4 one (IPv4-mapped, 6to4).
    """
    if isinstance(address, IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and not is_public_address(embedded):
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal, in any form the C library accepts, to itself)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ip_address(info[4][0]) for info in infos))


@dataclass(frozen=True)
class InputPolicy:
    """What the resolver accepts. ``roots`` are made absolute, with symlinks resolved, by the resolver."""

    roots: tuple[Path, ...]
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_urls: bool = False
    url_timeout_s: float = DEFAULT_URL_TIMEOUT_S
    #: Decides for each address a URL's host resolves to whether it may be contacted.
    address_allowed: Callable[[IPAddress], bool] = is_public_address
    #: Certificate authorities for https URLs; ``None`` trusts the certifi bundle.
    tls_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.url_timeout_s <= 0:
            raise ValueError("max_bytes and url_timeout_s must be positive")
        # Above Pillow's own limit, Pillow would warn about (or refuse) images before this policy is asked.
        if not 0 < self.max_pixels <= (Image.MAX_IMAGE_PIXELS or self.max_pixels):
            raise ValueError(f"max_pixels must be between 1 and {Image.MAX_IMAGE_PIXELS}")


@dataclass(frozen=True)
class InputImage:
    """One checked image and where it came from."""

    #: The bytes exactly as given (only :meth:`InputResolver.resolve_mask` re-encodes).
    data: bytes
    #: Decided by the content, never by a file name or a declared type.
    mime_type: str
    width: int
    height: int
    sha256: str
    #: The stored image's id when the reference was an ``imagegen://`` URI.
    image_id: str | None
    source: InputSource
    #: The tool argument it came from, e.g. ``image``, ``mask`` or ``reference_images[1]``.
    argument: str


def _refuse(argument: str, problem: str, *steps: str) -> InvalidRequestError:
    return InvalidRequestError(f"{argument}: {problem}", remediation=steps, details={"argument": argument})


def _shown(reference: str) -> str:
    """The reference as error text may repeat it: data URIs and bare base64 never, anything else capped."""
    if reference[:5].lower() == "data:":
        return "the data URI"
    if _BARE_BASE64.fullmatch(reference):
        return "the value"
    return repr(reference if len(reference) <= _ECHO_LIMIT else reference[:_ECHO_LIMIT] + "...")


class InputResolver:
    """Turns image references into :class:`InputImage` under one :class:`InputPolicy`.

    ``image_path`` maps a stored image's id to its file (``ImageStore.path_for``).
    """

    def __init__(self, policy: InputPolicy, image_path: Callable[[str], Path]) -> None:
        self.policy = policy
        self._image_path = image_path
        self._roots = tuple(Path(os.path.realpath(root)) for root in policy.roots)

    async def resolve(self, reference: str, argument: str) -> InputImage:
        """Check one reference and return its image. Blocking work runs in a worker thread."""
        image, _ = await self._load(reference, argument)
        return image

    async def resolve_mask(self, reference: str, image: InputImage, argument: str = "mask") -> InputImage:
        """Check an inpainting mask for ``image``: white marks what to repaint, black what to keep.

        Modes 1, L and LA, and RGB(A) or palette images whose pixels are grey, are accepted; alpha counts as
        black where transparent. A mask of another size but the same aspect ratio (within 1 %) is scaled to
        the image. Unlike every other input, the result is re-encoded, as an 8-bit greyscale (L) PNG of the
        image's size, so that every provider gets the one form it can use.
        """
        mask = await self._load(reference, argument)
        return await anyio.to_thread.run_sync(self._as_mask, mask, image, argument)

    # -- the forms ---------------------------------------------------------------------------------------

    async def _load(self, reference: str, argument: str) -> tuple[InputImage, Image.Image]:
        reference = reference.strip()
        if reference[:8].lower() == "https://" or reference[:7].lower() == "http://":
            data = await self._fetch(reference, argument)
            return await anyio.to_thread.run_sync(self._inspect, data, argument, "url", None)
        return await anyio.to_thread.run_sync(self._load_local, reference, argument)

    def _load_local(self, reference: str, argument: str) -> tuple[InputImage, Image.Image]:
        image_id: str | None = None
        source: InputSource
        if reference[: len(URI_PREFIX)].lower() == URI_PREFIX:
            image_id = reference[len(URI_PREFIX) :]
            data, source = self._read_stored(image_id, argument), "imagegen"
        elif reference[:5].lower() == "data:":
            data, source = self._decode_data_uri(reference, argument), "data_uri"
        elif _BARE_BASE64.fullmatch(reference):
            raise _refuse(
                argument,
                "the value looks like base64 without a data: prefix",
                "Pass it as data:image/png;base64,<payload> (or image/jpeg, image/webp)",
            )
        elif reference and "://" not in reference and Path(reference).is_absolute():
            data, source = self._read_path(reference, argument), "path"
        else:
            raise self._unknown_form(reference, argument)
        return self._inspect(data, argument, source, image_id)

    def _forms(self) -> str:
        roots = ", ".join(str(root) for root in self._roots) or "(no folder is allowed)"
        url = ", an http(s) URL of a public address" if self.policy.allow_urls else ""
        return (
            f"an imagegen://images/<id> URI, an absolute path to a {_FORMS_SHOWN} file under {roots}{url}, "
            "or a data:image/png|jpeg|webp;base64,... URI"
        )

    def _unknown_form(self, reference: str, argument: str) -> InvalidRequestError:
        if not reference:
            problem = "is empty"
        elif reference[:9].lower() == "imagegen:":
            problem = f"{_shown(reference)} is not an imagegen://images/<id> URI"
        elif "://" in reference:
            problem = f"{_shown(reference)} uses a scheme this server does not accept"
        else:
            problem = f"{_shown(reference)} is not an absolute path"
        return _refuse(
            argument,
            f"{problem}. It accepts {self._forms()}.",
            "Pass the imagegen:// URI that generate_image returned for an image made here",
            "Or encode the image as data:image/png;base64,<payload>",
        )

    def _read_stored(self, image_id: str, argument: str) -> bytes:
        try:
            if not IMAGE_ID_PATTERN.match(image_id):
                raise FileNotFoundError(image_id)
            return self._read_file(self._image_path(image_id), argument, _shown(URI_PREFIX + image_id))
        except FileNotFoundError:
            raise _refuse(
                argument,
                f"no stored image has the id {_shown(image_id)}",
                "Use an imagegen://images/<id> URI exactly as generate_image or search_images returned it",
            ) from None

    def _read_path(self, reference: str, argument: str) -> bytes:
        shown = _shown(reference)
        try:
            # Not strict: a path outside the roots is refused as such, whether or not it exists.
            real = Path(os.path.realpath(reference))
        except (OSError, ValueError) as exc:
            raise self._unreadable(argument, shown, exc) from None
        if not any(real.is_relative_to(root) for root in self._roots):
            raise _refuse(
                argument,
                f"{shown} is outside the folders this server reads images from. It accepts {self._forms()}.",
                "Copy the image into one of the allowed folders",
                "Or pass it as a data:image/png;base64,<payload> URI",
                "Or ask the server's operator to add its folder to IMAGEGEN_INPUT_DIRS",
            )
        try:
            return self._read_file(real, argument, shown)
        except FileNotFoundError:
            raise _refuse(
                argument,
                f"{shown} does not exist. It accepts {self._forms()}.",
                "Check the path; it must be absolute and name a file on the server's machine",
            ) from None

    def _read_file(self, path: Path, argument: str, shown: str) -> bytes:
        """Read a regular file of at most ``max_bytes``, never opening anything else and never waiting on it.

        ``stat`` first, so that a pipe or a device is never opened at all; ``fstat`` again on the open file,
        so that a file swapped in between is caught too.
        """
        try:
            self._check_file(os.stat(path), argument, shown)
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._unreadable(argument, shown, exc) from None
        with open(fd, "rb") as handle:
            self._check_file(os.fstat(fd), argument, shown)
            try:
                data = handle.read(self.policy.max_bytes + 1)
            except OSError as exc:
                raise self._unreadable(argument, shown, exc) from None
        if len(data) > self.policy.max_bytes:
            raise self._too_large(argument, shown)
        return data

    def _check_file(self, status: os.stat_result, argument: str, shown: str) -> None:
        if not stat.S_ISREG(status.st_mode):
            kind = _NOT_REGULAR.get(stat.S_IFMT(status.st_mode), "not a regular file")
            raise _refuse(
                argument,
                f"{shown} is {kind}, not an image file. It accepts {self._forms()}.",
                f"Name a {_FORMS_SHOWN} file",
            )
        if status.st_size > self.policy.max_bytes:
            raise self._too_large(argument, shown)

    def _unreadable(self, argument: str, shown: str, exc: Exception) -> InvalidRequestError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a valid path"
        return _refuse(
            argument,
            f"{shown} cannot be read ({reason}). It accepts {self._forms()}.",
            "Make sure the server's user may read the file",
        )

    def _too_large(self, argument: str, shown: str) -> InvalidRequestError:
        return _refuse(
            argument,
            f"{shown} is larger than the {self.policy.max_bytes:,} bytes allowed per input image",
            "Pass a smaller or more compressed image (JPEG or WebP)",
            "Or ask the server's operator to raise IMAGEGEN_MAX_INPUT_MB",
        )

    def _decode_data_uri(self, reference: str, argument: str) -> bytes:
        """Decode ``data:<type>;base64,<payload>``, checking the payload's length before decoding it.

        The declared type must be an accepted one, but the content decides the image's type: a PNG
        declared as JPEG is a PNG.
        """
        header, comma, payload = reference.partition(",")
        declared, _, encoding = header[5:].partition(";")
        if not comma or encoding.lower() != "base64" or len(header) > _ECHO_LIMIT:
            raise _refuse(
                argument,
                "the data URI is not of the form data:<type>;base64,<payload>",
                "Encode the image as data:image/png;base64,<payload>",
            )
        if declared.lower() not in PIL_FORMATS:
            raise _refuse(
                argument,
                f"the data URI declares {_shown(declared)}; accepted types are {', '.join(PIL_FORMATS)}",
                "Convert the image to PNG, JPEG or WebP",
            )
        if len(payload) > 4 * -(-self.policy.max_bytes // 3):
            raise self._too_large(argument, "the data URI's image")
        try:
            return pybase64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _refuse(
                argument,
                "the data URI's payload is not valid base64",
                "Encode the bytes with standard base64 (A-Z, a-z, 0-9, + and /, with = padding, no line breaks)",
            ) from None

    # -- URLs ----------------------------------------------------------------------------------------------

    async def _fetch(self, reference: str, argument: str) -> bytes:
        """GET an image, following at most :data:`MAX_REDIRECTS` redirects, each checked like the first URL."""
        shown = _shown(reference)
        if not self.policy.allow_urls:
            raise _refuse(
                argument,
                f"{shown} is a URL, and this server does not fetch images from URLs. It accepts {self._forms()}.",
                "Download the image and pass it as a data:image/png;base64,<payload> URI",
                "Or ask the server's operator to set IMAGEGEN_ALLOW_URL_INPUTS=true",
            )
        import httpx  # only servers that fetch URLs pay for the import

        try:
            url = httpx.URL(reference)
        except httpx.InvalidURL:
            raise _refuse(argument, f"{shown} is not a valid URL", "Check the URL") from None
        limit = self.policy.url_timeout_s
        async with httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=limit, verify=self.policy.tls_context or True
        ) as client:
            try:
                with anyio.fail_after(limit):
                    for _ in range(MAX_REDIRECTS + 1):
                        result = await self._get(client, url, argument, shown)
                        if isinstance(result, bytes):
                            return result
                        url = result
            except httpx.InvalidURL:
                raise _refuse(argument, f"{shown} redirects to an invalid URL", "Pass the image's final URL") from None
            except (TimeoutError, httpx.TimeoutException):
                raise _refuse(argument, f"{shown} did not deliver an image within {limit:g} s") from None
            except httpx.HTTPError as exc:
                raise _refuse(
                    argument, f"{shown} could not be fetched ({type(exc).__name__})", "Check that the URL works"
                ) from None
        raise _refuse(argument, f"{shown} redirects more than {MAX_REDIRECTS} times", "Pass the image's final URL")

    async def _get(self, client: httpx.AsyncClient, url: httpx.URL, argument: str, shown: str) -> bytes | httpx.URL:
        """One request, to an address checked here: the image's bytes, or the URL a redirect points to.

        The connection goes to the checked address itself (the host is never resolved a second time), with
        the original host in the ``Host`` header and as the TLS server name, so certificates are checked
        against the host the URL names.
        """
        address = await self._checked_address(url, argument)
        headers = {"Host": url.netloc.decode("ascii"), "Accept": ", ".join(PIL_FORMATS), "Accept-Encoding": "identity"}
        extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
        request = client.build_request("GET", url.copy_with(host=str(address)), headers=headers, extensions=extensions)
        response = await client.send(request, stream=True)
        try:
            if response.has_redirect_location:
                return url.join(response.headers["Location"])
            if response.status_code != 200:
                raise _refuse(argument, f"{shown} answered HTTP {response.status_code}", "Check that the URL works")
            return await self._read_body(response, argument, shown)
        finally:
            await response.aclose()

    async def _checked_address(self, url: httpx.URL, argument: str) -> IPAddress:
        shown = _shown(str(url))
        if url.scheme not in ("http", "https") or not url.host:
            raise _refuse(argument, f"{shown} is not an http(s) URL", "Pass an http(s) URL of the image")
        if url.userinfo:
            raise _refuse(argument, "URLs with credentials are not accepted", "Pass a URL without user:password@")
        try:
            addresses = await resolve_host(
                url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80)
            )
        except (OSError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            raise _refuse(argument, f"the host of {shown} could not be resolved", "Check the host name")
        refused = [str(address) for address in addresses if not self.policy.address_allowed(address)]
        if refused:
            raise _refuse(
                argument,
                f"{shown} leads to {', '.join(refused)}, an address this server does not fetch from "
                "(only public internet addresses are allowed)",
                "Pass an image on a public web server, or the image itself as a data:image/png;base64,... URI",
            )
        return addresses[0]

    async def _read_body(self, response: httpx.Response, argument: str, shown: str) -> bytes:
        """The body as sent (no content decoding, so a small compressed body cannot expand), at most max_bytes."""
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            raise _refuse(argument, f"{shown} was sent with content encoding {encoding!r}; images must be sent as is")
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.policy.max_bytes:
            raise self._too_large(argument, shown)
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self.policy.max_bytes:
                raise self._too_large(argument, shown)
        return bytes(body)

    # -- decoding ------------------------------------------------------------------------------------------

    def _inspect(
        self, data: bytes, argument: str, source: InputSource, image_id: str | None
    ) -> tuple[InputImage, Image.Image]:
        """Check the bytes (:func:`~imagegen_mcp.images.decode_image`), in the words of the argument. A stored
        image was decoded and checked when it was saved: its header is enough."""
        try:
            decoded = decode_image(data, self.policy.max_pixels, verified=source == "imagegen")
        except UnusableImageError as unusable:
            if unusable.kind == "format":
                raise _refuse(
                    argument, f"the content is not a {_FORMS_SHOWN} image", "Convert the image to PNG, JPEG or WebP"
                ) from None
            if unusable.kind == "pixels":
                raise self._too_many_pixels(argument, unusable.size) from None
            raise _refuse(argument, f"the content {unusable.problem}") from None
        mime_type, image = decoded.mime_type, decoded.image
        checked = InputImage(
            data=data,
            mime_type=mime_type,
            width=image.width,
            height=image.height,
            sha256=hashlib.sha256(data).hexdigest(),
            image_id=image_id,
            source=source,
            argument=argument,
        )
        return checked, image

    def _too_many_pixels(self, argument: str, size: tuple[int, int] | None = None) -> InvalidRequestError:
        dimensions = f" ({size[0]}x{size[1]})" if size else ""
        return _refuse(
            argument,
            f"the image{dimensions} has more than the {self.policy.max_pixels:,} pixels allowed per input image",
            "Scale the image down before passing it",
        )

    def _as_mask(self, mask: tuple[InputImage, Image.Image], image: InputImage, argument: str) -> InputImage:
        source, decoded = mask
        grey = self._grey(decoded, argument)
        if grey.size != (image.width, image.height):
            width, height = grey.size
            if abs(width * image.height - image.width * height) > _ASPECT_TOLERANCE * image.width * height:
                raise _refuse(
                    argument,
                    f"the mask is {width}x{height} but the image is {image.width}x{image.height}; a mask must "
                    "have the image's size or its aspect ratio (within 1 %)",
                    f"Draw the mask at {image.width}x{image.height}",
                )
            grey = grey.resize((image.width, image.height), Image.Resampling.BILINEAR)
        brightest = grey.getextrema()[1]
        if not isinstance(brightest, int) or brightest < _BLACK_LEVEL:
            raise _refuse(
                argument,
                "the mask is black everywhere, so it marks nothing to repaint (white marks the area to repaint)",
                "Paint the area to change white and the rest black",
                "To change the whole image, leave the mask out",
            )
        buffer = io.BytesIO()
        grey.save(buffer, format="PNG", compress_level=1)  # masks are flat areas: fast and still small
        data = buffer.getvalue()
        return InputImage(
            data=data,
            mime_type="image/png",
            width=image.width,
            height=image.height,
            sha256=hashlib.sha256(data).hexdigest(),
            image_id=source.image_id,
            source=source.source,
            argument=argument,
        )

    @staticmethod
    def _grey(decoded: Image.Image, argument: str) -> Image.Image:
        """The mask as one 8-bit channel; alpha, where present, darkens (transparent counts as black)."""
        image = decoded.convert("RGBA") if decoded.mode in ("P", "PA") else decoded
        if image.mode in ("1", "L"):
            return image.convert("L")
        if image.mode == "LA":
            luminance, alpha = image.split()
            return ImageChops.multiply(luminance, alpha)
        if image.mode not in ("RGB", "RGBA"):
            raise _refuse(
                argument,
                f"the mask's pixel format ({image.mode}) is not one a mask can have",
                "Save the mask as an 8-bit greyscale or black-and-white PNG",
            )
        red, green, blue = image.split()[:3]
        spread = ImageChops.lighter(ImageChops.difference(red, green), ImageChops.difference(green, blue))
        spread = ImageChops.lighter(spread, ImageChops.difference(red, blue))
        widest = spread.getextrema()[1]
        if not isinstance(widest, int) or widest > _GREY_TOLERANCE:
            raise _refuse(
                argument,
                "the image given as mask has colours, so it is not a mask: a mask is greyscale, white where the "
                "image is to be repainted and black where it is to be kept",
                "Pass a black-and-white (or greyscale) image of the same size as the image",
            )
        luminance = image.convert("L")
        return ImageChops.multiply(luminance, image.getchannel("A")) if image.mode == "RGBA" else luminance
