"""Command line: ``python -m visrec_utils study ...``, ``python -m visrec_utils export ...``,
``python -m visrec_utils lab`` and ``python -m visrec_utils refresh-baseline``."""
from __future__ import annotations

import argparse
import sys

from .features.models import CONTROLS, LAYERS, OFFLINE_MODELS, PRESETS

DEFAULT_MODELS = OFFLINE_MODELS + CONTROLS + LAYERS


def main(argv=None) -> int:
    """Parse the command line and run it; returns the exit status (2 on a user error)."""
    p = argparse.ArgumentParser(prog="python -m visrec_utils", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("study", help="run notebooks 01-06 with papermill and render HTML reports")
    s.add_argument("--data", dest="data_dir", default=None,
                   help="catalogue folder, or 'demo' for the generated synthetic catalogue (default: "
                        "$VISREC_DATA, else ../shared/data/hm_sample, else the demo)")
    s.add_argument("--models", nargs="+", default=None,
                   help=f"registry or timm model names, 'random_<model>', 'timm_arch=/checkpoint/file', presets "
                        f"{sorted(PRESETS)} (default: the presets offline, controls and layers), or features computed "
                        "elsewhere: 'file:/path/features.parquet?top1=81.2' (item_id plus the vectors; top1 optional)")
    s.add_argument("--max-users", type=int, default=None, help="seeded slice: number of users")
    s.add_argument("--max-items", type=int, default=None, help="seeded slice: number of items")
    s.add_argument("--out", default="study_output", help="output folder (default ./study_output)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cache-dir", default=None, help="cache folder (default $VISREC_CACHE or ~/.cache/visrec)")
    s.add_argument("--figures-to", default=None,
                   help="also copy the figures into this folder (they show the catalogue's product photos)")
    s.add_argument("--repo-figures", action="store_true",
                   help="refresh the repository's figures/ (what make study does); done only when the catalogue "
                        "is the H&M sample, never from your own data")
    s.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help="stop a notebook whose cell runs longer than this (default: no limit)")
    s.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="ray: extraction and evaluation sharded into tasks over a Ray cluster "
                        "(pip install -e '.[ray]')")
    s.add_argument("--ray-address", default=None,
                   help="Ray cluster to connect to, e.g. 'auto' or 'ray://head:10001' (default $RAY_ADDRESS, "
                        "else a local Ray)")
    s.add_argument("--log-output", action="store_true",
                   help="stream notebook output to the terminal (default: one live progress line per notebook, "
                        "then its time and peak memory)")
    s.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="any notebook parameter (as papermill -p; VALUE is read as YAML: 2000, true, '[10, 20]'); "
                        "repeatable")
    s.add_argument("--rerun", action="store_true",
                   help="run every notebook, even those whose inputs did not change since the last run in --out")
    s.add_argument("--quick", action="store_true",
                   help="a quick slice to try the study (minutes, not hours): the parameters of "
                        "visrec_utils.pipeline.runner.QUICK_PARAMS (100 customers, the offline models, short training, "
                        "fewer resamples and protocols); --models, --max-users, --max-items and -p override them")
    e = sub.add_parser("export", help="write a study's embedding sets (Parquet, Cornac, MMRec, Elliot) and its split")
    e.add_argument("--out", default="study_output", help="the study's output folder (default ./study_output)")
    e.add_argument("--to", dest="dest", required=True, help="destination folder (created)")
    e.add_argument("--format", nargs="+", default=["all"], choices=["all", "parquet", "cornac", "mmrec", "elliot"],
                   help="formats to write (default: all)")
    e.add_argument("--sets", nargs="+", default=None,
                   help="sets to export: model names, <model>/<strategy> or set file stems (default: every set)")
    e.add_argument("--no-split", action="store_true", help="leave out the train/validation/test tables")
    lab = sub.add_parser("lab", help="JupyterLab on this environment, rooted here, no browser (what make lab runs)")
    lab.add_argument("--port", type=int, default=8888, help="port to listen on (default 8888)")
    lab.add_argument("--root", default=".", help="folder the file browser starts at (default: the current folder)")
    b = sub.add_parser("refresh-baseline", help="rerun the test slice and overwrite tests/baselines/slice_metrics.csv")
    b.add_argument("--out", default="study_output/baseline_slice")
    b.add_argument("--cache-dir", default=None)
    b.add_argument("--data", dest="data_dir", default=None)
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 2):  # -p NAME VALUE: VALUE may start with "-" (e.g. -/-/popularity)
        if argv[i] in ("-p", "--param") and argv[i + 2].startswith("-") and not argv[i + 2].startswith("--"):
            argv[i + 2] = " " + argv[i + 2]  # argparse takes it as a value; YAML ignores the space
    args = p.parse_args(argv)
    if args.cmd == "lab":
        from .pipeline.lab import run_lab

        try:
            run_lab(args.port, args.root)  # replaces this process; returns only on an error
        except ValueError as e:
            print(f"visrec: error: {e}", file=sys.stderr)
            return 2
        return 0

    from .catalogue.data import DataError, find_default_data_dir, resolve_data_dir
    from .core.log import get_logger
    from .pipeline.runner import QUICK_PARAMS, StudyError, StudyInterrupted, refresh_baseline, run_study

    log = get_logger("visrec_utils.cli")

    try:
        if args.cmd == "study":
            if args.data_dir == "demo":
                data_dir = "demo"
            elif args.data_dir:
                data_dir = str(resolve_data_dir(args.data_dir))
            else:
                found = find_default_data_dir()
                data_dir = str(found) if found else "demo"
            if data_dir == "demo":
                why = "as asked (--data demo)" if args.data_dir == "demo" else "because no dataset was given or found"
                log.info(f"running on the generated SYNTHETIC demo catalogue {why}; every report says so. "
                         "Use --data DIR or VISREC_DATA for real data.")
            params = {"data_dir": data_dir, "models": list(DEFAULT_MODELS), "max_users": None, "max_items": None,
                      "seed": args.seed, "backend": args.backend, "ray_address": args.ray_address}
            if args.quick:  # the preset first: what the command line names explicitly wins
                params.update({k: list(v) if isinstance(v, list) else v for k, v in QUICK_PARAMS.items()})
            for name, given in (("models", args.models), ("max_users", args.max_users), ("max_items", args.max_items)):
                if given is not None:
                    params[name] = list(given) if name == "models" else given
            if args.cache_dir:
                params["cache_dir"] = args.cache_dir
            import datetime

            import yaml

            for name, value in args.param:
                try:  # an empty value is the empty string (e.g. -p imagenet_dir ''), not YAML's null
                    params[name] = yaml.safe_load(value) if value.strip() else ""
                    if isinstance(params[name], (datetime.date, datetime.datetime)):  # YAML reads 2020-06-01 as a date
                        params[name] = params[name].isoformat()
                except yaml.YAMLError as e:
                    raise ValueError(f"-p {name}: {value.strip()!r} is not a YAML value ({str(e).splitlines()[0]}); "
                                     "e.g. 2000, true, '[10, 20]', some_text") from e
            rec = run_study(params, args.out, figures_to=args.figures_to, log_output=args.log_output,
                            reuse=not args.rerun, repo_figures=args.repo_figures, cell_timeout=args.cell_timeout)
            log.info(f"study finished in {rec['total_seconds']:.0f} s; reports in {args.out}/reports")
        elif args.cmd == "export":
            from .features.exchange import export_study

            table = export_study(args.out, args.dest, format=args.format, sets=args.sets, split=not args.no_split)
            log.info(f"wrote {len(table)} export(s) to {args.dest}; each is listed in {args.dest}/exports.csv")
        else:
            path = refresh_baseline(args.out, args.cache_dir, args.data_dir)
            log.info(f"baseline written to {path}; review 'git diff' before committing it")
    except StudyInterrupted as e:
        print(f"visrec: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("visrec: interrupted (Ctrl-C); every finished notebook is kept. Rerun the same command to resume.",
              file=sys.stderr)
        return 130
    except OSError as e:  # outside a notebook: writing run.json, reports or figures
        import errno

        if e.errno == errno.ENOSPC:
            what, fix = "the disk is full", "free space (df -h)"
        else:
            what, fix = e.strerror or type(e).__name__, "check that path (a file where a folder should be, permissions)"
        again = " finished notebooks are reused." if args.cmd == "study" else ""
        print(f"visrec: error: {what} ({e.filename or e}); {fix}, then rerun the same command.{again}",
              file=sys.stderr)
        return 2
    except KeyError as e:  # an unknown model name says so in a sentence; a bare key is a bug: its traceback
        if not (e.args and isinstance(e.args[0], str) and " " in e.args[0]):
            raise
        print(f"visrec: error: {e.args[0]}", file=sys.stderr)
        return 2
    except (DataError, StudyError, ValueError) as e:
        print(f"visrec: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
