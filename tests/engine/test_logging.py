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


def test_throughput_excludes_evaluation_time(tmp_path, monkeypatch):
    """A slow evaluation (step 0 and periodic) must not show up as slow training steps."""
    import time
    from pathlib import Path

    import vitlab.engine.trainer as trainer
    from vitlab.config import apply_overrides, load_config
    from vitlab.tasks import ClassificationTask

    # each evaluation "takes" 100 s on the trainer's clock; were it counted, a step would take >= 50 s
    offset = {"s": 0.0}
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: time.monotonic() + offset["s"])

    def slow_evaluate(self, make_loader, protocol=None):
        offset["s"] += 100.0
        return {"top1": 0.0}

    monkeypatch.setattr(ClassificationTask, "evaluate", slow_evaluate)
    tiny = Path(__file__).resolve().parents[1] / "e2e" / "tiny_fmnist.py"
    cfg = apply_overrides(load_config(tiny), [f"train.output_dir={tmp_path}", "train.max_steps=4", "train.log_every=2",
                                              "train.eval_every=2", "train.eval_at_start=true"])
    trainer.train(cfg)
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "perf/step_time_s" in r]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["perf/step_time_s"] < 25 for r in records), records
