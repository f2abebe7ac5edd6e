"""The ``nnspec`` command: compile specs, export the schema, build tiny checkpoints, run checks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .errors import NnspecError, TinyCheckpointError


def _compile(args: argparse.Namespace) -> int:
    from .compiler import codegen

    spec_dir = Path(args.specs) if args.specs else codegen.BUNDLED_DIR
    out_dir = Path(args.out) if args.out else codegen.GENERATED_DIR
    if args.check:
        codegen.check(spec_dir, out_dir)
        print(f"{out_dir}: up to date with {spec_dir}")
        return 0
    written = codegen.write(spec_dir, out_dir)
    print(f"compiled {len(written) - 1} specs into {out_dir}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from .compiler.schema import Spec

    text = json.dumps(Spec.model_json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _list(args: argparse.Namespace) -> int:
    from .runtime.registry import adapter_by_name, spec_names

    for name in spec_names():
        adapter = adapter_by_name(name)
        spec = adapter.spec
        parent = f" (extends {spec.extends})" if spec.extends else ""
        print(f"{name:12s} {', '.join(spec.model_types):20s} {spec.description}{parent}")
    return 0


def _spec_of(name: str) -> object:
    from .runtime.registry import adapter_by_name, resolve_adapter

    if name.endswith(".toml"):
        return resolve_adapter(name, "").spec
    return adapter_by_name(name).spec


def _tiny(args: argparse.Namespace) -> int:
    from .runtime import realconfigs, tiny

    if args.from_config is not None:
        if len(args.words) != 1:
            raise TinyCheckpointError(
                f"nnspec tiny --from-config {args.from_config} takes one DIRECTORY, got {len(args.words)} arguments "
                f"({' '.join(args.words)})"
            )
        directory = tiny.refuse_non_empty(args.words[0], args.force)
        name, config = realconfigs.resolve(args.from_config)
        path = tiny.publish_to(directory, lambda staging: tiny.build_from_config(config, staging, name=name, seed=args.seed))
        print(f"wrote a tiny checkpoint of {name} ({config['model_type']}, sizes shrunk) to {path}")
        return 0
    if len(args.words) != 2:
        raise TinyCheckpointError(
            "nnspec tiny takes SPEC DIRECTORY (a bundled spec name or spec file, then the output folder), "
            f"or --from-config CONFIG DIRECTORY; got {len(args.words)} argument(s)"
        )
    spec_name, target = args.words
    spec = _spec_of(spec_name)
    directory = tiny.refuse_non_empty(target, args.force)
    path = tiny.publish_to(directory, lambda staging: tiny.build(spec, staging, variant=args.variant, seed=args.seed))
    print(f"wrote a tiny {spec_name} checkpoint to {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    import torch

    from .runtime import conformance

    torch.set_num_threads(args.threads)
    subject = conformance.load_subject(args.model, args.model, spec=args.spec, trust_remote_code=args.trust_remote_code)
    results = conformance.run_checks(subject, args.checks.split(",") if args.checks else None)
    for r in results:
        status = "pass" if r.passed else "FAIL"
        detail = f"max diff {r.max_diff:.2g}" if r.passed else r.error
        print(f"{status}  {r.check:24s} {r.seconds:6.2f}s  {detail}")
    return 0 if all(r.passed for r in results) else 1


def _matrix(args: argparse.Namespace) -> int:
    from .runtime import matrix

    report = matrix.run_matrix(
        specs=args.specs.split(",") if args.specs else None,
        jobs=args.jobs,
        variants=not args.no_variants,
        real=not args.no_real,
        progress=not args.quiet,
    )
    print(matrix.table(report))
    md, js = matrix.write(report, Path(args.out))
    print(f"wrote {md} and {js}")
    return 0 if matrix.passed(report) else 1


def _lens(args: argparse.Namespace) -> int:
    import torch

    from .runtime.display import display_token, lens_grid, plot_logit_lens

    torch.set_num_threads(args.threads)
    if len(args.words) > 2:
        raise SystemExit("nnspec lens: give [MODEL] PROMPT (quote the prompt)")
    model_id, prompt = (args.words if len(args.words) == 2 else (None, args.words[0]))
    model = _lens_model(model_id, args.spec)
    grid = lens_grid(model, prompt, k=args.k)
    last = len(grid["tokens"]) - 1
    print(f"logit lens at the last token of {prompt!r} ({model.spec.name}, {model.num_layers} layers)")
    for layer, cells in zip(grid["layers"], grid["top"]):
        tops = "  ".join(f"{display_token(tok)!r} {p:.3f}" for tok, p in cells[last])
        print(f"  layer {layer:3d}: {tops}")
    if args.plot or args.html:
        plot_logit_lens(model, prompt, path=args.plot, html_path=args.html, k=args.k)
        print("wrote " + " and ".join(str(p) for p in (args.plot, args.html) if p))
    return 0


def _lens_model(model_id: Optional[str], spec: Optional[str]) -> object:
    from .runtime import tiny
    from .runtime.model import StandardizedTransformer
    from .runtime.registry import adapter_by_name

    if model_id is None:
        from transformers.utils import logging

        logging.disable_progress_bar()
        model_id = str(tiny.checkpoint(adapter_by_name("gpt2").spec))
        print(f"(no MODEL given: using the tiny offline gpt2 checkpoint at {model_id}; its weights are random)")
    return StandardizedTransformer(model_id, spec=spec)


def _compat(args: argparse.Namespace) -> int:
    from .runtime import compat

    results = Path(args.results)
    if not results.is_dir():
        raise SystemExit(f"nnspec compat: {results} not found: run `nox -s matrix` first")
    data = compat.merge(results)
    Path(args.data).parent.mkdir(parents=True, exist_ok=True)
    Path(args.data).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    Path(args.doc).write_text(compat.markdown(data), encoding="utf-8")
    print(f"merged {len(data['runs'])} runs ({len(data['gaps'])} gaps) into {args.data} and {args.doc}")
    return 0


def _support(args: argparse.Namespace) -> int:
    from .runtime import matrix

    results = Path(args.results)
    if not results.is_file():
        raise SystemExit(f"nnspec support: {results} not found: run `nnspec matrix` first (it writes matrix.json)")
    report = json.loads(results.read_text(encoding="utf-8"))
    Path(args.output).write_text(matrix.support_markdown(report), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def _scaffold(args: argparse.Namespace) -> int:
    import torch

    from .scaffold.draft import scaffold

    torch.set_num_threads(args.threads)
    path, results, parent = scaffold(args.target, Path(args.output) if args.output else None, args.name, check=not args.no_check)
    print(f"wrote {path}" + (f" (extends {parent})" if parent else ""))
    for r in results:
        print(f"{'pass' if r.passed else 'FAIL'}  {r.check:24s} {'' if r.passed else r.error[:200]}")
    if results and not all(r.passed for r in results):
        print("some checks fail: the spec's header lists them; review before relying on it")
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnspec", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="render specs into generated adapters (or check for drift)")
    c.add_argument("--check", action="store_true", help="exit 1 if the generated adapters differ from the specs")
    c.add_argument("--specs", help="spec folder (default: the bundled specs)")
    c.add_argument("--out", help="output folder (default: nnspec/generated)")
    c.set_defaults(run=_compile)

    s = sub.add_parser("schema", help="print the JSON Schema of spec files")
    s.add_argument("-o", "--output", help="write to this file instead of stdout")
    s.set_defaults(run=_schema)

    ls = sub.add_parser("list", help="list the bundled specs and the model types they serve")
    ls.set_defaults(run=_list)

    t = sub.add_parser(
        "tiny",
        help="build a tiny offline checkpoint (random weights, local tokenizer): SPEC DIRECTORY, or "
        "--from-config CONFIG DIRECTORY",
    )
    t.add_argument("words", nargs="+", metavar="[SPEC] DIRECTORY",
                   help="bundled spec name or spec file, then an empty or new output folder")
    t.add_argument("--from-config", metavar="CONFIG",
                   help="a real config.json, checkpoint folder or Hub id: keep every key but sizes")
    t.add_argument("--variant", help="one of the spec's [variants]")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--force", action="store_true", help="replace a tiny checkpoint nnspec wrote in DIRECTORY before")
    t.set_defaults(run=_tiny)

    k = sub.add_parser("check", help="run the conformance checks on a model (hub id or local path)")
    k.add_argument("model")
    k.add_argument("--spec", help="spec file or bundled spec name (default: by config.model_type)")
    k.add_argument("--checks", help="comma-separated subset of checks")
    k.add_argument("--threads", type=int, default=1)
    k.add_argument("--trust-remote-code", action="store_true")
    k.set_defaults(run=_check)

    co = sub.add_parser("compat", help="merge `nox -s matrix` results into the compatibility table and data")
    co.add_argument("--results", default="compat-results")
    co.add_argument("--doc", default="docs/compatibility.md")
    co.add_argument("--data", default="src/nnspec/data/compatibility.json")
    co.set_defaults(run=_compat)

    su = sub.add_parser("support", help="write docs/architectures.md from the specs and a matrix run")
    su.add_argument("--results", default="matrix-results/matrix.json", help="matrix.json from `nnspec matrix`")
    su.add_argument("-o", "--output", default="docs/architectures.md")
    su.set_defaults(run=_support)

    sc = sub.add_parser("scaffold", help="draft a spec for a model type or checkpoint, and check it")
    sc.add_argument("target", help="a config.model_type (built offline) or a checkpoint directory")
    sc.add_argument("-o", "--output", help="where to write the spec (default: specs/NAME.toml)")
    sc.add_argument("--name", help="spec name (default: the model type)")
    sc.add_argument("--no-check", action="store_true", help="do not run the conformance checks on the draft")
    sc.add_argument("--threads", type=int, default=1)
    sc.set_defaults(run=_scaffold)

    le = sub.add_parser("lens", help="logit lens: top tokens per layer at the last token of a prompt")
    le.add_argument("words", nargs="+", metavar="[MODEL] PROMPT", help="hub id or local path (default: tiny offline gpt2), then the prompt")
    le.add_argument("--spec", help="spec file or bundled spec name")
    le.add_argument("--plot", help="save a layers x positions heatmap PNG here")
    le.add_argument("--html", help="save the heatmap as an HTML page here")
    le.add_argument("-k", type=int, default=5, help="tokens per layer (default 5)")
    le.add_argument("--threads", type=int, default=1)
    le.set_defaults(run=_lens)

    m = sub.add_parser("matrix", help="build every spec's tiny checkpoint and run every check")
    m.add_argument("--specs", help="comma-separated spec names (default: all)")
    m.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    m.add_argument("--no-variants", action="store_true", help="only each spec's base checkpoint")
    m.add_argument("--no-real", action="store_true", help="leave out the rows built from real published configs")
    m.add_argument("--out", default="matrix-results", help="folder for matrix.md and matrix.json")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(run=_matrix)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except NnspecError as exc:
        print(f"nnspec {args.command}: {exc}", file=sys.stderr)
        return 2
