"""The Train dock's prompt-network branch: with a prompt network (kind 'prompt') as "Start from", the ticked
image/mask pairs (and the chosen folders) fine-tune it with `core.training.prompt_finetune.finetune_prompt_model`,
the same function as `lesionseg finetune-prompt`, through the docks' worker helper (`_worker.DockJobs`: a thread,
napari's activity display and Cancel; a few hundred small steps: minutes on the CPU).

Kept apart from the dock's whole-image training (a child process, `core.training.process`) so each stays small.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import LesionSegError
from ..core.names import check_model_name


class PromptFinetuneJob:
    """One fine-tuning run started from the Train dock; its Cancel button stops it (nothing is published)."""

    def __init__(self, dock, base_card):
        self.dock = dock
        self.base = base_card
        self.card = None
        self.jobs = _dock_jobs(dock)

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

    def start(self) -> "PromptFinetuneJob":
        """Start in the docks' worker (`_worker.DockJobs`: napari's activity display, Cancel, errors once)."""
        from ..core.training import prompt_finetune as pf

        name = check_model_name(self.dock.name_edit.text().strip() or f"{self.base.name}-finetuned")
        images, masks, names = self.inputs()
        ctx = self.jobs.context
        self.dock.progress.setValue(0)

        def job():
            return pf.finetune_prompt_model(self.base.name, images, masks, name, progress=ctx.progress,
                                            cancelled=ctx.cancelled, names=names, notify=False,
                                            data_note="masks corrected in napari")

        self.jobs.start(job, desc=f"Fine-tune {self.base.name}", done=self._done,
                        cancelled=lambda: self.jobs.say("Fine-tuning cancelled; nothing was published."))
        self.jobs.say(f"Fine-tuning the prompt network {self.base.name} on {len(images)} corrected mask(s): "
                      f"{pf.DEFAULT_STEPS} steps at learning rate {pf.DEFAULT_LR:g}, as `lesionseg finetune-prompt` "
                      "(the epochs, batch and loss above are for whole-image models)…")
        return self

    def _done(self, card) -> None:
        from napari.utils.notifications import show_info

        self.card = card
        self.dock.registry.notify(card.name)  # in the GUI thread: every network list refreshes
        self.dock.progress.setValue(1000)
        msg = (f"Published the prompt network {card.name}: choose it as 'Prompt network' in the Annotations dock "
               "(or `lesionseg lines-to-masks --model " + card.name + "`).")
        self.dock.status.setText(msg)
        show_info(msg)


def _dock_jobs(dock):
    """The Train dock's worker for prompt fine-tuning, made once (its Cancel button then cancels this job too)."""
    from ._worker import DockJobs

    jobs = getattr(dock, "_prompt_jobs", None)
    if jobs is None:
        jobs = DockJobs(dock, cancel_button=dock.cancel_btn, start_buttons=(dock.start_btn,), status=dock.status,
                        on_progress=lambda i, n: _show_step(dock, i, n), failure_prefix="Fine-tuning failed")
        dock._prompt_jobs = jobs
    return jobs


def _show_step(dock, step: int, total: int) -> None:
    if not dock._prompt_jobs.running():  # a step reported just before a Cancel arrives after the job ended
        return
    dock.progress.setValue(int(1000 * step / max(total, 1)))
    dock.status.setText(f"Fine-tuning the prompt network: step {step} of {total}")
