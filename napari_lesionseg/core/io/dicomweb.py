"""A PACS over DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with dicomweb-client: list studies and series, fetch a series
into a Scan through the project's DICOM reader, store a DICOM SEG (and its measurement report) back to the study.

Safety:
- credentials never travel in a URL that is printed, logged or kept: a `user:password@` in the URL is moved into
  the HTTP session (basic auth), a token goes in an `Authorization: Bearer` header; `redact()` is what messages show;
- every request has a bounded timeout, and no automatic retries (a PACS that is down fails at once, clearly);
- a fetched series is written to a private temporary folder, read, and the folder deleted: the scan keeps its
  DICOM references (UIDs, header) in its geometry, not paths to files that no longer exist;
- storing sends one STOW-RS request holding every object; the SEG is built (and so checked) before any request.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from ..errors import LesionSegError

NON_IMAGE_MODALITIES = {"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "DOC", "OT_REPORT", "FID"}
DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0


@dataclass
class PacsLogin:
    """Where the PACS is and how to log in (kept apart from the URL so the URL can be shown)."""

    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    ca_bundle: str | None = None
    """A CA certificate file for https with a hospital's own certificate authority."""


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(URL without user:password@, user, password)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LesionSegError(f"{redact(url)} is not a DICOMweb address; it should look like "
                             "https://pacs.example.org/dicom-web (or http://127.0.0.1:8042/dicom-web).")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, ""))
    return clean, parts.username, parts.password


def redact(url: str) -> str:
    """The URL with any user name and password replaced by '***' (what messages and logs may show)."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<address>"
    if parts.username is None and parts.password is None:
        return str(url)
    netloc = "***@" + parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _Session(requests.Session):
    """A requests session whose CA file, when given, wins over REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (requests otherwise
    lets those environment variables override a session's own `verify`)."""

    ca_bundle: str | None = None

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.ca_bundle:
            settings["verify"] = self.ca_bundle
        return settings


def connect(login: PacsLogin | str):
    """A dicomweb-client `DICOMwebClient` for `login` (https with basic or token auth, bounded timeouts)."""
    from dicomweb_client.api import DICOMwebClient

    if isinstance(login, str):
        login = PacsLogin(url=login)
    url, user, password = split_credentials(login.url)
    user, password = login.username or user, login.password if login.password is not None else password
    session = _Session()
    if user:
        session.auth = (user, password or "")
    if login.token:
        session.headers["Authorization"] = f"Bearer {login.token}"
    if login.ca_bundle:
        if not Path(login.ca_bundle).is_file():
            raise LesionSegError(f"The CA certificate file {login.ca_bundle} does not exist.")
        session.verify = session.ca_bundle = str(login.ca_bundle)
    client = DICOMwebClient(url=url, session=session, timeout=(CONNECT_TIMEOUT, float(login.timeout)))
    client.set_http_retry_params(retry=False)
    client.lesionseg_url = url  # the clean URL, for messages
    return client


def _where(client) -> str:
    return redact(getattr(client, "lesionseg_url", getattr(client, "base_url", "the PACS")))


def _call(client, what: str, fn, *args, **kw):
    """Run one DICOMweb request; network and HTTP failures become one clear LesionSegError."""
    try:
        return fn(*args, **kw)
    except requests.exceptions.SSLError:
        raise LesionSegError(f"Could not {what}: the PACS at {_where(client)} has a certificate this computer does "
                             "not trust (give its CA certificate file).") from None
    except requests.exceptions.Timeout:
        raise LesionSegError(f"Could not {what}: the PACS at {_where(client)} did not answer in time.") from None
    except requests.exceptions.ConnectionError:
        raise LesionSegError(f"Could not {what}: the PACS at {_where(client)} cannot be reached (is it running, "
                             "and is the address right?).") from None
    except requests.exceptions.HTTPError as e:
        code = e.response.status_code if e.response is not None else 0
        if code in (401, 403):
            reason = "refused the login (check the user name and password, or the token)"
        elif code == 404:
            reason = "does not have it (or this address is not its DICOMweb root)"
        else:
            reason = f"answered with an error (HTTP {code})"
        raise LesionSegError(f"Could not {what}: the PACS at {_where(client)} {reason}.") from None
    except requests.exceptions.RequestException as e:
        raise LesionSegError(f"Could not {what}: {type(e).__name__} talking to {_where(client)}.") from None


def _value(item: dict, tag: str, default=""):
    v = (item.get(tag) or {}).get("Value")
    if not v:
        return default
    first = v[0]
    if isinstance(first, dict):  # PersonName
        return str(first.get("Alphabetic", ""))
    return first if len(v) == 1 else v


def list_studies(client, patient_id: str | None = None, limit: int = 200) -> list[dict]:
    """Studies on the PACS: uid, patient, date, description, modalities (QIDO-RS)."""
    filters = {"PatientID": patient_id} if patient_id else None
    found = _call(client, "list the studies", client.search_for_studies, search_filters=filters, limit=limit,
                  fields=["StudyDescription", "ModalitiesInStudy", "PatientName", "PatientID", "StudyDate"])
    out = []
    for item in found or []:
        mods = _value(item, "00080061", [])
        out.append({"study_uid": str(_value(item, "0020000D")), "patient_id": str(_value(item, "00100020")),
                    "patient_name": str(_value(item, "00100010")), "date": str(_value(item, "00080020")),
                    "description": str(_value(item, "00081030")),
                    "modalities": [mods] if isinstance(mods, str) else list(mods)})
    return sorted(out, key=lambda s: (s["date"], s["study_uid"]))


def list_series(client, study_uid: str) -> list[dict]:
    """Series of one study: uid, modality, description, number, number of instances, and whether it is an image."""
    found = _call(client, "list the series of the study", client.search_for_series, study_instance_uid=study_uid,
                  fields=["SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesNumber", "Modality"])
    out = []
    for item in found or []:
        modality = str(_value(item, "00080060"))
        number = _value(item, "00200011", 0)
        out.append({"series_uid": str(_value(item, "0020000E")), "modality": modality,
                    "description": str(_value(item, "0008103E")), "number": int(number or 0),
                    "instances": int(_value(item, "00201209", 0) or 0),
                    "is_image": modality.upper() not in NON_IMAGE_MODALITIES})
    return sorted(out, key=lambda s: (s["number"], s["series_uid"]))


def series_label(s: dict) -> str:
    """How a series is shown in a list: '3 MR T1 post (120 images)'."""
    kind = "images" if s.get("is_image", True) else "objects"
    return f"{s['number']} {s['modality']} {s['description'] or '(no description)'} ({s['instances']} {kind})".strip()


def fetch_series(client, study_uid: str, series_uid: str) -> list:
    """The series as Scans, through the project's DICOM reader (same geometry as from disk)."""
    from .dicom import read_dicom_folder
    from .dicom_seg import is_seg_dataset

    info = [s for s in list_series(client, study_uid) if s["series_uid"] == series_uid]
    if not info:
        raise LesionSegError(f"The PACS at {_where(client)} has no series {series_uid} in study {study_uid}.")
    if not info[0]["is_image"]:
        raise LesionSegError(f"Series '{series_label(info[0])}' is a {info[0]['modality']} object, not an image; "
                             "choose an image series to segment.")
    datasets = _call(client, "fetch the series", client.retrieve_series, study_uid, series_uid)
    images = [ds for ds in datasets or [] if "PixelData" in ds and not is_seg_dataset(ds)]
    if not images:
        raise LesionSegError(f"Series '{series_label(info[0])}' holds no image to segment.")
    with tempfile.TemporaryDirectory(prefix="lesionseg-pacs-") as tmp:
        for k, ds in enumerate(images):
            ds.save_as(Path(tmp) / f"{k:05d}.dcm", enforce_file_format=True)
        scans = read_dicom_folder(tmp)
    for scan in scans:
        extra = scan.geometry.extra
        extra.update(source_path=None, source_files=[],
                     dicomweb={"url": _where(client), "study_uid": study_uid, "series_uid": series_uid})
    return scans


def store_instances(client, datasets: list, study_uid: str) -> list[str]:
    """Store `datasets` in the study in one STOW-RS request; returns their SOP Instance UIDs as the PACS confirmed."""
    if not datasets:
        return []
    for ds in datasets:
        if str(ds.StudyInstanceUID) != str(study_uid):
            raise LesionSegError("An object to store belongs to another study; nothing was stored.")
    # The study must be there: a PACS that is down or refuses fails here, before anything is sent.
    _call(client, "check the study on the PACS", client.search_for_series, study_instance_uid=study_uid, limit=1)
    answer = _call(client, "store the result on the PACS", client.store_instances, datasets=datasets,
                   study_instance_uid=study_uid)
    failed = list(getattr(answer, "FailedSOPSequence", []) or [])
    stored = [str(it.ReferencedSOPInstanceUID) for it in getattr(answer, "ReferencedSOPSequence", []) or []]
    if failed:
        reasons = ", ".join(f"{getattr(it, 'ReferencedSOPInstanceUID', '?')} "
                            f"(reason {getattr(it, 'FailureReason', '?')})" for it in failed)
        raise LesionSegError(f"The PACS at {_where(client)} refused {len(failed)} of {len(datasets)} object(s): "
                             f"{reasons}. Stored: {len(stored)}.")
    missing = {str(ds.SOPInstanceUID) for ds in datasets} - set(stored)
    if missing:
        raise LesionSegError(f"The PACS at {_where(client)} did not confirm {len(missing)} stored object(s).")
    return stored


def fetch_instance(client, study_uid: str, series_uid: str, sop_uid: str):
    """One stored object (e.g. the SEG just sent) as a pydicom Dataset."""
    return _call(client, "fetch the object", client.retrieve_instance, study_uid, series_uid, sop_uid)


@contextlib.contextmanager
def closing(client):
    """Close the client's HTTP session after use."""
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client._session.close()


def seg_with_report(mask, geometry, **seg_kw) -> list:
    """[SEG, measurement SR] of `mask` on its DICOM source (both built, and so checked, before any request)."""
    from .dicom_seg import build_seg
    from .dicom_sr import build_measurement_report

    seg = build_seg(mask, geometry, **seg_kw)
    return [seg, build_measurement_report(seg, mask, geometry)]


def store_mask(client, mask, geometry, **seg_kw) -> list:
    """Store `mask` as a DICOM SEG plus its measurement report in its source's study; returns the stored datasets."""
    header = geometry.header if isinstance(geometry.header, dict) else {}
    study = str(header.get("StudyInstanceUID") or "")
    if not study:
        raise LesionSegError("The mask's scan does not name its DICOM study; it cannot be stored on a PACS.")
    objects = seg_with_report(mask, geometry, **seg_kw)
    store_instances(client, objects, study)
    return objects


def fetch_segs(client, study_uid: str, series_uid: str) -> list:
    """The DICOM SEG objects of a SEG series (pydicom Datasets)."""
    from .dicom_seg import is_seg_dataset

    datasets = _call(client, "fetch the segmentation", client.retrieve_series, study_uid, series_uid)
    segs = [ds for ds in datasets or [] if is_seg_dataset(ds)]
    if not segs:
        raise LesionSegError(f"Series {series_uid} holds no DICOM SEG.")
    return segs


def segs_on_sources(client, study_uid: str, segs: list, open_scans: list) -> list:
    """Labels Scans of `segs`, each on its source: one of `open_scans` (already in the viewer), else its series
    fetched from the PACS (returned too, before its labels). A source the PACS does not have is a clear error."""
    from .dicom_seg import missing_source_message, referenced_series, seg_on_scans

    out: list = []
    known = list(open_scans)
    for seg in segs:
        labels = seg_on_scans(seg, known)
        if labels is None:
            _, source_series = referenced_series(seg)
            in_study = {s["series_uid"] for s in list_series(client, study_uid)}
            if source_series not in in_study:
                raise LesionSegError(missing_source_message(seg, f"on the PACS (study {study_uid})"))
            fetched = fetch_series(client, study_uid, source_series)
            known.extend(fetched)
            labels = seg_on_scans(seg, fetched)
            if labels is None:
                raise LesionSegError(missing_source_message(seg, "on the PACS"))
            out.append(next(s for s in fetched if s.geometry is labels.geometry))
        out.append(labels)
    return out
