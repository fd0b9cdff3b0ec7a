"""The `attndiff` command. Thin: parse arguments, load the config, call one function.

Errors a user can cause end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from attndiff import UserError, __version__, config

EPILOG = "Config values can be overridden with --set section.key=value (repeatable), e.g. --set train.steps=200."


def _add_config_args(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--config", default=default, metavar="TOML",
                   help=f"config file (default: {default or 'built-in defaults'})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set train.steps=200 (repeatable)")


class Renamed(argparse.Action):
    """A flag that was renamed: using it is one error line that names the new spelling."""

    def __init__(self, option_strings, dest, *, new: str, **kwargs):
        super().__init__(option_strings, dest, nargs=kwargs.pop("nargs", 0), help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        raise UserError(f"{option_string} was renamed: use {self.new}")


def cmd_train(args) -> int:
    from attndiff.jobs.train import TrainJobConfig, run_train

    run_train(config.load(TrainJobConfig, args.config, args.overrides))
    return 0


def cmd_sfbd(args) -> int:
    if args.sfbd_command in ("noise", "estimate-noise"):
        from attndiff.jobs.sfbd_data import estimate_noise, noise_dataset

        if args.sfbd_command == "noise":
            noise_dataset(args.data, args.out, sigma=args.sigma, seed=args.seed, split=args.split, limit=args.limit)
        else:
            estimate_noise(args.file)
        return 0
    from attndiff.jobs.sfbd import SFBDJobConfig, run_sfbd

    cfg = config.load(SFBDJobConfig, args.config, args.overrides)
    if args.sfbd_command == "run":
        run_sfbd(cfg)
    else:
        from attndiff.jobs.sfbd_baselines import run_baseline

        run_baseline(cfg, args.kind)
    return 0


def cmd_spd(args) -> int:
    if args.spd_command == "denoise":
        from attndiff.jobs.spd import run_denoise

        run_denoise(args.images, args.model, sigma=args.sigma, out=args.out, group=args.group,
                    stochastic=args.stochastic, scheme=args.scheme, add_noise=args.add_noise, steps=args.steps,
                    seed=args.seed,
                    device=args.device, precision=args.precision)
        return 0
    from attndiff.jobs.spd import SPDJobConfig, run_spd

    overrides = list(args.overrides)
    overrides += [f"symmetry.group={args.group}"] if args.group else []
    overrides += [f"symmetry.method={args.method}"] if args.method else []
    cfg = config.load(SPDJobConfig, args.config, overrides)
    if (args.group or args.method) and not any(o.startswith("out=") for o in args.overrides):
        cfg.out = str(cfg.run_dir.with_name(f"{cfg.run_dir.name}-{cfg.symmetry.method}-{cfg.symmetry.group}"))
    run_spd(cfg)
    return 0


def cmd_attention(args) -> int:
    from attndiff.attention.model import ABLATIONS
    from attndiff.jobs.attention import AttentionJobConfig, run_attention

    cfg = config.load(AttentionJobConfig, args.config, args.overrides)
    if args.head or args.freeze or args.train_query:  # one variant, from the flags, in its own run folder
        flags = sorted({"keys": "kf", "embeddings": "ef"}[f] for f in args.freeze)
        flags += ["qt"] if args.train_query else []
        assert set(flags) <= set(ABLATIONS)
        variant = "-".join([args.head or cfg.model.head, *flags])
        out = cfg.out or f"runs/{cfg.run_dir.name}-{variant}"
        cfg = config.load(AttentionJobConfig, args.config, [*args.overrides, f'variants=["{variant}"]', f'out="{out}"'])
    run_attention(cfg)
    return 0


def cmd_audio(args) -> int:
    if args.audio_command == "predict":
        from attndiff.jobs.audio_predict import find_model, predict_files

        predict_files(args.files, find_model(args.run, args.seed, args.fold), out=args.out)
        return 0
    from attndiff.jobs.audio import AudioJobConfig, prepare_data, run_audio

    overrides = list(args.overrides)
    if args.audio_command == "prepare":
        return prepare_data(config.load(AudioJobConfig, args.config, overrides))
    overrides += [f'model_kind="{args.model}"'] if args.model else []
    overrides += [f"seeds={args.seeds}"] if args.seeds is not None else []
    run_audio(config.load(AudioJobConfig, args.config, overrides))
    return 0


def cmd_sample(args) -> int:
    from attndiff.jobs.tools import sample_model

    sample_model(args.run, args.out, n=args.n, steps=args.steps, stochastic=args.stochastic, churn=args.churn,
                 seed=args.seed, device=args.device)
    return 0


def cmd_fid(args) -> int:
    from attndiff.metrics.fid import fid, load_samples

    samples = load_samples(args.samples)
    result = fid(samples, args.ref, args.split, args.n or len(samples), with_kid=True, precision=args.precision)
    print(f"FID {result['fid']:.3f}  KID {result['kid']:.5f}  (N={result['fid_n']} samples vs "
          f"{args.n or len(samples)} images of {args.ref}/{args.split})")
    return 0


def cmd_report(args) -> int:
    from attndiff.jobs.tools import rebuild_report

    print(rebuild_report(args.run_dir))
    return 0


def cmd_data(args) -> int:
    from attndiff.jobs.tools import list_datasets

    list_datasets(args.names)
    return 0


def build_parser() -> argparse.ArgumentParser:
    # the lists of choices come from the registries, where they exist once
    import attndiff.symmetry  # noqa: F401  (registers the structure-preserving recipes)
    from attndiff import precision
    from attndiff.attention.model import HEADS
    from attndiff.audio.models import MODELS
    from attndiff.diffusion import model
    from attndiff.diffusion.sampling import SDE_SCHEMES
    from attndiff.metrics.fid import PRECISIONS as FID_PRECISIONS
    from attndiff.sfbd.baselines import BASELINES
    from attndiff.symmetry import groups

    parser = argparse.ArgumentParser(
        prog="attndiff", description="SFBD, structure-preserving diffusion, attention dynamics and CAB-CNN.")
    parser.add_argument("--version", action="version", version=f"attndiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train an unconditional (or class-conditional) EDM model",
                       description="Train an EDM diffusion model on an image dataset; writes checkpoints, a "
                       "sample grid, FID against the dataset's test split and report.html into the run folder. "
                       "Rerunning the same command resumes from the newest checkpoint.", epilog=EPILOG)
    _add_config_args(p, "configs/train/mnist-cpu.toml")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sfbd", help="SFBD: learn a clean diffusion model from noisy data plus a few clean images",
                       description="Stochastic Forward-Backward Deconvolution (arXiv 2502.05446).")
    sfbd = p.add_subparsers(dest="sfbd_command", metavar="SFBD_COMMAND", required=True)
    q = sfbd.add_parser("run", help="pretrain on the clean part, then K backward/forward rounds",
                        description="Split the dataset into a clean part and a frozen-noise noisy part, pretrain "
                        "on the clean part, then alternate the backward step (denoise every noisy image with the "
                        "model's own reverse process from sigma_zeta) and the forward step (fine-tune on clean + "
                        "denoised). Records FID per round, PSNR/FID of the denoised set against the held-back "
                        "originals, sample grids and clean|noisy|denoised triplets, and report.html. Rerunning "
                        "the same command resumes at the phase where it stopped.", epilog=EPILOG)
    _add_config_args(q, "configs/sfbd/mnist-cpu.toml")
    q = sfbd.add_parser("baseline", help="a baseline at the same training compute as the SFBD run",
                        description="Train a baseline for as many steps as the SFBD run of the same config "
                        "(train.steps + sfbd.rounds * sfbd.forward_steps) and score it the same way.", epilog=EPILOG)
    q.add_argument("--kind", required=True, choices=list(BASELINES),
                   help="; ".join(f"{k}: {b.what}" for k, b in BASELINES.items()))
    _add_config_args(q, "configs/sfbd/mnist-cpu.toml")
    q = sfbd.add_parser("noise", help="noise a dataset once (the copyright workflow's first step)",
                        description="Add Gaussian noise of std SIGMA ([-1, 1] scale), frozen by --seed and the image "
                        "index, to every image of a dataset; write them unclipped as float32 with sigma, seed, index.")
    q.add_argument("--data", required=True, help="dataset name: mnist, fashion-mnist, folder:PATH, npz:PATH, ...")
    q.add_argument("--sigma", type=float, required=True, help="noise std on the [-1, 1] scale (0.59 ~ 75/255)")
    q.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    q.add_argument("--split", default="train", help="dataset split (default train)")
    q.add_argument("--limit", type=int, default=0, help="a seeded subset of this many images (default: all)")
    q.add_argument("--out", required=True, help="the noisy .npz to write")
    q = sfbd.add_parser("estimate-noise", help="estimate the noise std of a noisy set from its images",
                        description="Estimate sigma_zeta from the images (Donoho-Johnstone) beside the recorded one.")
    q.add_argument("file", help="a noisy .npz (float images)")
    p.set_defaults(func=cmd_sfbd)

    p = sub.add_parser("spd", help="structure-preserving diffusion: equivariant models and denoising",
                       description="Diffusion models whose denoiser is equivariant under a group of 90-degree "
                       "rotations and flips (arXiv 2402.19369), so the learned distribution is exactly invariant.")
    spd = p.add_subparsers(dest="spd_command", metavar="SPD_COMMAND", required=True)
    q = spd.add_parser("train", help="train one method (wt, regular, fa, reg, augment, none) for a group",
                       description="Train a diffusion model with a symmetry method: wt (weight-tied, group-invariant "
                       "conv kernels), regular (group convolutions on regular feature fields: oriented kernels, "
                       "exactly equivariant; unet.channels counts fields), fa (frame averaging over the group), reg "
                       "(equivariance regulariser against the EMA, sampled with frame averaging), augment (random "
                       "group elements as data augmentation) or none. Writes checkpoints, samples, FID against the "
                       "dataset's test split, the equivariance error, the samples' invariance score (and, with "
                       "symmetry_metrics.orientation_shares, the share of samples per orientation) and report.html. "
                       "With --group or --method the run folder gets them as a suffix: methods land side by side.",
                       epilog=EPILOG)
    _add_config_args(q, "configs/spd/c4-mnist-cpu.toml")
    q.add_argument("--group", choices=groups.NAMES, help="override symmetry.group")
    q.add_argument("--method", choices=list(model.RECIPES), help="override symmetry.method")
    q = spd.add_parser("denoise", help="orientation-free denoising of image files with a trained model",
                       description="Denoise images that carry Gaussian noise of std SIGMA (on the [-1, 1] pixel "
                       "scale) by running the model's reverse process from SIGMA to 0. With an equivariant model "
                       "(or any model, frame-averaged over --group) turning or mirroring the input turns or "
                       "mirrors the output the same way. Writes <name>-denoised.png per image and "
                       "comparison.png (inputs above outputs) into --out.")
    q.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...) of the model's size")
    q.add_argument("--model", required=True, help="run folder or .safetensors checkpoint (any attndiff model)")
    q.add_argument("--sigma", type=float, required=True, help="noise std of the images on the [-1, 1] scale "
                   "(0.59 is about 75/255 on the 0..255 scale)")
    q.add_argument("--group", choices=groups.NAMES,
                   help="symmetry to enforce (default: the model's own; other groups are frame-averaged)")
    q.add_argument("--stochastic", action=argparse.BooleanOptionalAction, default=True,
                   help="the reverse SDE, a posterior sample (default); --no-stochastic: Heun on the "
                   "probability-flow ODE, deterministic and exactly equivariant")
    q.add_argument("--ode", action=Renamed, new="--no-stochastic")
    q.add_argument("--add-noise", action="store_true", help="add noise of std SIGMA first (for clean images)")
    q.add_argument("--steps", type=int, default=15, help="grid points from SIGMA down (default 15)")
    q.add_argument("--scheme", choices=list(SDE_SCHEMES), default="ancestral-2m",
                   help="the reverse SDE's scheme (default ancestral-2m: a posterior sample at 15 steps)")
    q.add_argument("--seed", type=int, default=0, help="seed of the first image's noise (default 0)")
    q.add_argument("--device", default="cpu")
    q.add_argument("--precision", choices=precision.CHOICES, default="auto",
                   help="network precision (auto: bf16 where the CPU is fast at it; fp32: exact equivariance)")
    q.add_argument("--out", default="denoised", help="output folder (default ./denoised)")
    p.set_defaults(func=cmd_spd)

    p = sub.add_parser("attention", help="attention dynamics: score and embedding norm grow together",
                       description="The simple attention text classifier of arXiv 2011.10036 trained by gradient "
                       "descent, against the SEN relation between a word's score and its embedding norm.")
    att = p.add_subparsers(dest="attention_command", metavar="ATTENTION_COMMAND", required=True)
    q = att.add_parser("run", help="train the configured variants on a task and write report.html",
                       description="Train the attention classifier's variants (heads fc/tc/tl and the ablations "
                       "-kf keys frozen, -ef embeddings frozen, -qt query trained) with full-batch gradient descent "
                       "on the synthetic topic task or on movie-review text, with snapshots of every word's score "
                       "and embedding norm. report.html shows the measured paths against the SEN curve, loss "
                       "curves, ablations, final histograms and, for real text, the purity and frequency of the "
                       "top-scoring word over training and a bag-of-words baseline. --head/--freeze/--train-query "
                       "run one variant (into a run folder named after it).", epilog=EPILOG)
    _add_config_args(q, "configs/attention/synthetic.toml")
    q.add_argument("--head", choices=HEADS, help="run one variant with this classifier head")
    q.add_argument("--freeze", action="append", default=[], choices=["keys", "embeddings"],
                   help="freeze keys or embeddings (repeatable)")
    q.add_argument("--train-query", action="store_true", help="train the query too (frozen by default)")
    p.set_defaults(func=cmd_attention)

    p = sub.add_parser("audio", help="CAB-CNN: audio classification with an attention selector over classifiers",
                       description="CAB-CNN (a documented reconstruction of arXiv 2006.09815: no authors' code "
                       "exists) and its baselines on log-mel spectrograms.")
    aud = p.add_subparsers(dest="audio_command", metavar="AUDIO_COMMAND", required=True)
    q = aud.add_parser("prepare", help="synthesise a generated dataset (spoken-digits, accents) into the cache",
                       description="Speak the dataset's clips with espeak-ng once into ~/.cache/attndiff/audio "
                       "(deterministic for audio.seed); `audio run` does this itself when needed.", epilog=EPILOG)
    _add_config_args(q, "configs/audio/spoken-digits.toml")
    q = aud.add_parser("run", help="train and evaluate one model over seeds and folds",
                       description="Train CAB-CNN (cabcnn), one linear head (linear) or an MLP head with at least "
                       "CAB-CNN's head parameters (mlp) on the same CNN front end, for every seed and test fold; "
                       "report accuracy and macro precision/recall/F1 as mean ± std, the confusion matrix, the "
                       "selector weights per class, learning curves and parameter counts in report.html. Rerunning "
                       "continues with the unfinished (seed, fold) pairs.", epilog=EPILOG)
    _add_config_args(q, "configs/audio/spoken-digits.toml")
    q.add_argument("--model", choices=list(MODELS), help="override model_kind")
    q.add_argument("--seeds", type=int, help="override seeds (default from the config: 5)")
    q = aud.add_parser("predict", help="classify audio files with a trained model",
                       description="Class probabilities, the top class and (CAB-CNN) the selector's weights over its "
                       "classifiers for each file, through the run's own resampling, crop/pad and log-mel.")
    q.add_argument("files", nargs="+", help="audio files (wav, flac, ogg)")
    q.add_argument("--model", dest="run", required=True, help="the run folder of `audio run` (or a checkpoint file)")
    q.add_argument("--seed", type=int, help="which seed's model (default: the first)")
    q.add_argument("--fold", type=int, help="which test fold's model (default: the first)")
    q.add_argument("--out", help="also write the predictions to this CSV file")
    p.set_defaults(func=cmd_audio)

    p = sub.add_parser("sample", help="generate images from a trained model",
                       description="Generate images with the EMA weights of a run (or a checkpoint file).")
    p.add_argument("run", help="run folder or .safetensors checkpoint")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--steps", type=int, default=18, help="EDM sigma grid points (default 18)")
    p.add_argument("--stochastic", action="store_true", help="the reverse SDE instead of Heun on the "
                   "probability-flow ODE")
    p.add_argument("--solver", action=Renamed, nargs=1, new="--stochastic (the reverse SDE) or nothing (Heun)")
    p.add_argument("--churn", type=float, default=0.0, help="EDM S_churn for heun (0 = deterministic)")
    p.add_argument("--seed", type=int, default=0, help="first per-sample seed (default 0)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="samples.png", help="a .png grid, or any other name for a uint8 .npz")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("fid", help="FID/KID of images against a dataset",
                       description="FID and KID (real InceptionV3 of the TF FID code) of SAMPLES against a "
                       "dataset split. Reference features are cached.")
    p.add_argument("samples", help="a folder of PNG/JPEG images, or an .npz with an 'images' array")
    p.add_argument("--ref", required=True, help="reference dataset: mnist, fashion-mnist, emoji, digits, "
                   "folder:PATH, npz:PATH")
    p.add_argument("--split", default="test", help="reference split (default test)")
    p.add_argument("--precision", choices=FID_PRECISIONS, default="fp32",
                   help="Inception features in fp32 (default; the same on every machine) or bf16 (faster on AMX CPUs)")
    p.add_argument("--n", type=int, default=0, help="reference images (default: as many as samples)")
    p.set_defaults(func=cmd_fid)

    p = sub.add_parser("report", help="rebuild a run folder's report.html")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("data", help="list datasets and check that they load")
    p.add_argument("names", nargs="*", help="datasets to check (default: all built-in)")
    p.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    from attndiff import distributed

    where = f"[rank {distributed.rank_from_env()}] " if distributed.launched() else ""
    try:
        args = build_parser().parse_args(argv)
        distributed.init()  # under torchrun: join the process group
        code = args.func(args)
        distributed.barrier()  # ranks leave together: rank 0 may still be evaluating
        return code
    except UserError as e:
        print(f"attndiff: {where}error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a permission problem: the OS's own words, with the file
        name = f": {e.filename}" if e.filename else ""
        print(f"attndiff: {where}error: {e.strerror or e}{name}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attndiff: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
