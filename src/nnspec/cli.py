"""The ``nnspec`` command: compile specs, export the schema, build tiny checkpoints, run checks."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._version import __version__
from .errors import NnspecError, TinyCheckpointError, UnsupportedArchitectureError, UsageError, did_you_mean

if TYPE_CHECKING:
    from .compiler.schema import Spec

#: The top-level help text (plain text: argparse prints it as is).
DESCRIPTION = (
    "The nnspec command: compile specs, export the schema, build tiny checkpoints, run checks. "
    "Run 'nnspec COMMAND --help' for one command's options."
)


#: ``--dtype`` values and the torch dtype each loads the weights in ("auto": the checkpoint's own).
DTYPES: dict[str, str] = {
    "auto": "auto", "float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
    "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16",
}


def version_line() -> str:
    """``nnspec X (transformers A, nnsight B, torch C)``: the versions that decide what runs."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return f"nnspec {__version__} (" + ", ".join(f"{n} {installed(n)}" for n in ("transformers", "nnsight", "torch")) + ")"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2), like nnspec's own."""

    def error(self, message: str) -> Any:  # argparse's signature says NoReturn
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


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

    rows = [("NAME", ["MODEL TYPES"], "DESCRIPTION")]
    for name in spec_names():
        spec = adapter_by_name(name).spec
        about = " ".join(filter(None, [spec.description, f"(extends {spec.extends})" if spec.extends else ""]))
        rows.append((name, list(spec.model_types), about))
    print("\n".join(list_table(rows)))
    return 0


def list_table(rows: list[tuple[str, list[str], str]], types_width: int = 40) -> list[str]:
    """Lines of a three-column table: NAME, MODEL TYPES, DESCRIPTION. The first two columns are as
    wide as their longest cell (the types at most ``types_width``: a longer list continues on the
    next lines, under its own column), so that every description starts in one column."""
    name_width = max(len(name) for name, _, _ in rows)
    cells = [_wrap_types(types, types_width) for _, types, _ in rows]
    width = max(len(line) for lines in cells for line in lines)
    out = []
    for (name, _, about), lines in zip(rows, cells):
        out.append(f"{name:<{name_width}}  {lines[0]:<{width}}  {about}".rstrip())
        out += [f"{'':<{name_width}}  {line}".rstrip() for line in lines[1:]]
    return out


def _wrap_types(types: list[str], width: int) -> list[str]:
    lines = [""]
    for i, kind in enumerate(types):
        piece = kind + ("," if i < len(types) - 1 else "")
        if lines[-1] and len(lines[-1]) + 1 + len(piece) > width:
            lines.append(piece)
        else:
            lines[-1] = f"{lines[-1]} {piece}".strip()
    return lines


def _spec_of(name: str) -> Spec:
    from .runtime.registry import adapter_by_name, resolve_adapter

    if name.endswith(".toml"):
        return resolve_adapter(name, "").spec
    return adapter_by_name(name).spec


def _tiny(args: argparse.Namespace) -> int:
    from .verification import realconfigs, tiny

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

    from .verification import conformance

    torch.set_num_threads(args.threads)
    _model_argument("MODEL", args.model)
    if args.spec:
        _resolve_spec(args.spec)  # an unknown spec name or file fails before the model is loaded
    placement = _placement(args)  # so does a bad --dtype or --device
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
        lambda: conformance.load_subject(
            args.model, args.model, spec=args.spec, trust_remote_code=args.trust_remote_code, **placement
        ),
    )
    results = conformance.run_checks(subject, args.checks.split(",") if args.checks else None)
    for r in results:
        status = "pass" if r.passed else "FAIL"
        detail = f"max diff {r.max_diff:.2g}" if r.passed else r.error
        print(f"{status}  {r.check:24s} {r.seconds:6.2f}s  {detail}")
    return 0 if all(r.passed for r in results) else 1


def _matrix(args: argparse.Namespace) -> int:
    from .verification import matrix

    placement = _placement(args)  # a bad --dtype or --device fails before any checkpoint is built
    report = matrix.run_matrix(
        specs=args.specs.split(",") if args.specs else None,
        jobs=args.jobs,
        variants=not args.no_variants,
        real=not args.no_real,
        progress=not args.quiet,
        placement=placement,
    )
    print(matrix.table(report))
    md, js = matrix.write(report, Path(args.out))
    print(f"wrote {md} and {js}")
    return 0 if matrix.passed(report) else 1


def _lens(args: argparse.Namespace) -> int:
    import torch

    from .display import display_token, lens_grid, plot_logit_lens

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
    placement = _placement(args)  # a bad --dtype or --device fails before the model is loaded
    model = _loading("MODEL", model_id or "the tiny gpt2 checkpoint", lambda: _lens_model(model_id, args.spec, placement))
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


def _lens_model(model_id: Optional[str], spec: Optional[str], placement: Optional[dict[str, Any]] = None) -> object:
    from .runtime.registry import adapter_by_name
    from .standardized_transformer import StandardizedTransformer
    from .verification import tiny

    if model_id is None:
        from transformers.utils import logging

        logging.disable_progress_bar()
        model_id = str(tiny.checkpoint(adapter_by_name("gpt2").spec))
        print(f"(no MODEL given: using the tiny offline gpt2 checkpoint at {model_id}; its weights are random)")
    return StandardizedTransformer(model_id, spec=spec, **(placement or {}))


def _int_list(option: str, text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{option} {text}: give integers separated by commas (e.g. 0,3,-1)") from None
    if not values:
        raise UsageError(f"{option} {text}: give at least one integer")
    return values


def _collect(args: argparse.Namespace) -> int:
    import itertools

    import torch

    from .activation_store import LinePrompts, load_dataset_prompts, refuse_foreign, write_store
    from .activations import VALUES

    torch.set_num_threads(args.threads)
    _model_argument("MODEL", args.model)
    if args.spec:
        _resolve_spec(args.spec)
    if args.value not in VALUES:
        raise UsageError(f"--value {args.value}: not collectable{did_you_mean(args.value, VALUES)}; choose from {', '.join(VALUES)}")
    layers = None if args.layers in (None, "all") else _int_list("--layers", args.layers)
    positions = _int_list("--positions", args.positions)
    store_dtype = None if args.store_dtype is None else dtype_argument(args.store_dtype)
    if store_dtype == "auto":
        raise UsageError("--store-dtype auto: give float32, float16 or bfloat16 (or leave it out to keep the model's)")
    for option, number in (("--batch-size", args.batch_size), ("--shard-size", args.shard_size), ("--limit", args.limit)):
        if number is not None and number < 1:
            raise UsageError(f"{option} {number}: must be at least 1")
    placement = _placement(args)  # a bad --dtype or --device fails before the prompts are read
    refuse_foreign(args.out, "--out ")
    if args.prompts is not None:
        if not Path(args.prompts).is_file():
            raise UsageError(f"--prompts {args.prompts}: file not found")
        source: Any = LinePrompts(args.prompts)
        column = args.column if source.rows else None
    else:
        source = load_dataset_prompts(args.dataset, args.split, args.streaming)
        column = args.column
    if args.limit is not None:
        source = itertools.islice(source, args.limit)
    model = _loading("MODEL", args.model, lambda: _lens_model(args.model, args.spec, placement))
    store = write_store(model, source, args.out, layers=layers, positions=positions[0] if len(positions) == 1 and
                        "," not in args.positions else positions, batch_size=args.batch_size, value=args.value,
                        column=column, progress=not args.quiet, dtype=store_dtype, shard_size=args.shard_size)
    print(f"{args.out}: {len(store)} prompts, {args.value} at layers {store.layers}, {store.num_shards} shards, "
          f"rows of shape {list(store.row_shape)} ({store.manifest['stored_dtype']})")
    return 0


def _compat(args: argparse.Namespace) -> int:
    from .verification import compatibility

    results = Path(args.results)
    if not results.is_dir():
        raise UsageError(f"--results {results}: folder not found: run 'nox -s matrix' first")
    _writable("--doc", args.doc)
    data = compatibility.merge(results)
    Path(args.data).parent.mkdir(parents=True, exist_ok=True)
    Path(args.data).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    Path(args.doc).write_text(compatibility.markdown(data), encoding="utf-8")
    print(f"merged {len(data['runs'])} runs ({len(data['gaps'])} gaps) into {args.data} and {args.doc}")
    return 0


def _support(args: argparse.Namespace) -> int:
    from .verification import matrix

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

    from .scaffold.draft import package_path_problem, scaffold

    torch.set_num_threads(args.threads)
    output = Path(args.output).expanduser() if args.output else None
    folder = output if output is not None and output.is_dir() else None
    planned = output if output is not None and folder is None else _scaffold_default(args.target, args.name, folder or Path.cwd())
    named = "-o/--output " if output is not None else ""
    if planned is not None:
        problem = package_path_problem(planned)
        if problem:  # refused before anything is built
            raise UsageError(f"{named}{planned}: {problem}")
    if planned is not None and planned.exists() and not args.force:
        raise UsageError(
            f"{named}{planned} already exists; nnspec scaffold does not overwrite it: "
            "give -o another path, or --force to replace it"
        )
    if output is not None and folder is None:
        _writable("-o/--output", str(output), make_parents=True)
    path, results, parent = scaffold(args.target, planned or folder, args.name, check=not args.no_check,
                                     description=args.description)
    print(f"wrote {path}" + (f" (extends {parent})" if parent else ""))
    for r in results:
        print(f"{'pass' if r.passed else 'FAIL'}  {r.label:24s} {'' if r.passed else r.error[:200]}")
    if results and not all(r.passed for r in results):
        print("some checks fail: the spec's header lists them; review before relying on it")
        return 1
    return 0


def _scaffold_default(target: str, name: Optional[str], folder: Path) -> Optional[Path]:
    """Where ``nnspec scaffold`` writes ``NAME.toml`` in ``folder`` (the current one unless -o names
    another); None when only loading the model would tell the name."""
    if name:
        return folder / f"{name}.toml"
    if Path(target).exists() or "/" in target:
        try:
            model_type = json.loads((Path(target) / "config.json").read_text(encoding="utf-8"))["model_type"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return folder / f"{str(model_type).replace('-', '_')}.toml"
    return folder / f"{target.replace('-', '_')}.toml"


# -- user errors ------------------------------------------------------------------------------------


def _placement_arguments(p: argparse.ArgumentParser, dtype_default: str, device_default: str, both: bool = False) -> None:
    """``--dtype`` and ``--device`` for a command that loads models (read by :func:`_placement`);
    ``both``: the command loads each model through nnspec and as plain transformers, placed alike."""
    alike = " (nnspec and plain transformers alike)" if both else ""
    p.add_argument("--dtype", help=f"weights dtype{alike}: auto (the checkpoint's), float32, float16 or bfloat16 "
                   f"(default: {dtype_default})")
    p.add_argument("--device", help=f"where the model runs{alike}: cpu, cuda, cuda:N, mps, or auto (spread over the "
                   f"visible devices, needs accelerate); default: {device_default}")


def _placement(args: argparse.Namespace) -> dict[str, Any]:
    """``dtype`` and ``device_map`` for the model load from ``--dtype`` / ``--device`` (only those given)."""
    found: dict[str, Any] = {}
    if args.dtype is not None:
        found["dtype"] = dtype_argument(args.dtype)
    if args.device is not None:
        found["device_map"] = device_argument(args.device)
    return found


def dtype_argument(value: str) -> Any:
    """The torch dtype (or ``"auto"``) a ``--dtype`` value names; :class:`UsageError` otherwise."""
    key = value.strip().lower().removeprefix("torch.")
    if key not in DTYPES:
        raise UsageError(
            f"--dtype {value}: not a dtype nnspec loads weights in{did_you_mean(key, DTYPES)}; "
            "choose auto, float32, float16 or bfloat16"
        )
    if DTYPES[key] == "auto":
        return "auto"
    import torch

    return getattr(torch, DTYPES[key])


def device_argument(value: str) -> str:
    """The ``device_map`` a ``--device`` value names ("auto", "cpu", "cuda:1"...), after checking
    that the device exists here; :class:`UsageError` otherwise."""
    import torch

    hint = "use cpu, cuda, cuda:N, mps or auto"
    text = value.strip().lower()
    if text == "auto":
        from .runtime.placement import accelerate_installed

        if not accelerate_installed():
            raise UsageError(f"--device auto: needs the accelerate package (pip install 'nnspec[accelerate]'), or {hint[4:]}")
        return "auto"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        guess = did_you_mean(text, ["auto", "cpu", "cuda", "mps"])
        raise UsageError(f"--device {value}: not a device name{guess}; {hint}") from None
    if device.type == "cpu":
        return "cpu"
    if device.type == "meta":
        raise UsageError(f"--device {value}: the meta device holds no weights, so nothing could run; {hint}")
    if device.type == "mps":
        available, count = torch.backends.mps.is_available(), 1
    else:
        backend = getattr(torch, device.type, None)
        available = bool(backend is not None and hasattr(backend, "is_available") and backend.is_available())
        count = backend.device_count() if backend is not None and available and hasattr(backend, "device_count") else 1
    if not available:
        raise UsageError(f"--device {value}: no {device.type} device is visible to torch {torch.__version__} here; use --device cpu")
    if device.index is not None and device.index >= count:
        raise UsageError(f"--device {value}: only {count} {device.type} device(s) here ({device.type}:0 to {device.type}:{count - 1})")
    return str(device)


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
    commands = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
    actions = commands.choices[args.command]._actions if commands is not None and args.command in commands.choices else []
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
    """The ``nnspec`` argument parser (every option with its help; usage errors are one line)."""
    p = _Parser(prog="nnspec", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=version_line(),
                   help="print the versions of nnspec, transformers, nnsight and torch, then exit")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show nnspec's progress and diagnostic messages (its log at level INFO) on stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    threads = "CPU threads torch may use (default 1)"

    c = sub.add_parser("compile", help="render specs into generated adapters (or check for drift)",
                       description="Render the spec files into the generated adapter modules.")
    c.add_argument("--check", action="store_true", help="write nothing; exit 1 if the generated adapters differ from the specs")
    c.add_argument("--specs", metavar="FOLDER", help="spec folder (default: the bundled specs)")
    c.add_argument("--out", metavar="FOLDER", help="output folder (default: the package's generated folder)")
    c.set_defaults(run=_compile)

    s = sub.add_parser("schema", help="print the JSON Schema of spec files",
                       description="Print the JSON Schema that spec files follow (for editors and validators).")
    s.add_argument("-o", "--output", metavar="FILE", help="write to this file instead of stdout")
    s.set_defaults(run=_schema)

    ls = sub.add_parser("list", help="list the bundled specs and the model types they serve",
                        description="List the bundled specs: name, the config.model_type values each serves, and what it describes.")
    ls.set_defaults(run=_list)

    t = sub.add_parser(
        "tiny",
        help="build a tiny offline checkpoint (random weights, local tokenizer)",
        description="Build a tiny offline checkpoint (random weights, a locally trained tokenizer): "
        "SPEC DIRECTORY, or --from-config CONFIG DIRECTORY.",
    )
    t.add_argument("words", nargs="+", metavar="[SPEC] DIRECTORY",
                   help="bundled spec name or spec file, then an empty or new output folder")
    t.add_argument("--from-config", metavar="CONFIG",
                   help="a real config.json, checkpoint folder or Hub id: keep every key but sizes")
    t.add_argument("--variant", metavar="NAME", help="one of the spec's variants (default: the base checkpoint)")
    t.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    t.add_argument("--force", action="store_true", help="replace a tiny checkpoint nnspec wrote in DIRECTORY before")
    t.set_defaults(run=_tiny)

    k = sub.add_parser(
        "check", help="run the conformance checks on a model (hub id or local path)",
        description="Load a model both through nnspec and as plain transformers and check that every standard "
        "name agrees. Both load in the same dtype on the same device (float32 on the CPU unless --dtype / --device "
        "say otherwise); the tolerances follow the dtype.",
    )
    k.add_argument("model", metavar="MODEL", help="a Hugging Face Hub id or a local checkpoint folder")
    k.add_argument("--spec", help="spec file or bundled spec name (default: found from config.model_type)")
    k.add_argument("--checks", metavar="NAMES", help="comma-separated subset of the checks (default: all)")
    k.add_argument("--threads", type=int, default=1, help=threads)
    k.add_argument("--trust-remote-code", action="store_true", help="allow the checkpoint's own modeling code to run")
    _placement_arguments(k, "float32", "cpu", both=True)
    k.set_defaults(run=_check)

    co = sub.add_parser("compat", help="merge the results of nox -s matrix into the compatibility table and data",
                        description="Merge the per-version results of nox -s matrix into the compatibility page and data file.")
    co.add_argument("--results", metavar="FOLDER", default="compat-results", help="folder of matrix results (default compat-results)")
    co.add_argument("--doc", metavar="FILE", default="docs/compatibility.md", help="page to write (default docs/compatibility.md)")
    co.add_argument("--data", metavar="FILE", default="src/nnspec/data/compatibility.json",
                    help="data file to write (default src/nnspec/data/compatibility.json)")
    co.set_defaults(run=_compat)

    su = sub.add_parser("support", help="write docs/architectures.md from the specs and a matrix run",
                        description="Write the supported-architectures page from the specs and a matrix run.")
    su.add_argument("--results", metavar="FILE", default="matrix-results/matrix.json",
                    help="matrix.json written by nnspec matrix (default matrix-results/matrix.json)")
    su.add_argument("-o", "--output", metavar="FILE", default="docs/architectures.md", help="page to write (default docs/architectures.md)")
    su.set_defaults(run=_support)

    sc = sub.add_parser(
        "scaffold", help="draft a spec for a model type or checkpoint, and check it",
        description="Draft a spec for a model type or checkpoint, run the conformance checks on it and write it "
        "as NAME.toml in the current folder (or where -o says; never inside the installed package).",
    )
    sc.add_argument("target", metavar="TARGET", help="a config.model_type (built offline) or a checkpoint folder")
    sc.add_argument("-o", "--output", metavar="PATH",
                    help="spec file to write, or a folder to write NAME.toml into (default: NAME.toml in the current folder)")
    sc.add_argument("--name", help="spec name (default: the model type)")
    sc.add_argument("--description", metavar="TEXT",
                    help="the spec's one-line description (default: one written from the discovered facts)")
    sc.add_argument("--no-check", action="store_true", help="do not run the conformance checks on the draft")
    sc.add_argument("--force", action="store_true", help="replace an existing spec file at the output path")
    sc.add_argument("--threads", type=int, default=1, help=threads)
    sc.set_defaults(run=_scaffold)

    le = sub.add_parser("lens", help="logit lens: top tokens per layer at the last token of a prompt",
                        description="Logit lens: the top tokens of every layer at the last token of a prompt.")
    le.add_argument("words", nargs="+", metavar="[MODEL] PROMPT",
                    help="hub id or local path (default: the tiny offline gpt2), then the prompt (quoted)")
    le.add_argument("--spec", help="spec file or bundled spec name (default: found from config.model_type)")
    le.add_argument("--plot", metavar="FILE", help="save a layers x positions heatmap PNG here")
    le.add_argument("--html", metavar="FILE", help="save the heatmap as an HTML page here")
    le.add_argument("-k", type=int, default=5, help="tokens per layer (default 5)")
    _placement_arguments(le, "as transformers loads it",
                         "auto with accelerate and a GPU or MPS device, else cpu")
    le.add_argument("--threads", type=int, default=1, help=threads)
    le.set_defaults(run=_lens)

    cl = sub.add_parser(
        "collect", help="stream activations of many prompts to a folder of shards (resumable)",
        description="Collect one standard value per layer at chosen token positions of every prompt, written as "
        "safetensors shards plus a manifest in --out. Running the same command again after an interruption "
        "continues after the last finished shard.",
    )
    cl.add_argument("model", metavar="MODEL", help="a Hugging Face Hub id or a local checkpoint folder")
    source = cl.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", metavar="FILE", help="a text file (one prompt a line) or a .jsonl file (rows with --column)")
    source.add_argument("--dataset", metavar="NAME", help="a datasets name or local data folder/file (needs nnspec[datasets])")
    cl.add_argument("--column", default="text", help="text field of dataset or JSON-lines rows (default text)")
    cl.add_argument("--split", default="train", help="dataset split (default train)")
    cl.add_argument("--streaming", action="store_true", help="stream the dataset instead of downloading it whole")
    cl.add_argument("--out", metavar="FOLDER", required=True, help="new or empty folder, or a store to resume")
    cl.add_argument("--layers", metavar="LIST", help="comma-separated layer numbers (default: all)")
    cl.add_argument("--positions", metavar="LIST", default="-1",
                    help="token positions within each prompt, comma-separated (default -1: the last token)")
    cl.add_argument("--value", default="layers_output", help="standard value to collect (default layers_output)")
    cl.add_argument("--batch-size", type=int, default=32, help="prompts per forward (default 32)")
    cl.add_argument("--shard-size", type=int, default=4096, help="prompts per shard file (default 4096)")
    cl.add_argument("--limit", type=int, help="only the first N prompts")
    cl.add_argument("--store-dtype", metavar="DTYPE", help="cast activations before writing: float32, float16 or bfloat16")
    cl.add_argument("--spec", help="spec file or bundled spec name (default: found from config.model_type)")
    _placement_arguments(cl, "as transformers loads it", "auto with accelerate and a GPU or MPS device, else cpu")
    cl.add_argument("--threads", type=int, default=1, help=threads)
    cl.add_argument("--quiet", action="store_true", help="no progress bar")
    cl.set_defaults(run=_collect)

    m = sub.add_parser(
        "matrix", help="build every spec's tiny checkpoint and run every check",
        description="Build every spec's tiny checkpoints and run every conformance check on them, each loaded both "
        "ways in float32 on the CPU unless --dtype / --device say otherwise (the tolerances follow the dtype).",
    )
    m.add_argument("--specs", metavar="NAMES", help="comma-separated spec names (default: all)")
    m.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    m.add_argument("--no-variants", action="store_true", help="only each spec's base checkpoint")
    m.add_argument("--no-real", action="store_true", help="leave out the rows built from real published configs")
    m.add_argument("--out", metavar="FOLDER", default="matrix-results", help="folder for matrix.md and matrix.json (default matrix-results)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    _placement_arguments(m, "float32", "cpu", both=True)
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
    with _verbose(args.verbose):
        return _run(p, args)


@contextlib.contextmanager
def _verbose(on: bool) -> Iterator[None]:
    """While running one command with -v: nnspec's log messages of level INFO and above on stderr."""
    from .logging import logger

    if not on:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nnspec: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _run(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.verbose and args.command in ("check", "collect", "lens", "scaffold", "tiny"):
        # transformers' load progress bars and reports would bury the command's own report (-v keeps them).
        from .verification.matrix import quiet_transformers

        quiet_transformers()
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
