"""How the client logs in: https with a hospital's own certificate authority (a TLS server on 127.0.0.1 with a
self-signed certificate made by openssl), and a bearer token sent as a header, never in the URL.

(Debian's Orthanc 1.10 with OpenSSL 3 resets https connections after the handshake, so https is tried against
Python's own TLS server here; the Orthanc tests use http on the loopback.)"""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
from contextlib import contextmanager

import pytest

from napari_lesionseg.core.errors import LesionSegError
from napari_lesionseg.core.io import dicomweb as dw


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
        body = json.dumps([]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_token_goes_in_the_authorization_header_and_a_url_password_is_never_shown():
    with _server() as (port, _):
        client = dw.connect(dw.PacsLogin(f"http://127.0.0.1:{port}/dicom-web", token="tok-123", timeout=5))
        assert dw.list_studies(client) == []
        assert _Recorder.seen[-1]["auth"] == "Bearer tok-123" and "tok-123" not in _Recorder.seen[-1]["path"]
        client = dw.connect(f"http://doctor:pa55word@127.0.0.1:{port}/dicom-web")
        dw.list_studies(client)
        assert _Recorder.seen[-1]["auth"].startswith("Basic ")  # moved from the URL into the login
        assert client.lesionseg_url == f"http://127.0.0.1:{port}/dicom-web"
        assert dw.redact(f"http://doctor:pa55word@127.0.0.1:{port}/x") == f"http://***@127.0.0.1:{port}/x"


@contextmanager
def _server(tls_folder=None):
    """A DICOMweb stand-in on 127.0.0.1 answering every QIDO query with no results; https when given a folder."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    cert = None
    if tls_folder is not None:
        if shutil.which("openssl") is None:
            pytest.skip("openssl is not installed")
        key, cert = tls_folder / "key.pem", tls_folder / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                        "-out", str(cert)], check=True, capture_output=True, timeout=60)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert
    finally:
        server.shutdown()
        server.server_close()


def test_https_needs_the_hospital_ca_and_then_works(tmp_path):
    with _server(tmp_path) as (port, cert):
        url = f"https://127.0.0.1:{port}/dicom-web"
        with pytest.raises(LesionSegError, match="certificate this computer does not trust"):
            dw.list_studies(dw.connect(dw.PacsLogin(url, "doctor", "pa55word", timeout=10)))
        trusted = dw.connect(dw.PacsLogin(url, "doctor", "pa55word", timeout=10, ca_bundle=str(cert)))
        assert dw.list_studies(trusted) == []
        assert _Recorder.seen[-1]["path"].startswith("/dicom-web/studies")
        assert _Recorder.seen[-1]["auth"].startswith("Basic ")
