"""Where the worker may connect: hosts on the allowlist (checked again at fetch time), redirects only to allowed
places, public addresses only (but for RECPLAY_INTERNAL_MEDIA_HOSTS), resolved once and connected to as checked.

The worker tests run a real ``celery worker``; the pinning tests drive the fetcher in this process, some with a
scripted resolver standing in for a DNS server whose answer changes between two lookups (rebinding): the
machine's resolver cannot be pointed at a test DNS server.
"""

from __future__ import annotations

import dataclasses
import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tasks.errors import ProviderError
from tasks.media.addresses import AddressPolicy, is_public, listed
from tasks.media.http import Fetcher, new_session
from tasks.media.local import MediaStore
from tests.conftest import assert_quiescent
from tests.provider import make_wav
from tests.twilio_standin import ACCOUNT_SID, API_KEY, API_SECRET, Media, TwilioStandIn, mp3_bytes

WAV = make_wav(0.2)


class Listener:
    """A TCP listener that counts the connections it accepts and closes them: a place nobody should reach."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, name="listener", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    made: list[Listener] = []
    yield made
    for listener in made:
        listener.close()


def test_addresses_and_host_lists():
    assert [is_public(a) for a in ("93.184.215.14", "2606:4700::1111")] == [True, True]
    private = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
               "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "224.0.0.1", "192.0.2.1",
               "255.255.255.255", "::"]
    assert [a for a in private if is_public(a)] == []
    assert listed(("media.example",), "https", "media.example", 443)
    assert not listed(("media.example",), "https", "media.example", 8443)
    assert listed(("media.example:8443",), "https", "media.example", 8443)
    assert listed(("[::1]:8000",), "http", "::1", 8000)
    policy = AddressPolicy(allowlist=("a.example", "b.example:8080"), internal=("b.example:8080", "c.example"))
    assert policy.may_be_private("http", "b.example", 8080)
    assert not policy.may_be_private("http", "a.example", 80)  # not internal
    assert not policy.may_be_private("https", "c.example", 443)  # internal, but not on the allowlist
    assert policy.check("https", "a.example", 443, ["93.184.215.14"]) == ["93.184.215.14"]
    with pytest.raises(ProviderError, match="non-public address"):
        policy.check("https", "a.example", 443, ["93.184.215.14", "10.0.0.1"])  # every address must pass
    assert policy.check("http", "b.example", 8080, ["10.0.0.1"]) == ["10.0.0.1"]


def test_a_redirect_off_the_allowlist_is_never_followed_and_no_credentials_travel(api_for, provider, procs,
                                                                                  listeners, monkeypatch):
    # Given a provider whose media redirects: to a host name off the allowlist (the same server, by another
    # name), to https on loopback addresses off the lists, and to an allowed place
    loopback_v4 = Listener("127.0.0.1")
    other_loopback = Listener("127.0.0.2")
    listeners += [loopback_v4, other_loopback]
    port = provider.port
    cases = {
        "CAname": (f"http://localhost:{port}/biz/target.wav", "failed", "redirect to a host that is not allowed"),
        "CAhttps2": (f"https://127.0.0.2:{other_loopback.port}/x.wav", "failed", "non-public address"),
        "CAlocal": (f"https://localhost:{loopback_v4.port}/x.wav", "failed", "non-public address"),
        "CAmeta": ("http://169.254.169.254/latest/meta-data/", "failed", "redirect to a host that is not allowed"),
        "CAgood": (provider.url("/biz/target.wav"), "ready", None),
    }
    provider.add("/biz/target.wav", body=WAV)
    procs.worker(concurrency=4)
    api = api_for("biz")
    for call_sid, (target, _, _) in cases.items():
        api.register(call_sid, provider.add(f"/biz/{call_sid}", redirect_to=target))
        api.fetch(call_sid)
    for call_sid, (_, expected, error) in cases.items():
        found = api.wait_status(call_sid, {"ready", "failed"}, 30)
        assert found["status"] == expected, (call_sid, found)
        if error:
            assert error in found["error"], (call_sid, found)
            assert found["attempts"] == 1  # permanent
    # Then nothing off the allowlist was reached
    assert provider.requests["/biz/target.wav"] == 1  # CAgood's, through the allowed redirect
    assert (loopback_v4.accepted, other_loopback.accepted) == (0, 0)
    assert_quiescent()


def test_twilio_credentials_never_follow_a_redirect(data_dir, provider, procs, api_for, monkeypatch):
    # Given Twilio's media redirecting to signed storage (allowed, another host) and to a host off the allowlist
    standin = TwilioStandIn((API_KEY, API_SECRET)).start()
    try:
        for name, value in {"RECPLAY_TWILIO_API_BASE": standin.base, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                            "TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET,
                            "RECPLAY_MEDIA_HOSTS": f"{provider.host},{standin.host}",
                            "RECPLAY_INTERNAL_MEDIA_HOSTS": f"{provider.host},{standin.host}"}.items():
            monkeypatch.setenv(name, value)
        storage = provider.add("/storage/a.mp3", body=mp3_bytes(2000), content_type="audio/mpeg")
        signed = standin.add_recording("CA" + "1" * 32, 1, Media(mp3=b"", wav=b"", redirect_to=storage))
        elsewhere = standin.add_recording("CA" + "2" * 32, 2, Media(
            mp3=b"", wav=b"", redirect_to=f"http://localhost:{provider.port}/storage/a.mp3"))
        from tasks.settings import reset_settings

        reset_settings()
        procs.worker(concurrency=2)
        from api import create_app
        from tests.conftest import Api

        api = Api(create_app({"TESTING": True}).test_client(), "biz")
        for call_sid, url in (("CA" + "1" * 32, signed), ("CA" + "2" * 32, elsewhere)):
            assert api.register(call_sid, url, provider="twilio").status_code == 201
            api.fetch(call_sid)
        assert api.wait_status("CA" + "1" * 32, {"ready", "failed"}, 30)["status"] == "ready"
        refused = api.wait_status("CA" + "2" * 32, {"ready", "failed"}, 30)
        assert (refused["status"], refused["error"]) == ("failed", "redirect to a host that is not allowed")
        # Then Twilio got its credentials, the storage host never did, and the host off the list saw nothing
        assert all(auth and auth.startswith("Basic ") for auth in standin.auth_of("/Recordings/"))
        assert provider.auth_headers["/storage/a.mp3"] == [None]
        assert provider.requests["/storage/a.mp3"] == 1
    finally:
        standin.stop()


def test_an_allowed_host_that_resolves_to_loopback_is_refused_unless_it_is_internal(api_for, provider, procs,
                                                                                    monkeypatch):
    # Given `localhost:<port>` on the allowlist, but not on RECPLAY_INTERNAL_MEDIA_HOSTS
    alias = f"localhost:{provider.port}"
    env = {"RECPLAY_MEDIA_HOSTS": f"{provider.host},{alias}"}
    monkeypatch.setenv("RECPLAY_MEDIA_HOSTS", env["RECPLAY_MEDIA_HOSTS"])
    from tasks.settings import reset_settings

    reset_settings()
    provider.add("/biz/a.wav", body=WAV)
    procs.worker(concurrency=2, env=env)
    from api import create_app
    from tests.conftest import Api

    api = Api(create_app({"TESTING": True}).test_client(), "biz")
    assert api.register("CA1", f"http://{alias}/biz/a.wav").status_code == 201
    api.fetch("CA1")
    found = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert found["status"] == "failed"
    assert "resolves to a non-public address" in found["error"]
    assert provider.requests["/biz/a.wav"] == 0
    # The same host listed as internal too: fetched.
    procs.stop_all()
    procs.worker(concurrency=2, env={**env, "RECPLAY_INTERNAL_MEDIA_HOSTS": f"{provider.host},{alias}"})
    api.fetch("CA1")
    assert api.wait_status("CA1", {"ready", "failed"}, 30)["status"] == "ready"
    assert provider.requests["/biz/a.wav"] == 1


def test_a_host_removed_from_the_allowlist_is_no_longer_fetched(api_for, provider, procs):
    # Given a recording registered while its host was allowed
    api = api_for("biz")
    assert api.register("CA1", provider.add("/biz/a.wav", body=WAV)).status_code == 201
    # When the host is removed from the allowlist of the workers
    procs.worker(concurrency=2, env={"RECPLAY_MEDIA_HOSTS": "media.example"})
    api.fetch("CA1")
    # Then the download never starts
    found = api.wait_status("CA1", {"ready", "failed"}, 30)
    assert (found["status"], found["attempts"]) == ("failed", 1)
    assert found["error"] == "media host is no longer on the allowlist (RECPLAY_MEDIA_HOSTS)"
    assert provider.requests["/biz/a.wav"] == 0


# ---- one resolution, connected to as checked ---------------------------------------------------------------

class ScriptedResolver:
    """``socket.getaddrinfo`` answering the script's addresses for one name, one answer per lookup (the last
    one repeats); every other name goes to the real resolver."""

    def __init__(self, name: str, answers: list[str]) -> None:
        self.name, self.answers, self.lookups = name, answers, 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != self.name:
            return self.real(host, port, *args, **kwargs)
        address = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]


def _fetcher(settings: Any, **changes: Any) -> Fetcher:
    return Fetcher(dataclasses.replace(settings, **changes), new_session())


def _fetch(fetcher: Fetcher, url: str) -> Any:
    store = MediaStore(fetcher.settings.media_dir)
    partial = store.open_partial("biz", "CA1")
    try:
        return fetcher.fetch(url, partial)
    finally:
        partial.discard()


def test_a_name_that_rebinds_to_loopback_after_the_check_is_never_connected_to_loopback(settings, listeners,
                                                                                         monkeypatch):
    # Given a name that first resolves to a public address, then to loopback (where something listens)
    target = Listener("127.0.0.1")
    listeners.append(target)
    resolver = ScriptedResolver("rebind.test", ["93.184.215.14", "127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    fetcher = _fetcher(settings, media_hosts=(f"rebind.test:{target.port}",), connect_timeout=0.5)
    # When the worker fetches from it
    with pytest.raises(ProviderError) as failed:
        _fetch(fetcher, f"http://rebind.test:{target.port}/a.wav")
    # Then it resolved once and connected (or tried to) only to the public address it checked
    assert failed.value.permanent is False  # the public address is unreachable from here
    assert resolver.lookups == 1
    assert target.accepted == 0


def test_the_checked_address_is_the_one_connected_to_and_the_host_header_keeps_the_name(settings, provider,
                                                                                      monkeypatch):
    # Given an internal name that resolves to the provider's loopback address first, and to an address where
    # nothing listens afterwards
    resolver = ScriptedResolver("media.internal", ["127.0.0.1", "10.255.255.1"])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    host = f"media.internal:{provider.port}"
    provider.add("/biz/a.wav", body=WAV)
    fetcher = _fetcher(settings, media_hosts=(host,), internal_media_hosts=(host,), connect_timeout=2)
    written = _fetch(fetcher, f"http://{host}/biz/a.wav")
    assert written.size_bytes == len(WAV)
    assert resolver.lookups == 1
    assert provider.requests["/biz/a.wav"] == 1
    assert provider.host_headers["/biz/a.wav"] == [host]


def _certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate for ``name`` signed by it: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recplay test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class TLSMedia:
    """An https media host on loopback with a certificate for one name; records the SNI and Host it was sent."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.sni: list[str | None] = []
        self.hosts: list[str | None] = []
        media = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                media.hosts.append(self.headers.get("Host"))
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(WAV)))
                self.end_headers()
                self.wfile.write(WAV)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, name, ctx: media.sni.append(name)  # type: ignore[assignment,misc]
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="tls-media", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("certified", ["media.internal", "someone.else"])
def test_over_https_the_name_goes_in_sni_and_the_certificate_check(settings, tmp_path, monkeypatch, certified):
    ca, cert, key = _certificates(tmp_path, certified)
    server = TLSMedia(cert, key)
    try:
        monkeypatch.setattr(socket, "getaddrinfo", ScriptedResolver("media.internal", ["127.0.0.1"]))
        host = f"media.internal:{server.port}"
        fetcher = _fetcher(settings, media_hosts=(host,), internal_media_hosts=(host,), connect_timeout=2)
        fetcher.session.verify = str(ca)
        url = f"https://{host}/a.wav"
        if certified == "media.internal":
            assert _fetch(fetcher, url).size_bytes == len(WAV)
            assert (server.sni, server.hosts) == (["media.internal"], [host])
        else:
            # A certificate for another name is refused, though the address is the right one.
            with pytest.raises(ProviderError, match="provider unreachable: SSLError"):
                _fetch(fetcher, url)
            assert server.hosts == []
    finally:
        server.stop()


def test_the_fetcher_reads_no_proxy_or_credentials_from_the_environment(settings, provider, monkeypatch, tmp_path):
    # Given a proxy and a .netrc with credentials for the provider in the environment
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    provider.add("/biz/a.wav", body=WAV)
    # When the fetcher downloads
    written = _fetch(_fetcher(settings), provider.url("/biz/a.wav"))
    # Then it went straight to the provider and sent nothing it found there
    assert written.size_bytes == len(WAV)
    assert provider.auth_headers["/biz/a.wav"] == [None]
    assert requests.Session().trust_env  # what the fetcher turns off
