"""The Fine-tune dock: train on the corrected masks in the viewer (and optionally a folder), without freezing it.

Training runs in a child process (`core.training.process.TrainingProcess`); a QTimer drains its progress queue, so
the event loop never waits on training. Cancel stops within one batch and the best model so far is still published.
The new model is announced through the registry, so every model dropdown (the Segment dock's included) lists and
selects it; the parent model stays available.
"""

from __future__ import annotations

import os
import time

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..core.errors import LesionSegError
from ..core.models import default_registry
from ..core.models.card import MODALITIES
from ..core.names import check_model_name
from ..core.training.config import TrainConfig
from ..core.training.data import Case
from ..core.training.defaults import defaults_for, with_modality_defaults
from ..core.training.events import BatchDone, Done, EpochDone, Event, Exited, Failed, Log, StopRequested, Validated
from ..core.training.losses import LOSSES
from ._scroll import WrappedLabel, scrolling_layout

SCRATCH = "(train from scratch)"
AUGMENTATIONS = (("flip", "flips"), ("rot90", "90° turns"), ("affine", "rotate/scale"), ("intensity", "intensity"),
                 ("stain", "stain jitter (H&&E)"), ("hed", "H&&E stain amounts"),
                 ("speckle", "speckle (other scanner)"), ("resolution", "resolution (other scanner)"))


def _unwrap(obj):
    return getattr(obj, "__wrapped__", obj)


class LossPlot(QWidget):
    """Live training curves: batch loss (red, own scale) and validation Dice per epoch (green, 0–1)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(110)
        self.losses: list[tuple[float, float]] = []  # (epoch position, loss)
        self.dices: list[tuple[float, float]] = []  # (epoch, Dice)
        self.epochs = 1

    def clear(self, epochs: int = 1) -> None:
        self.losses, self.dices, self.epochs = [], [], max(1, epochs)
        self.update()

    def add_loss(self, pos: float, loss: float) -> None:
        self.losses.append((pos, loss))
        self.update()

    def add_dice(self, epoch: float, value: float) -> None:
        self.dices.append((epoch, value))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        r = QRectF(self.rect()).adjusted(28, 6, -6, -16)
        p.fillRect(self.rect(), QColor(30, 30, 30))
        p.setPen(QPen(QColor(90, 90, 90), 1))
        p.drawRect(r)
        p.setPen(QColor(170, 170, 170))
        p.drawText(QPointF(2, r.top() + 10), "1")
        p.drawText(QPointF(2, r.bottom()), "0")
        p.drawText(QPointF(r.left(), self.height() - 3), "epoch 0")
        p.drawText(QPointF(r.right() - 50, self.height() - 3), f"{self.epochs}")

        def poly(points, lo, hi):
            span = (hi - lo) or 1.0
            step = max(1, len(points) // max(1, int(r.width())))  # at most one point per pixel
            return QPolygonF([QPointF(r.left() + r.width() * min(x / self.epochs, 1.0),
                                      r.bottom() - r.height() * (y - lo) / span) for x, y in points[::step]])

        if len(self.losses) > 1:
            ys = [y for _, y in self.losses]
            p.setPen(QPen(QColor(255, 90, 80), 1.2))
            p.drawPolyline(poly(self.losses, 0.0, max(ys)))
            p.drawText(QPointF(r.right() - 120, r.top() + 12), f"loss {ys[-1]:.3f}")
        if self.dices:
            p.setPen(QPen(QColor(80, 220, 120), 2))
            if len(self.dices) > 1:
                p.drawPolyline(poly(self.dices, 0.0, 1.0))
            x, y = self.dices[-1]
            p.drawText(QPointF(r.right() - 120, r.top() + 26), f"val Dice {y:.3f}")
        p.end()


class FineTuneDock(QWidget):
    """Fine-tune (or train from scratch) on image + mask pairs in the viewer and/or a folder."""

    finished = Signal(object)  # the Done event (name, card, metrics, cancelled) or None after an error

    POLL_MS = 50

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.registry = default_registry()
        self.process = None
        self.last_done: Done | None = None
        self.cancel_time: float | None = None
        self.batches_after_cancel = 0
        self.stopped_at: StopRequested | None = None
        self._batches_per_epoch = 1
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._build_ui()
        self.refresh_pairs()
        self.refresh_models()
        self.registry.on_change(self._on_registry_change)
        self.destroyed.connect(lambda *_: self.registry.remove_listener(self._on_registry_change))
        self.viewer.layers.events.inserted.connect(self.refresh_pairs)
        self.viewer.layers.events.removed.connect(self.refresh_pairs)

    # -- UI ----------------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        lay = scrolling_layout(self)
        self._build_sources(lay)
        self._build_model_choice(lay)
        lay.addWidget(self._build_options())
        self._build_run_controls(lay)
        lay.addStretch(1)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.base_combo.currentTextChanged.connect(self._on_base_changed)
        self.modality_combo.currentTextChanged.connect(self._on_modality_changed)

    def _build_sources(self, lay) -> None:
        """The viewer's image/mask pairs (ticked) and an optional folder of more pairs."""
        lay.addWidget(QLabel("Training pairs (mask ← image):"))
        self.pair_list = QListWidget()
        self.pair_list.setMaximumHeight(110)
        lay.addWidget(self.pair_list)
        folder = QFormLayout()
        self.images_dir, self.masks_dir = QLineEdit(), QLineEdit()
        for edit, label in ((self.images_dir, "Image folder"), (self.masks_dir, "Mask folder")):
            edit.setPlaceholderText("optional: more pairs with matching file names")
            row = QHBoxLayout()
            btn = QPushButton("…")
            btn.setMaximumWidth(30)
            btn.clicked.connect(lambda _=False, e=edit: self._browse(e))
            row.addWidget(edit)
            row.addWidget(btn)
            folder.addRow(label, row)
        lay.addLayout(folder)

    def _build_model_choice(self, lay) -> None:
        form = QFormLayout()
        self.base_combo = QComboBox()
        self.base_combo.setToolTip("Fine-tune this model, or train a new one from scratch")
        self.modality_combo = QComboBox()
        self.modality_combo.addItems(MODALITIES)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name of the new model")
        form.addRow("Start from", self.base_combo)
        form.addRow("Modality", self.modality_combo)
        form.addRow("New model", self.name_edit)
        lay.addLayout(form)

    @staticmethod
    def _spin(kind, low, high, value, step=None, decimals=None, tip=""):
        box = kind()
        if decimals is not None:
            box.setDecimals(decimals)
        box.setRange(low, high)
        if step is not None:
            box.setSingleStep(step)
        box.setValue(value)
        if tip:
            box.setToolTip(tip)
        return box

    def _build_options(self) -> QGroupBox:
        """Epochs, learning rate, batch and patch size, loss, augmentations, sampling and validation share; the
        from-scratch values are the core's (`core.training.defaults`), the ones the CLI uses."""
        first = defaults_for(MODALITIES[0])
        self.epochs = self._spin(QSpinBox, 1, 1000, 20)
        self.learning_rate = self._spin(QDoubleSpinBox, 1e-5, 0.1, 5e-4, step=1e-4, decimals=5)
        self.batch_size = self._spin(QSpinBox, 1, 256, 4)
        self.patch_size = self._spin(QSpinBox, 32, 2048, first["patch_size"][0], step=32)
        self.loss_combo = QComboBox()
        self.loss_combo.addItems(LOSSES)
        self.loss_combo.setToolTip("bce_dice: BCE + Dice (default); bce_image_dice: BCE + Dice per lesion image "
                                   "(small lesions count as much as large ones); weighted_ce: the U-Net paper's "
                                   "boundary-weighted cross-entropy")
        self.aug_checks = {}
        arow = QGridLayout()
        for i, (key, label) in enumerate(AUGMENTATIONS):
            cb = QCheckBox(label)
            cb.setChecked(key in first["augment"])
            self.aug_checks[key] = cb
            arow.addWidget(cb, i // 3, i % 3)
        self.clahe = QCheckBox("CLAHE (ultrasound)")
        self.positive_fraction = self._spin(QDoubleSpinBox, 0.0, 1.0, 0.6, step=0.05,
                                            tip="Share of lesion patches per batch (the rest are lesion-free)")
        self.hard_negatives = QCheckBox("hard-negative mining")
        self.val_fraction = self._spin(QDoubleSpinBox, 0.0, 0.5, 0.2, step=0.05,
                                       tip="Share of cases (whole cases, never slices of one) kept for validation")
        box = QGroupBox("Options")
        opt = QFormLayout(box)
        for label, widget in (("Epochs", self.epochs), ("Learning rate", self.learning_rate),
                              ("Batch size", self.batch_size), ("Patch size", self.patch_size),
                              ("Loss", self.loss_combo), ("Augment", arow), ("", self.clahe),
                              ("Lesion fraction", self.positive_fraction), ("", self.hard_negatives),
                              ("Validation share", self.val_fraction)):
            opt.addRow(label, widget)
        return box

    def _build_run_controls(self, lay) -> None:
        row = QHBoxLayout()
        self.start_btn = QPushButton("Train")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.setToolTip("Stop after the current batch; the best model so far is kept")
        row.addWidget(self.start_btn)
        row.addWidget(self.cancel_btn)
        lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.status = WrappedLabel("")
        self.status.setWordWrap(True)
        self.plot = LossPlot()
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.plot)

    def _browse(self, edit: QLineEdit) -> None:
        d = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
        if d:
            edit.setText(d)

    # -- lists -------------------------------------------------------------------------------------------
    def pairs(self) -> list[tuple[Image, Labels]]:
        """(image, mask) pairs in the viewer: each Labels layer with the image it was derived from, else an image
        of the same shape (the one listed first)."""
        images = [_unwrap(l) for l in self.viewer.layers
                  if isinstance(l, Image) and not l.metadata.get("lesionseg_probs")]
        out = []
        for lab in self.viewer.layers:
            if not isinstance(lab, Labels):
                continue
            lab = _unwrap(lab)
            src = (lab.metadata.get("lesionseg") or {}).get("derived_from")
            match = [im for im in images if im.name == src and self._fits(im, lab)]
            if not match:
                match = [im for im in images if self._fits(im, lab)]
            if match:
                out.append((match[0], lab))
        return out

    @staticmethod
    def _fits(image: Image, labels: Labels) -> bool:
        if image.multiscale:
            return False
        shape = image.data.shape[:-1] if image.rgb else image.data.shape
        return tuple(shape) == tuple(labels.data.shape)

    def refresh_pairs(self, *_) -> None:
        unchecked = {self.pair_list.item(i).text() for i in range(self.pair_list.count())
                     if self.pair_list.item(i).checkState() != Qt.Checked}
        self.pair_list.clear()
        for image, labels in self.pairs():
            item = QListWidgetItem(f"{labels.name} ← {image.name}")
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Unchecked if item.text() in unchecked else Qt.Checked)
            item.setData(Qt.UserRole, (labels.name, image.name))
            self.pair_list.addItem(item)

    def checked_pairs(self) -> list[tuple[Image, Labels]]:
        wanted = {tuple(self.pair_list.item(i).data(Qt.UserRole)) for i in range(self.pair_list.count())
                  if self.pair_list.item(i).checkState() == Qt.Checked}
        return [(im, lab) for im, lab in self.pairs() if (lab.name, im.name) in wanted]

    def refresh_models(self, select: str | None = None) -> None:
        current = select or self.base_combo.currentText()
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        self.base_combo.addItem(SCRATCH)
        from ..core.training.prompt_finetune import fine_tunable_names

        names = [c.name for c in self.registry.cards()] + fine_tunable_names(self.registry)  # + line/box networks
        self.base_combo.addItems(names)
        if current in names or current == SCRATCH:
            self.base_combo.setCurrentText(current)
        elif names:
            self.base_combo.setCurrentText(self._model_for_pairs(names))
        self.base_combo.blockSignals(False)
        self._on_base_changed(self.base_combo.currentText())

    def _model_for_pairs(self, names: list[str]) -> str:
        pairs = self.pairs()
        modality = (pairs[0][0].metadata.get("lesionseg") or {}).get("modality") if pairs else None
        for c in self.registry.cards():
            if c.modality == modality:
                return c.name
        return names[0]

    def _on_registry_change(self, new_name: str | None) -> None:
        """List a new model, but keep 'Start from' as the user chose it: a second run must not silently chain onto
        the model the first run made."""
        self.refresh_models()

    def _on_base_changed(self, name: str) -> None:
        card = self._base_card(name)
        fine_tune = card is not None
        self.modality_combo.setEnabled(not fine_tune)
        self.patch_size.setEnabled(not fine_tune)
        self.clahe.setEnabled(not fine_tune)
        if fine_tune:
            self.modality_combo.setCurrentText(card.modality)
            self.patch_size.setValue(int(card.patch_size[0]))
            self.clahe.setChecked("clahe" in card.preprocessing)
            self.learning_rate.setValue(5e-4)  # gentle: keep what the base model knows
            self.name_edit.setPlaceholderText(f"{card.name}-finetuned")
        else:
            self.learning_rate.setValue(2e-3)
            self._on_modality_changed(self.modality_combo.currentText())

    def _on_modality_changed(self, modality: str) -> None:
        if self._base_card(self.base_combo.currentText()) is not None:
            return
        scratch = defaults_for(modality)  # the same from-scratch model `lesionseg train --modality` makes
        self.clahe.setChecked("clahe" in scratch.get("preprocessing", []))
        for key, box in self.aug_checks.items():
            box.setChecked(key in scratch["augment"])
        self.patch_size.setValue(int(scratch["patch_size"][0]))
        self.name_edit.setPlaceholderText(f"{modality}-custom")

    def _base_card(self, name: str):
        if not name or name == SCRATCH:
            return None
        try:
            return self.registry.get(name, kind=None)
        except LesionSegError:
            return None

    # -- training ----------------------------------------------------------------------------------------
    def build_config(self) -> TrainConfig:
        base = self._base_card(self.base_combo.currentText())
        name = check_model_name(self.name_edit.text().strip() or self.name_edit.placeholderText())
        modality = base.modality if base else self.modality_combo.currentText()
        kw = dict(name=name, modality=modality, epochs=self.epochs.value(),
                  learning_rate=self.learning_rate.value(), batch_size=self.batch_size.value(),
                  loss=self.loss_combo.currentText(),
                  augment=[k for k, cb in self.aug_checks.items() if cb.isChecked()],
                  positive_fraction=self.positive_fraction.value(),
                  hard_negative_mining=self.hard_negatives.isChecked(), val_fraction=self.val_fraction.value(),
                  num_threads=self._threads())
        images, masks = self.images_dir.text().strip(), self.masks_dir.text().strip()
        if bool(images) != bool(masks):
            raise LesionSegError("Give both an image folder and a mask folder (or neither).")
        if images:
            kw.update(images=images, masks=masks)
        if base is not None:
            kw["base"] = str(base.path)
        else:
            kw = with_modality_defaults(kw)
            kw["patch_size"] = [self.patch_size.value()] * 2
            pre = [p for p in kw.get("preprocessing", []) if p != "clahe"]
            kw["preprocessing"] = pre + (["clahe"] if self.clahe.isChecked() else [])
        return TrainConfig(**kw)

    @staticmethod
    def _threads() -> int:
        return max(1, (os.cpu_count() or 2) - 1)  # leave a core to the viewer

    def build_cases(self, multiclass: bool) -> list[Case]:
        cases = []
        for image, labels in self.checked_pairs():
            mask = np.asarray(labels.data)
            if not mask.any():
                show_info(f"{labels.name} is empty: it is used as a lesion-free example.")
            mask = mask.astype(np.uint8) if multiclass else (mask > 0).astype(np.uint8)
            cases.append(Case(name=f"{image.name}", image=np.asarray(image.data), mask=mask,
                              group=image.name))
        return cases

    def start(self) -> None:
        if self.process is not None and self.process.running:
            show_warning("A training run is already going; cancel it first.")
            return
        from ..core.training.process import TrainingProcess

        try:
            base = self._base_card(self.base_combo.currentText())
            if base is not None and base.kind == "prompt":  # a line/box network: its own short fine-tuning
                from .prompt_finetune_job import PromptFinetuneJob

                self.prompt_job = PromptFinetuneJob(self, base).start()
                return
            cfg = self.build_config()
            cases = self.build_cases(bool(base and base.multiclass))
            if not cases and not cfg.images:
                raise LesionSegError("Nothing to train on: tick image/mask pairs above or choose a folder of pairs.")
            if cases and not any(c.mask.any() for c in cases) and not cfg.images:
                raise LesionSegError("None of the chosen masks contains a lesion: there is nothing to learn from.")
            self.process = TrainingProcess(cfg, cases, num_threads=cfg.num_threads, registry=self.registry,
                                           nice=5).start()
        except LesionSegError as e:
            show_error(str(e))
            return
        except OSError as e:
            show_error(f"Cannot start training: {e}")
            return
        self.last_done, self.stopped_at, self.cancel_time, self.batches_after_cancel = None, None, None, 0
        self.plot.clear(cfg.epochs)
        self.progress.setValue(0)
        self.status.setText(f"Starting: {len(cases)} pair(s) from the viewer"
                            + (f" + folder {cfg.images}" if cfg.images else "") + "…")
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self._timer.start()

    def cancel(self) -> None:
        if self.process is None or not self.process.running:
            return
        self.cancel_time = time.time()
        self.process.cancel()
        self.cancel_btn.setEnabled(False)
        self.status.setText("Cancelling after the current batch; the best model so far will be kept…")

    def _poll(self) -> None:
        if self.process is None:
            self._timer.stop()
            return
        for ev in self.process.poll():
            self._handle(ev)

    def _handle(self, ev: Event) -> None:
        if isinstance(ev, BatchDone):
            self._show_batch(ev)
        elif isinstance(ev, Validated):
            if ev.metrics.get("val_dice") is not None:
                self.plot.add_dice(ev.epoch, ev.metrics["val_dice"])
        elif isinstance(ev, EpochDone):
            dice = ev.metrics.get("val_dice")
            self.status.setText(f"Epoch {ev.epoch} done: loss {ev.loss:.4f}"
                                + (f", validation Dice {dice:.3f}" if dice is not None else ""))
        elif isinstance(ev, StopRequested):
            self.stopped_at = ev
            self.status.setText(f"Cancelled at epoch {ev.epoch}, batch {ev.batch}; validating and keeping "
                                "the best model so far…")
        elif isinstance(ev, Log):
            self.status.setText(ev.message)
        elif isinstance(ev, Done):
            self.last_done = ev
            # registry.notify already ran (TrainingProcess.poll): every dropdown lists and selects the model.
        elif isinstance(ev, Failed):
            show_error(ev.message or "Training failed.")
        elif isinstance(ev, Exited):
            self._finish_run()

    def _show_batch(self, ev: BatchDone) -> None:
        if self.cancel_time is not None and ev.time > self.cancel_time:
            self.batches_after_cancel += 1
        n, e = ev.batches, ev.epoch
        self._batches_per_epoch = n
        done = (e - 1) * n + ev.batch
        self.progress.setValue(int(1000 * done / max(1, ev.epochs * n)))
        self.plot.add_loss(e - 1 + ev.batch / n, ev.loss)
        self.status.setText(f"Epoch {e}/{ev.epochs}, batch {ev.batch}/{n}, loss {ev.loss:.4f}")

    def _finish_run(self) -> None:
        """The child has exited: buttons back, the outcome shown, `finished` emitted with the Done event."""
        self._timer.stop()
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        done = self.last_done
        if done and done.name:
            self.progress.setValue(1000)
            dice = done.metrics.get("val_dice")
            msg = (f"{'Stopped early; ' if done.cancelled else ''}published {done.name}"
                   + (f" (validation Dice {dice:.3f})" if isinstance(dice, (int, float)) else "")
                   + ". It is selected in the Segment dock's model list; 'Start from' stays "
                   + f"{self.base_combo.currentText()}.")
            self.status.setText(msg)
            show_info(msg)
        elif self.process.error is None:
            self.status.setText("No model was published: training stopped before the first batch finished.")
        self.finished.emit(done)
