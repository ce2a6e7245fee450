"""A recipe's milestones are fractions of the run: `train.max_steps=N` moves every one with it."""

from pathlib import Path

import pytest

from vitlab.config import apply_overrides, instantiate, load_config
from vitlab.config.milestones import fraction_of
from vitlab.engine.schedules import Schedule, as_schedule
from vitlab.ssl import GramConfig

ROOT = Path(__file__).resolve().parents[2]


def milestones(steps):
    cfg = apply_overrides(load_config(ROOT / "experiments/dinov3_quickstart.py"), [f"train.max_steps={steps}"])
    task = instantiate(cfg.task, model=cfg.model)
    task.setup(total_steps=steps)
    return {"warmup": as_schedule(cfg.optim.lr, steps).warmup_steps, "freeze": task.freeze_last_layer_steps,
            "gram_start": task.gram_start, "gram_load": task.gram_teacher.load_step,
            "gram_every": task.gram_teacher.update_every, "momentum": task.schedules["momentum"](0)}


@pytest.mark.parametrize("steps", [100, 1000])
def test_the_quickstart_at_any_length_puts_each_milestone_at_the_same_fraction(steps):
    m = milestones(steps)
    assert (m["warmup"], m["freeze"], m["gram_start"], m["gram_load"], m["gram_every"]) == (
        steps // 10, steps // 20, steps // 2, steps // 2, steps // 4)
    assert m["momentum"] == min(0.992, 1.0 - 8.0 / steps)


def test_the_quickstart_keeps_the_values_set_budget_gave_it():
    # set_budget(280) wrote these step counts until the recipe became relative: the main job is unchanged
    assert milestones(280) == {"warmup": 28, "freeze": 14, "gram_start": 140, "gram_load": 140, "gram_every": 70,
                               "momentum": 1.0 - 8.0 / 280}


def test_steps_still_work_where_written_and_both_is_an_error():
    assert Schedule(base=1.0, warmup_steps=7, total_steps=100).warmup_steps == 7
    assert Schedule(base=1.0, warmup_fraction=0.25, total_steps=100).warmup_steps == 25
    with pytest.raises(ValueError, match="warmup_steps=7 and warmup_fraction=0.25.*warmup_fraction=null"):
        Schedule(base=1.0, warmup_steps=7, warmup_fraction=0.25, total_steps=100)
    with pytest.raises(ValueError, match="warmup_fraction=0.25 needs total_steps"):
        Schedule(base=1.0, warmup_fraction=0.25)
    assert GramConfig(start_step=3, load_step=3, update_every=2).resolved(100) == GramConfig(
        start_step=3, load_step=3, update_every=2)
    with pytest.raises(ValueError, match=r"task.gram.start_step=3 and task.gram.start_fraction=0.5"):
        GramConfig(start_step=3, start_fraction=0.5).resolved(100)
    with pytest.raises(ValueError, match="task.gram needs start_step or start_fraction"):
        GramConfig().resolved(100)
    cfg = load_config(ROOT / "experiments/dinov3_quickstart.py")
    with pytest.raises(Exception, match="freeze_last_layer_steps=3 and task.freeze_last_layer_fraction=0.05"):
        instantiate(apply_overrides(cfg, ["task.freeze_last_layer_steps=3"]).task, model=cfg.model)
    cfg = apply_overrides(load_config(ROOT / "experiments/dinov3_quickstart.py"),
                          ["task.freeze_last_layer_steps=3", "task.freeze_last_layer_fraction=null", "train.max_steps=50"])
    task = instantiate(cfg.task, model=cfg.model)
    task.setup(total_steps=50)
    assert task.freeze_last_layer_steps == 3


def test_a_run_shorter_than_the_ema_time_constant_copies_the_student():
    cfg = load_config(ROOT / "experiments/dinov3_quickstart.py")
    task = instantiate(cfg.task, model=cfg.model)
    task.setup(total_steps=4)
    assert task.schedules["momentum"](0) == 0.0


def test_fraction_of():
    assert fraction_of(0.1, 280) == 28 and fraction_of(0.29, 100) == 29 and fraction_of(1.0, 7) == 7
    with pytest.raises(ValueError, match="task.x=1.5 must be a fraction"):
        fraction_of(1.5, 10, "task.x")
