from vitlab.engine.logging import MetricLogger, format_eta, read_metrics


def test_jsonl_tensorboard_and_resume_truncation(tmp_path, capsys):
    logger = MetricLogger(tmp_path, total_steps=10)
    for step in range(1, 6):
        logger.log(step, {"train/loss": 1.0 / step, "perf/images_per_s": 100.0})
    logger.close()
    assert "step 5/10" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    assert list(tmp_path.glob("events.out.tfevents*"))
    # a resumed run (checkpoint at step 3) drops what the killed run logged after it
    logger = MetricLogger(tmp_path, total_steps=10, start_step=3)
    logger.log(4, {"train/loss": 0.5})
    logger.close()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def test_disabled_logger_writes_nothing(tmp_path):
    logger = MetricLogger(tmp_path, total_steps=3, enabled=False)
    logger.log(1, {"train/loss": 1.0})
    logger.close()
    assert not list(tmp_path.iterdir())


def test_format_eta():
    assert format_eta(3725) == "1:02:05" and format_eta(float("nan")) == "?"
