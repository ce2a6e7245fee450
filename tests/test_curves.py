import json

import pytest

from vitlab.curves import plot_curves, read_csv_curve, read_run_curve, write_csv_curve


def test_curve_round_trip_and_plot(tmp_path):
    records = [{"step": 0, "val/knn_top1": 50.0, "wall_s": 6.0}, {"step": 5, "train/loss": 1.0, "wall_s": 30.0},
               {"step": 10, "val/knn_top1": 61.5, "wall_s": 60.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    curve = read_run_curve(tmp_path)
    assert curve == [(0, 50.0, 0.1), (10, 61.5, 1.0)]
    write_csv_curve(curve, tmp_path / "c.csv")
    assert read_csv_curve(tmp_path / "c.csv") == ("val/knn_top1", curve)
    plot_curves({"a": curve, "b": [(0, 40.0, None), (10, 70.0, None)]}, tmp_path / "c.png")
    from PIL import Image

    img = Image.open(tmp_path / "c.png").convert("RGB")
    assert len(img.getcolors(1 << 20)) > 3  # axes, text and two coloured lines were drawn


def test_curve_errors_name_the_file_and_metric(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        read_run_curve(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match="no records of metric 'val/knn_top1'"):
        read_run_curve(tmp_path)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="is not a curve CSV"):
        read_csv_curve(tmp_path / "bad.csv")


def test_the_y_axis_fits_the_values_scale():
    """A loss ratio between 0.88 and 1.01 is drawn on its own range, not on a k-NN's +-1 (which flattened it)."""
    from vitlab.curves import y_range

    lo, hi = y_range([1.01, 0.95, 0.88])
    assert 0.87 < lo < 0.88 and 1.01 < hi < 1.02
    lo, hi = y_range([60.0, 60.0])  # flat: 2% of its size
    assert hi - lo == pytest.approx(1.32) and lo < 60 < hi
