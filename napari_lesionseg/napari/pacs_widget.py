"""Open from PACS…: a small magicgui form that lists a PACS's studies and series over DICOMweb, opens a series in the
viewer with its geometry (a DICOM SEG series opens as Labels on its source series: the one already open, else the
source is fetched too), and stores the selected mask back to the same study as a DICOM SEG with its measurement
report. Every request runs through the docks' worker helper (`_worker.DockJobs`: the viewer never stalls, napari's
activity dialog shows it, closing waits for it); the password and token fields are masked
and never shown in messages (`core/io/dicomweb.py` does the work)."""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, Label, LineEdit, Password, PushButton

from ..core.errors import LesionSegError


class PacsWidget(Container):
    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.url = LineEdit(label="DICOMweb URL", value="http://127.0.0.1:8042/dicom-web")
        self.user = LineEdit(label="User")
        self.password = Password(label="Password")
        self.token = Password(label="Token (instead)")
        self.list_btn = PushButton(text="List studies")
        # Choices come from callables: napari resets a dock's choices whenever layers change, and a fixed list
        # would then fall back to the empty one it was created with.
        self._studies: list = []
        self._series: list = []
        self._modalities: dict = {}
        self.study = ComboBox(label="Study", choices=lambda _w: self._studies)
        self.series = ComboBox(label="Series", choices=lambda _w: self._series)
        self.open_btn = PushButton(text="Open series")
        self.store_btn = PushButton(text="Store selected mask on the PACS")
        self.status = Label(value="")
        self.extend([self.url, self.user, self.password, self.token, self.list_btn, self.study, self.series,
                     self.open_btn, self.store_btn, self.status])
        self.list_btn.changed.connect(lambda *_: self._run(self.list_studies, self._show_studies))
        self.study.changed.connect(lambda *_: self._run(self.list_series, self._show_series))
        self.open_btn.changed.connect(lambda *_: self._run(self.fetch_selected, self.add_scans))
        self.store_btn.changed.connect(lambda *_: self._store_active())
        from ._worker import DockJobs

        self.jobs = DockJobs(self.native, status=self.status, failure_prefix="PACS request failed")

    @property
    def _worker(self):
        return self.jobs.worker

    # -- the work (synchronous; the buttons run it in a worker) -------------------------------------------
    def login(self):
        from ..core.io.dicomweb import PacsLogin

        return PacsLogin(url=self.url.value.strip(), username=self.user.value.strip() or None,
                         password=self.password.value or None, token=self.token.value or None)

    def _client(self):
        from ..core.io.dicomweb import connect

        return connect(self.login())

    def list_studies(self) -> list[dict]:
        from ..core.io.dicomweb import closing, list_studies

        with closing(self._client()) as client:
            return list_studies(client)

    def list_series(self) -> list[dict]:
        from ..core.io.dicomweb import closing, list_series

        if not self.study.value:
            return []
        with closing(self._client()) as client:
            return list_series(client, self.study.value)

    def fetch_selected(self) -> list:
        """Scans to add: the image series, or for a SEG series its labels (and its source when not open yet)."""
        from ..core.io.dicomweb import closing, fetch_segs, fetch_series, segs_on_sources

        if not self.study.value or not self.series.value:
            raise LesionSegError("List the studies and choose a study and a series first.")
        with closing(self._client()) as client:
            if self._modalities.get(self.series.value) != "SEG":
                return fetch_series(client, self.study.value, self.series.value)
            segs = fetch_segs(client, self.study.value, self.series.value)
            return segs_on_sources(client, self.study.value, segs, self._open_scans())

    def _open_scans(self) -> list:
        """The DICOM image layers in the viewer as Scans (data not copied), for placing a SEG on them."""
        from napari.layers import Image

        from ..core.geometry import METADATA_KEY, geometry_from_metadata
        from ..core.io.scan import Scan

        out = []
        for layer in self.viewer.layers:
            geom = geometry_from_metadata(layer.metadata)
            if isinstance(layer, Image) and geom is not None and geom.extra.get("sop_instance_uids"):
                entry = layer.metadata.get(METADATA_KEY, {})
                out.append(Scan(data=layer.data, geometry=geom, modality=entry.get("modality", "unknown"),
                                name=layer.name, axes=entry.get("axes") or "zyx"[-len(geom.spacing):]))
        return out

    def store(self, layer) -> list:
        """Store `layer` (a mask of a DICOM scan) as SEG + measurement report in its study; returns the objects."""
        return self._store_mask(*self._mask_to_store(layer))

    @staticmethod
    def _mask_to_store(layer) -> tuple:
        """(mask copy, Geometry, SEG options) of a Labels layer, read on the GUI thread."""
        import numpy as np

        from ..core.geometry import geometry_from_metadata
        from .dicom_export import is_dicom_layer, seg_options_from_metadata

        if not is_dicom_layer(layer):
            raise LesionSegError("Select a mask of a DICOM scan (a series opened from the PACS or from DICOM files).")
        return np.array(layer.data), geometry_from_metadata(layer.metadata), seg_options_from_metadata(layer.metadata)

    def _store_mask(self, mask, geometry, options: dict) -> list:
        from ..core.io.dicomweb import closing, store_mask

        with closing(self._client()) as client:
            return store_mask(client, mask, geometry, **options)

    # -- showing results ----------------------------------------------------------------------------------
    def _show_studies(self, studies: list[dict]) -> None:
        self._studies = [(f"{s['date']} {s['patient_name'] or s['patient_id']} "
                          f"{s['description'] or '(no description)'}".strip(),
                          s["study_uid"]) for s in studies]
        before = self.study.value
        self.study.reset_choices()
        self.status.value = f"{len(studies)} study(ies)."
        if self.study.value is not None and self.study.value == before:  # same study: refresh its series
            self._run(self.list_series, self._show_series)

    def _show_series(self, series: list[dict]) -> None:
        from ..core.io.dicomweb import series_label

        shown = [s for s in series if s["is_image"] or s["modality"] == "SEG"]
        self._modalities = {s["series_uid"]: s["modality"] for s in shown}
        self._series = [(series_label(s), s["series_uid"]) for s in shown]
        self.series.reset_choices()
        self.status.value = f"{len(self._series)} series (images and masks)."

    def add_scans(self, scans: list) -> list:
        from napari.utils.notifications import show_warning

        layers = []
        for scan in scans:
            for w in scan.metadata.get("warnings", []):
                show_warning(w)
            add = self.viewer.add_labels if scan.layer_type == "labels" else self.viewer.add_image
            layers.append(add(scan.data, **scan.layer_kwargs()))
        self.status.value = f"Opened {', '.join(s.name for s in scans)}."
        return layers

    def _store_active(self) -> None:
        from napari.layers import Labels
        from napari.utils.notifications import show_error

        layer = self.viewer.layers.selection.active
        if not isinstance(getattr(layer, "__wrapped__", layer), Labels):
            show_error("Select the mask (a Labels layer) to store.")
            return
        try:
            mask = self._mask_to_store(layer)
        except LesionSegError as e:
            self.status.value = str(e)
            show_error(str(e))
            return
        self._run(lambda: self._store_mask(*mask), self._stored)

    def _stored(self, objects: list) -> None:
        from napari.utils.notifications import show_info

        seg = objects[0]
        show_info(f"Stored the DICOM SEG ({len(seg.SegmentSequence)} segment(s)) and its measurement report "
                  "in the study on the PACS.")
        self.status.value = f"Stored SEG {seg.SOPInstanceUID}."

    def _run(self, work, done) -> None:
        """One request at a time: a click while the PACS has not answered yet is said, not queued."""
        from napari.utils.notifications import show_info

        if self.jobs.running():
            show_info("Still waiting for the PACS to answer the last request; try again when it has.")
            return
        self.status.value = "Talking to the PACS…"
        self.jobs.start(work, desc="PACS request", done=done)
