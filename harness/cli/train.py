"""``run.py train CONFIG.yaml [key=value ...]``: train the tokenizer or AlignVAR as the experiment says."""

from __future__ import annotations

import argparse

from harness.cli.options import add_offline, apply_offline

HELP = "train a tokenizer (type: vqvae) or AlignVAR (type: alignvar) from an experiment YAML"
DESCRIPTION = """\
Train as described by the experiment's 'train:' block (and 'model:' for AlignVAR). Output goes to
<output_root>/<name>/train/ (checkpoints/, metrics.csv, model.safetensors, identity.json); an interrupted run
resumes from its latest good checkpoint when started again with the same config, data and code (anything else
is refused, naming the keys that differ; --force trains afresh). Multi-GPU: launch with torchrun, e.g.
  torchrun --nproc-per-node=8 run.py train experiments/train_lsdir_ffhq.yaml
Fewer GPUs, same global batch: train.loop.grad_accum=A micro-batches per optimiser step (global batch =
train.data.batch_size x GPUs x A; the micro-batches are those of a run on GPUs x A GPUs), e.g. on 2 GPUs
  torchrun --nproc-per-node=2 run.py train experiments/train_lsdir_ffhq.yaml train.loop.grad_accum=4

Logs: metrics.csv (one line appended per logged step; on resume cut back to the checkpoint's step), TensorBoard
when installed (train.loop.tensorboard), and Weights & Biases with train.loop.logger=wandb (pip install
'alignvar-bench[wandb]'; train.loop.wandb.{project,entity,group,tags,mode}; WANDB_MODE=offline works): the
same scalars plus the experiment config and the git commit.

Then evaluate with 'run.py bench' (a method with checkpoint: "@trained" uses the result) or 'run.py train ...
--bench'."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML with a 'train:' block, or a bundled one's name (tiny_train)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.hcc.lambda=0.5 train.loop.steps=100")
    parser.add_argument("--output-root", help="override output_root (default: the YAML's, usually runs/)")
    parser.add_argument("--device", help="training device: auto, cpu, cuda, cuda:N (default: the YAML's)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="train afresh, never resume (the new run replaces the old one only once it has finished)",
    )
    parser.add_argument("--no-resume", action="store_true", help="the same as --force")
    parser.add_argument("--bench", action="store_true", help="after training, run the experiment's benchmark")
    add_offline(
        parser,
        help="never download: hf:// / https:// checkpoints (model.checkpoint, model.vqvae) and, with "
        "--bench, metric weights must be cached already (same as ALIGNVAR_OFFLINE=1); default: online",
    )


def run(args: argparse.Namespace) -> int:
    apply_offline(args)
    from harness.config.experiment import load_experiment
    from harness.training.stage import resolve_trained, run_train

    overrides = list(args.overrides)
    if args.output_root:
        overrides.append(f"output_root={args.output_root}")
    cfg = load_experiment(args.config, overrides)
    checkpoint = run_train(cfg, force=args.force or args.no_resume, device=args.device)
    print(f"trained checkpoint: {checkpoint}")
    if args.bench:
        from harness.bench.runner import run_bench

        run_dir = run_bench(resolve_trained(cfg, checkpoint), force=True)
        print(f"benchmark results: {run_dir}")
    return 0
