"""The per-kind breakdown of a mammography CV counts each mass at its own fold's threshold, as the CV figure does."""

from conftest import load_repo_script

by_kind = load_repo_script("benchmarks/cv_mammography_by_kind.py")


def _row(name, n_mass, hits):
    return {"name": name, "source": "mias", "n_mass": n_mass, "hits": hits, "fps": [0] * 19}


def test_a_mass_counts_as_found_only_at_its_folds_threshold():
    found_until_0_5 = [1] * 10 + [0] * 9  # grid 0.05 … 0.95: found at 0.5 and below
    results = {"folds": {
        "fold1": {"threshold": 0.5, "rows": [{**_row("mdb001", 1, found_until_0_5), "t": 0.5},
                                             {**_row("mdb002", 0, [0] * 19), "t": 0.5}]},
        "fold2": {"threshold": 0.95, "rows": [{**_row("mdb003", 1, found_until_0_5), "t": 0.95}]}}}
    assert by_kind.found_at_threshold(results) == {"mdb001": True, "mdb003": False}  # mass-free mdb002 not listed


def test_kinds_by_class_background_and_size(tmp_path):
    csv = tmp_path / "annotations.csv"
    csv.write_text("image,background,cls,severity,col,row,radius\n"
                   "mdb001.png,F,CIRC,B,1,1,20\nmdb001.png,F,CIRC,B,2,2,40\n"  # two circles: one mass, r 40
                   "mdb003.png,D,SPIC,M,1,1,19\nmdb004.png,G,NORM,,,,\n")
    kinds = by_kind.mass_kinds(csv)
    assert kinds == {"mdb001": {"cls": "CIRC", "background": "F", "radius": 40},
                     "mdb003": {"cls": "SPIC", "background": "D", "radius": 19}}
    table = by_kind.by_kind({"mdb001": True, "mdb003": False}, kinds)
    assert table["SPIC"] == "0/1" and table["CIRC"] == "1/1"
    assert table["radius <= 29"] == "0/1" and table["radius > 29"] == "1/1" and table["background D"] == "0/1"
