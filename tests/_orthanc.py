"""A throw-away Orthanc PACS for the DICOMweb tests: started on a free 127.0.0.1 port with its own storage folder
and the DICOMweb plugin, with basic auth, and stopped after. Skips cleanly when Orthanc is not installed
(Debian: `apt-get install orthanc orthanc-dicomweb`, which scripts/ensure_pacs_deps.sh does for `make test`)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PLUGIN_PLACES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so",
                 "/usr/lib/orthanc/libOrthancDicomWeb.so.1.7", "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "clinician", "not-a-real-secret"


@dataclass
class Orthanc:
    port: int
    process: subprocess.Popen
    folder: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    def log(self) -> str:
        p = self.folder / "orthanc.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""


def dicomweb_plugin() -> str | None:
    for p in PLUGIN_PLACES:
        if Path(p).exists():
            return p
    found = sorted(Path("/usr").glob("**/libOrthancDicomWeb.so*")) if Path("/usr/lib/orthanc").exists() else []
    return str(found[0]) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_orthanc(folder: Path, timeout: float = 60.0) -> Orthanc:
    binary = shutil.which("Orthanc")
    plugin = dicomweb_plugin()
    if binary is None or plugin is None:
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (apt-get install orthanc orthanc-dicomweb)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "lesionseg-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "OrthancExplorerEnabled": False, "WebDavEnabled": False, "HttpThreadsCount": 4, "ConcurrentJobs": 1,
        "StableAge": 1, "SaveJobs": False, "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": f"127.0.0.1:{port}"},
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=1))
    log = open(folder / "orthanc.log", "wb")
    proc = subprocess.Popen([binary, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    server = Orthanc(port=port, process=proc, folder=folder)
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited at start (code {proc.returncode}):\n{server.log()}")
        try:
            r = requests.get(f"{server.base}/system", auth=(USER, PASSWORD), timeout=2)
            if r.ok:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.3)
    stop_orthanc(server)
    raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s:\n{server.log()}")


def stop_orthanc(server: Orthanc) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def upload(server: Orthanc, files) -> None:
    """Upload DICOM files through Orthanc's own REST API (as a modality would send them)."""
    import requests

    for f in files:
        r = requests.post(f"{server.base}/instances", data=Path(f).read_bytes(), auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()


def pacs_with_duke_series(folder: Path):
    """A generator for a module fixture: Orthanc holding the Duke subtraction series (`_duke_dicom`), stopped after."""
    from _duke_dicom import subtraction_series

    server = start_orthanc(folder / "orthanc")
    try:
        study, series, files, vol = subtraction_series(folder / "series")
        upload(server, files)
        yield {"server": server, "study": study, "series": series, "files": files, "volume": vol}
    finally:
        stop_orthanc(server)
