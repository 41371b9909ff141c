"""Where a connection to a provider may go: public addresses only, resolved once and connected to as checked.

Every connection a :class:`tasks.media.http.Fetcher` opens (the first request, every redirect, Twilio's API)
goes through :class:`PinnedAdapter`: the host name is resolved once, every address it resolves to is checked,
and the socket is connected to a checked address, never to a second resolution of the name (a DNS answer that
changes between the check and the connection, "DNS rebinding", cannot slip a private address in). The name
still goes in the Host header and, over https, in TLS SNI and the certificate check.

An address passes when it is global unicast (not loopback, private, link-local, shared, reserved, multicast or
unspecified; an IPv4-mapped IPv6 address is judged by its IPv4 address). A host listed in both
``RECPLAY_INTERNAL_MEDIA_HOSTS`` and ``RECPLAY_MEDIA_HOSTS`` may resolve anywhere: the stand-ins of tests and
``make run``, or a media host on a private network.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.poolmanager import PoolManager
from urllib3.util.connection import create_connection

from tasks.errors import ProviderError

DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressNotAllowed(ProviderError):
    """Raised when a media host resolves to an address recplay may not connect to (permanent)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def listed(entries: tuple[str, ...], scheme: str, host: str, port: int) -> bool:
    """Whether (scheme, host, port) is on a host list: an entry ``host`` stands for the scheme's default port,
    ``host:port`` for exactly that port (``[v6]:port`` for an IPv6 address)."""
    host = host.lower().strip("[]")
    shown = f"[{host}]" if ":" in host else host
    for entry in entries:
        if entry == f"{shown}:{port}":
            return True
        if entry in (host, shown) and port == DEFAULT_PORTS.get(scheme):
            return True
    return False


def is_public(address: str) -> bool:
    """Whether ``address`` is a global unicast address (an IPv4-mapped IPv6 one judged by its IPv4 part)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a host may be connected at: ``internal`` hosts that are also on ``allowlist`` anywhere,
    every other host only at public addresses."""

    allowlist: tuple[str, ...]
    internal: tuple[str, ...]

    def may_be_private(self, scheme: str, host: str, port: int) -> bool:
        return listed(self.internal, scheme, host, port) and listed(self.allowlist, scheme, host, port)

    def check(self, scheme: str, host: str, port: int, addresses: list[str]) -> list[str]:
        """``addresses`` (what ``host`` resolved to), if the host may be connected at all of them.

        Raises:
            AddressNotAllowed: one of them is not public and the host is not an internal one.
        """
        if not addresses:
            raise AddressNotAllowed(f"{host} resolves to no address")
        if self.may_be_private(scheme, host, port):
            return addresses
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise AddressNotAllowed(
                f"{host} resolves to a non-public address ({refused[0]}); only hosts listed in "
                "RECPLAY_INTERNAL_MEDIA_HOSTS (and RECPLAY_MEDIA_HOSTS) may")
        return addresses


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for TCP, in the resolver's order, without repeats.

    Raises:
        socket.gaierror: the name does not resolve.
    """
    found: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


class _PinnedConnection(HTTPConnection):
    """An HTTP connection that connects only to addresses its policy allows, resolved once."""

    address_policy: AddressPolicy
    scheme = "http"

    def _new_conn(self) -> socket.socket:
        try:
            addresses = resolve(self.host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        checked = self.address_policy.check(self.scheme, self.host, self.port, addresses)
        last: OSError | None = None
        for address in checked:
            try:
                # The checked address itself: no second lookup of the name can answer differently.
                return create_connection((address, self.port), self.timeout, source_address=self.source_address,
                                         socket_options=self.socket_options)
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                                f"(connect timeout={self.timeout})") from exc
            except OSError as exc:
                last = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}")


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    """Over TLS: the socket goes to the checked address; SNI and the certificate check use the host name (the
    connection's ``host``, which pinning never changes)."""

    scheme = "https"


def _pool_classes(policy: AddressPolicy) -> Mapping[str, type[HTTPConnectionPool]]:
    class Connection(_PinnedConnection):
        address_policy = policy

    class TLSConnection(_PinnedHTTPSConnection):
        address_policy = policy

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    return {"http": Pool, "https": TLSPool}


class PinnedAdapter(HTTPAdapter):
    """A requests transport whose every connection obeys ``policy`` (:class:`AddressPolicy`)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        manager: PoolManager = self.poolmanager
        manager.pool_classes_by_scheme = dict(_pool_classes(self.policy))
        # Proxies are never used (the session does not read the environment), so no proxy manager needs this.
