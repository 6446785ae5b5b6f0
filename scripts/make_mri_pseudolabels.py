"""Training volumes for the `mri-lesion` starter model: Duke 153 with a pseudo-label, and pyradiomics breast1.

Duke-Breast-Cancer-MRI gives only a tumour *box* for patient 153. A reader would draw one line across the lesion's
longest diameter; we draw it the same way (the longest chord of the enhancing blob on the box's middle slice of
post1 − pre) and let the project's own 3D line-to-mask tool grow the lesion from it. That mask is a pseudo-label:
it is what the plugin itself would give a reader, not a radiologist's outline. breast1 (a real labelled crop,
another scanner, post-contrast rather than subtraction) trains too: with two volumes there is nothing to
validate on (a Duke-only model scored Dice 0.00 on breast1, which is not a subtraction image).

    .venv/bin/python scripts/make_mri_pseudolabels.py ../shared/data/mri /tmp/mri_lesions
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_lesionseg.core.annotations.frame import longest_diameter
from napari_lesionseg.core.annotations.lines import Line, lines_to_labels

# The dataset's tumour box in NIfTI array axes (0-based, inclusive): x 89–123, y 46–81, z 60–77 (data README).
DUKE_BOX_ZYX = (slice(60, 78), slice(46, 82), slice(89, 124))


def duke_line(sub_zyx: np.ndarray, spacing_zyx) -> tuple[int, np.ndarray, np.ndarray]:
    """Slice index and the two ends (y, x) of the longest chord of the enhancing blob on the box's middle slice:
    thresholded inside the box only, the one place where the dataset says there is a tumour."""
    from scipy import ndimage as ndi

    zs, ys, xs = DUKE_BOX_ZYX
    z = (zs.start + zs.stop - 1) // 2
    sl = ndi.gaussian_filter(sub_zyx[z], 1.0)
    inbox = np.zeros_like(sl, bool)
    inbox[ys, xs] = True
    lab, _ = ndi.label((sl > np.percentile(sl[inbox], 60)) & inbox)
    if not lab.max():
        raise SystemExit("No enhancing blob in the Duke tumour box: is post1/pre the right pair?")
    big = lab == np.argmax(np.bincount(lab[lab > 0]))
    p0, p1 = longest_diameter(big, spacing_zyx[1:])
    return z, np.asarray(p0, float), np.asarray(p1, float)


def duke_pseudolabel(sub_zyx: np.ndarray, spacing_zyx, method: str = "auto") -> np.ndarray:
    """The 3D line-to-mask result from `duke_line`, cut to the tumour box (nothing outside it is known)."""
    z, p0, p1 = duke_line(sub_zyx, spacing_zyx)
    m = lines_to_labels(sub_zyx, [Line(np.r_[z, p0], np.r_[z, p1])], spacing=spacing_zyx, method=method) > 0
    box = np.zeros(m.shape, bool)
    box[DUKE_BOX_ZYX] = True
    return m & box


def main(src: str, out: str) -> None:
    src_dir, out_dir = Path(src), Path(out)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    post = nib.load(str(src_dir / "duke_153/post1.nii.gz"))
    pre = nib.load(str(src_dir / "duke_153/pre.nii.gz"))
    sub = np.asarray(post.dataobj, np.float32) - np.asarray(pre.dataobj, np.float32)  # NIfTI (x, y, z)
    sp = np.asarray(post.header.get_zooms()[:3], float)
    t = time.time()
    mask = duke_pseudolabel(sub.transpose(2, 1, 0), sp[::-1]).transpose(2, 1, 0)
    print(f"Duke 153 pseudo-label: {int(mask.sum())} voxels = {mask.sum() * sp.prod() / 1000:.2f} mL "
          f"({time.time() - t:.1f} s)")
    nib.save(nib.Nifti1Image(sub, post.affine), str(out_dir / "images/duke153_sub.nii.gz"))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), post.affine), str(out_dir / "masks/duke153_sub.nii.gz"))
    cases = [{"name": "duke153_sub", "group": "duke153", "cls": "duke153", "split": "train"}]
    py = src_dir / "pyradiomics"
    if (py / "breast1_image.nii.gz").exists():
        shutil.copy(py / "breast1_image.nii.gz", out_dir / "images/breast1.nii.gz")
        shutil.copy(py / "breast1_label.nii.gz", out_dir / "masks/breast1.nii.gz")
        cases.append({"name": "breast1", "group": "breast1", "cls": "breast1", "split": "train"})
    (out_dir / "cases.json").write_text(json.dumps(cases, indent=1))
    print(f"wrote {len(cases)} volumes to {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
