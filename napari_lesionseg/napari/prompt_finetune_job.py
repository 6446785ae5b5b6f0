"""The Train dock's prompt-network branch: with a prompt network (kind 'prompt') as "Start from", the ticked
image/mask pairs (and the chosen folders) fine-tune it with `core.training.prompt_finetune.finetune_prompt_model`,
the same function as `lesionseg finetune-prompt`, in a thread (a few hundred small steps: minutes on the CPU).

Kept apart from the dock's whole-image training (a child process, `core.training.process`) so each stays small.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, Signal

from ..core.errors import Cancelled, LesionSegError
from ..core.names import check_model_name


class _Signals(QObject):
    step = Signal(int, int)  # emitted from the worker thread, delivered in the GUI thread


class PromptFinetuneJob:
    """One fine-tuning run started from the Train dock; its Cancel button stops it (nothing is published)."""

    def __init__(self, dock, base_card):
        self.dock = dock
        self.base = base_card
        self.worker = None
        self.cancelled = False
        self.card = None
        self._signals = _Signals()
        self._signals.step.connect(self._on_step)

    def inputs(self):
        """(images, masks, names) from the ticked pairs and the image/mask folders: read in the GUI thread."""
        from ..core.training.prompt_finetune import read_mask_folders

        images, masks, names = [], [], []
        for image, labels in self.dock.checked_pairs():
            images.append(np.asarray(image.data))
            masks.append(np.asarray(labels.data) > 0)
            names.append(image.name)
        folder_images, folder_masks = self.dock.images_dir.text().strip(), self.dock.masks_dir.text().strip()
        if bool(folder_images) != bool(folder_masks):
            raise LesionSegError("Give both an image folder and a mask folder (or neither).")
        if folder_images:
            more = read_mask_folders(folder_images, folder_masks)
            images, masks, names = images + more[0], masks + [m > 0 for m in more[1]], names + more[2]
        if not images:
            raise LesionSegError("Nothing to fine-tune on: tick corrected image/mask pairs above or choose folders.")
        return images, masks, names

    def start(self, blocking: bool = False):
        """Start in a thread (blocking: here, for tests); returns self."""
        from napari.qt.threading import thread_worker

        from ..core.training.prompt_finetune import finetune_prompt_model
        from ._jobs import on_result, returning_errors

        name = check_model_name(self.dock.name_edit.text().strip() or f"{self.base.name}-finetuned")
        images, masks, names = self.inputs()

        def job(progress, cancelled):
            return finetune_prompt_model(self.base.name, images, masks, name, progress=progress, cancelled=cancelled,
                                         names=names, data_note="masks corrected in napari", notify=False)

        self._begin(len(images))
        if blocking:
            try:
                self._done(job(None, lambda: self.cancelled))
            except (LesionSegError, Cancelled) as e:
                self._failed(e)
            return self
        worker = thread_worker(returning_errors(job))(self._signals.step.emit, lambda: self.cancelled)
        worker.returned.connect(on_result(self._done, self._failed))
        self.worker = worker
        worker.start()
        return self

    def cancel(self) -> None:
        self.cancelled = True
        self.dock.status.setText("Cancelling the fine-tuning (nothing will be published)…")

    def _begin(self, n: int) -> None:
        d = self.dock
        d.start_btn.setEnabled(False)
        d.cancel_btn.setEnabled(True)
        d.cancel_btn.clicked.connect(self.cancel)
        d.progress.setValue(0)
        from ..core.training import prompt_finetune as pf

        d.status.setText(f"Fine-tuning the prompt network {self.base.name} on {n} corrected mask(s): "
                         f"{pf.DEFAULT_STEPS} steps at learning rate {pf.DEFAULT_LR:g}, as `lesionseg "
                         "finetune-prompt` (the epochs, batch and loss above are for whole-image models)…")

    def _on_step(self, step: int, total: int) -> None:
        self.dock.progress.setValue(int(1000 * step / max(total, 1)))
        self.dock.status.setText(f"Fine-tuning {self.base.name}: step {step} of {total}")

    def _end(self) -> None:
        d = self.dock
        d.cancel_btn.clicked.disconnect(self.cancel)
        d.start_btn.setEnabled(True)
        d.cancel_btn.setEnabled(False)

    def _done(self, card) -> None:
        from napari.utils.notifications import show_info

        self._end()
        self.card = card
        self.dock.registry.notify(card.name)  # in the GUI thread: every network list refreshes
        self.dock.progress.setValue(1000)
        msg = (f"Published the prompt network {card.name}: choose it as 'Prompt network' in the Annotations dock "
               "(or `lesionseg lines-to-masks --model " + card.name + "`).")
        self.dock.status.setText(msg)
        show_info(msg)

    def _failed(self, e) -> None:
        from napari.utils.notifications import show_error

        self._end()
        msg = "Fine-tuning cancelled; nothing was published." if isinstance(e, Cancelled) else str(e)
        self.dock.status.setText(msg)
        if not isinstance(e, Cancelled):
            show_error(msg)
