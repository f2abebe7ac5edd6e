"""The ``nnspec`` command: compile specs, export the schema, build tiny checkpoints, run checks."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import NnspecError, TinyCheckpointError, UnsupportedArchitectureError, UsageError

#: The top-level help text (plain text: argparse prints it as is).
DESCRIPTION = (
    "The nnspec command: compile specs, export the schema, build tiny checkpoints, run checks. "
    "Run 'nnspec COMMAND --help' for one command's options."
)


def _compile(args: argparse.Namespace) -> int:
    from .compiler import codegen

    spec_dir = Path(args.specs) if args.specs else codegen.BUNDLED_DIR
    out_dir = Path(args.out) if args.out else codegen.GENERATED_DIR
    codegen.spec_folder(spec_dir)  # a missing or empty spec folder is refused before the output is touched
    for note in codegen.recover(out_dir):
        print(f"nnspec compile: {note}", file=sys.stderr)
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
        _writable("-o/--output", args.output)
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
        path = tiny.publish(directory, lambda staging: tiny.build_from_config(config, staging, name=name, seed=args.seed), replace=True)
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
    path = tiny.publish(directory, lambda staging: tiny.build(spec, staging, variant=args.variant, seed=args.seed), replace=True)
    print(f"wrote a tiny {spec_name} checkpoint to {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    import torch

    from .runtime import conformance

    torch.set_num_threads(args.threads)
    _model_argument("MODEL", args.model)
    if args.spec:
        _resolve_spec(args.spec)  # an unknown spec name or file fails before the model is loaded
    if args.checks:
        unknown = [c for c in args.checks.split(",") if c not in conformance.CHECKS]
        if unknown:
            from .errors import did_you_mean

            raise UsageError(
                f"--checks: unknown check {unknown[0]!r}{did_you_mean(unknown[0], conformance.CHECKS)}; "
                f"checks: {', '.join(conformance.CHECKS)}"
            )
    subject = _loading(
        "MODEL", args.model,
        lambda: conformance.load_subject(args.model, args.model, spec=args.spec, trust_remote_code=args.trust_remote_code),
    )
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
        raise UsageError(f"give [MODEL] PROMPT (quote the prompt); got {len(args.words)} words")
    model_id, prompt = (args.words if len(args.words) == 2 else (None, args.words[0]))
    if args.plot:
        _writable("--plot", args.plot)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError(
                f"--plot {args.plot}: PNG plots need matplotlib, which is not installed "
                "(pip install 'nnspec[display]'), or use --html PATH for an HTML page"
            ) from None
    if args.html:
        _writable("--html", args.html)
    if model_id is not None:
        _model_argument("MODEL", model_id)
    if args.spec:
        _resolve_spec(args.spec)
    model = _loading("MODEL", model_id or "the tiny gpt2 checkpoint", lambda: _lens_model(model_id, args.spec))
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
        raise UsageError(f"--results {results}: folder not found: run 'nox -s matrix' first")
    _writable("--doc", args.doc)
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
        raise UsageError(f"--results {results}: file not found: run 'nnspec matrix' first (it writes matrix.json)")
    _writable("-o/--output", args.output)
    try:
        report = json.loads(results.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"--results {results}: not a matrix.json written by 'nnspec matrix' ({exc})") from None
    Path(args.output).write_text(matrix.support_markdown(report), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def _scaffold(args: argparse.Namespace) -> int:
    import torch

    from .scaffold.draft import scaffold

    torch.set_num_threads(args.threads)
    output = Path(args.output) if args.output else None
    planned = output or _scaffold_default(args.target, args.name)
    if planned is not None and planned.exists() and not args.force:
        raise UsageError(
            f"{'-o/--output ' if output else ''}{planned} already exists; nnspec scaffold does not overwrite it: "
            "give -o another path, or --force to replace it"
        )
    if output is not None:
        _writable("-o/--output", str(output), make_parents=True)
    path, results, parent = scaffold(args.target, output, args.name, check=not args.no_check)
    print(f"wrote {path}" + (f" (extends {parent})" if parent else ""))
    for r in results:
        print(f"{'pass' if r.passed else 'FAIL'}  {r.check:24s} {'' if r.passed else r.error[:200]}")
    if results and not all(r.passed for r in results):
        print("some checks fail: the spec's header lists them; review before relying on it")
        return 1
    return 0


def _scaffold_default(target: str, name: Optional[str]) -> Optional[Path]:
    """Where ``nnspec scaffold`` writes without -o (None when only loading the model would tell)."""
    from .compiler.loader import BUNDLED_DIR

    if name:
        return BUNDLED_DIR / f"{name}.toml"
    if Path(target).exists() or "/" in target:
        try:
            model_type = json.loads((Path(target) / "config.json").read_text(encoding="utf-8"))["model_type"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return BUNDLED_DIR / f"{str(model_type).replace('-', '_')}.toml"
    return BUNDLED_DIR / f"{target.replace('-', '_')}.toml"


# -- user errors ------------------------------------------------------------------------------------


def _writable(option: str, value: str, make_parents: bool = False) -> None:
    """Refuse an output path whose folder does not exist (or that is a folder), naming ``option``."""
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"{option} {value}: is a folder; give a file path")
    parent = path.parent
    if make_parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {value}: folder {parent} does not exist")


def _looks_like_path(value: str) -> bool:
    """Whether ``value`` can only be a local path (a Hub id is ``name`` or ``namespace/name``)."""
    return (
        os.path.isabs(value) or value.startswith((".", "~")) or value.count("/") > 1
        or "\\" in value or value.endswith((".json", ".safetensors", ".bin"))
    )


def _model_argument(option: str, value: str) -> None:
    if _looks_like_path(value) and not Path(value).expanduser().exists():
        raise UsageError(f"{option} {value}: no such file or folder (and not a Hugging Face Hub id)")


def _resolve_spec(value: str) -> Any:
    from .runtime.registry import resolve_adapter

    if value.endswith(".toml") or "/" in value:
        if not Path(value).is_file():
            raise UsageError(f"--spec {value}: spec file not found")
    try:
        return resolve_adapter(value, "")
    except UnsupportedArchitectureError as exc:  # an unknown bundled spec name
        raise UsageError(f"--spec {value}: {exc}") from None


def _loading(option: str, value: str, load: Callable[[], Any]) -> Any:
    """Run ``load``; a model that cannot be found or read (OSError from transformers or the hub, or
    a ValueError naming the checkpoint, e.g. a config.json without model_type) is the user's
    argument at fault, so it becomes one line naming it."""
    try:
        return load()
    except (OSError, ValueError) as exc:
        text = str(exc).strip()
        if isinstance(exc, ValueError) and value not in text:
            raise  # not about the checkpoint the user named: a bug, keep the traceback
        first = text.splitlines()[0] if text else type(exc).__name__
        raise UsageError(f"{option} {value}: cannot be loaded: {first}") from None


def _user_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """Path-like values given on the command line, by their option name (or metavar)."""
    names: dict[str, str] = {}
    try:
        actions = p._subparsers._group_actions[0].choices[args.command]._actions  # type: ignore[union-attr]
    except (AttributeError, IndexError, KeyError):  # pragma: no cover - argparse internals changed
        actions = []
    for action in actions:
        names[action.dest] = "/".join(action.option_strings) or (action.metavar or action.dest).upper()
    found: dict[str, str] = {}
    for dest, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str) and dest not in ("command",):
                found[v] = names.get(dest, dest)
    return found


def _blames_argument(exc: OSError, given: dict[str, str]) -> Optional[str]:
    """``OPTION VALUE`` when ``exc`` is about a path the user gave (that path, a folder above it
    or a file inside it), else None: other OSErrors are bugs and keep their traceback."""
    for filename in (exc.filename, getattr(exc, "filename2", None)):
        if filename is None or not isinstance(filename, (str, bytes, os.PathLike)):
            continue
        failed = Path(os.fsdecode(filename)).absolute()
        for value, option in given.items():
            try:
                mine = Path(value).expanduser().absolute()
            except (OSError, ValueError):
                continue
            if failed == mine or failed in mine.parents or mine in failed.parents:
                return f"{option} {value}"
    return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnspec", description=DESCRIPTION)
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
    sc.add_argument("--force", action="store_true", help="replace an existing spec file at the output path")
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


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Optional[list[str]] = None) -> int:
    """Run the ``nnspec`` command. User errors print one line ``nnspec COMMAND: message`` on stderr
    and return 2; a reader closing the pipe early (``nnspec list | head -1``) returns 141 quietly."""
    p = parser()
    args = p.parse_args(argv)
    try:
        code = args.run(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, as a command killed by the closed pipe would
    except NnspecError as exc:
        print(f"nnspec {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nnspec {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        blamed = _blames_argument(exc, _user_arguments(p, args))
        if blamed is None:
            raise
        reason = exc.strerror or str(exc)
        where = os.fsdecode(exc.filename) if exc.filename is not None else ""
        print(f"nnspec {args.command}: {blamed}: {reason}" + (f" ({where})" if where and where not in blamed else ""),
              file=sys.stderr)
        return 2
