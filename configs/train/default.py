"""Trainer settings; every run overrides a few (``train.max_steps=...``)."""

from omegaconf import OmegaConf

train = OmegaConf.create(dict(
    seed=0,
    max_steps=None,  # optimizer steps; None: ``epochs`` x steps per epoch
    epochs=1,
    output_dir=None,  # None: runs/<experiment>/<timestamp>
    resume=None,  # None | auto | path/to/step_N.pt
    device="auto",  # auto | cpu | cuda
    precision="auto",  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    strategy="ddp",  # ddp | fsdp | none (only used under torchrun)
    grad_accum_steps=1,
    clip_grad=1.0,  # max global grad norm; None/0 disables clipping (the norm is still logged)
    log_every=20,
    eval_every=None,  # steps; the run always evaluates at its end
    eval_at_start=False,  # also evaluate the untrained network (logged at step 0)
    checkpoint_every=500,
    keep_last=2,
    best_metric="val/top1",
    best_mode="max",
    max_nonfinite_steps=5,  # consecutive NaN/Inf steps before the run stops
))
