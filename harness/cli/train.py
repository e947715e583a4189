"""``run.py train CONFIG.yaml [key=value ...]``: train the tokenizer or AlignVAR as the experiment says."""

from __future__ import annotations

import argparse

from harness.cli.options import add_offline, apply_offline

HELP = "train a tokenizer (type: vqvae) or AlignVAR (type: alignvar) from an experiment YAML"
DESCRIPTION = """\
Train as described by the experiment's 'train:' block (and 'model:' for AlignVAR). Output goes to
<output_root>/<name>/train/ (checkpoints/, metrics.csv, model.safetensors); an interrupted run resumes from its
latest checkpoint when started again. Multi-GPU: launch with torchrun, e.g.
  torchrun --nproc-per-node=8 run.py train experiments/train_lsdir_ffhq.yaml
Then evaluate with 'run.py bench' (a method with checkpoint: "@trained" uses the result) or 'run.py train ...
--bench'."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML with a 'train:' block")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.hcc.lambda=0.5 train.loop.steps=100")
    parser.add_argument("--output-root", help="override output_root (default: the YAML's, usually runs/)")
    parser.add_argument("--device", help="training device: auto, cpu, cuda, cuda:N (default: the YAML's)")
    parser.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
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
    checkpoint = run_train(cfg, resume=not args.no_resume, device=args.device)
    print(f"trained checkpoint: {checkpoint}")
    if args.bench:
        from harness.bench.runner import run_bench

        run_dir = run_bench(resolve_trained(cfg, checkpoint), force=True)
        print(f"benchmark results: {run_dir}")
    return 0
