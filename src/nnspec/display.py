"""Plots: the logit lens as a layers x positions heatmap (PNG, or a self-contained HTML page),
per-category probabilities over layers, how tokens are shown, and nnterp's ``plot_topk_tokens`` /
``prompts_to_df``. Interactive plotly figures are in :mod:`.plots_plotly`, the attention viewer in
:mod:`.plots_attention`.

PNGs need matplotlib, ``plot_topk_tokens`` plotly and ``prompts_to_df`` pandas (all in
``pip install 'nnspec[display]'``); the HTML page needs nothing extra. Matplotlib is driven through
its object API only (a ``Figure`` on an Agg canvas): pyplot's global state and the backend a
notebook runs are left alone.
"""

from __future__ import annotations

import html
import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import torch

from .errors import InputError, InputTypeError, ShapeMismatchError
from .runtime.arguments import Layers, as_layers

_EXTRA = "pip install 'nnspec[display]'"


def _import(module: str, purpose: str) -> Any:
    """``module`` imported, or an ImportError saying which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs {module.split('.')[0]}, which is not installed: {_EXTRA}") from exc


def _matplotlib(purpose: str) -> tuple[Any, Any, Any, Any]:
    """``(Figure, FigureCanvasAgg, MaxNLocator, colormaps)``: matplotlib's object API, which draws
    without pyplot and without selecting a backend."""
    figure = _import("matplotlib.figure", purpose)
    agg = _import("matplotlib.backends.backend_agg", purpose)
    ticker = _import("matplotlib.ticker", purpose)
    return figure.Figure, agg.FigureCanvasAgg, ticker.MaxNLocator, _import("matplotlib", purpose).colormaps


# -- how tokens are shown ---------------------------------------------------------------------------

SPACE_MARK = "␣"
EMPTY_MARK = "∅"
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def visible_text(text: str) -> str:
    """``text`` with its whitespace made visible, so that no label is blank: each space becomes
    ``␣``; newline, tab, carriage return and backslash become ``\\n``, ``\\t``, ``\\r``, ``\\\\``;
    other invisible characters become ``\\xNN`` / ``\\uNNNN`` escapes; the empty string is ``∅``.
    Printable text in any script is kept as it is."""
    if not isinstance(text, str):
        raise InputTypeError(f"visible_text: text is a {type(text).__name__}, not a string")
    if not text:
        return EMPTY_MARK
    out = []
    for char in text:
        code = ord(char)
        if char == " ":
            out.append(SPACE_MARK)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def _decode_entry(tokenizer: Any, entry: str) -> str:
    """The text of vocabulary entry ``entry`` where it follows other text, by the tokenizer's own
    decoding. Decoders that drop the leading space of a text's first token (sentencepiece) would
    turn ``▁Paris`` into ``Paris`` and ``▁`` into nothing, so the entry is decoded twice in a row
    and the second copy is kept."""
    try:
        once = tokenizer.convert_tokens_to_string([entry])
        twice = tokenizer.convert_tokens_to_string([entry, entry])
    except (AttributeError, TypeError, ValueError, KeyError, IndexError):
        ids = tokenizer.convert_tokens_to_ids([entry])
        return tokenizer.decode(ids)
    if twice.startswith(once):
        second = twice[len(once):]
        if second and second.strip() == once.strip():
            return second
    return once


def token_text(tokenizer: Any, token: Union[str, int]) -> str:
    """The text a token stands for inside a text, by the tokenizer's own decoding: ``"ĠParis"``
    and ``"▁Paris"`` give ``" Paris"``, ``"ĉ"`` gives ``"\\t"``, ``"cafÃ©"`` gives ``"café"``.

    Args:
        tokenizer: a HuggingFace tokenizer, or a model with a ``.tokenizer``.
        token: a vocabulary entry (as ``convert_ids_to_tokens`` gives it) or a token id.
    """
    from .prompt_utils import tokenizer_of

    tok = tokenizer_of(tokenizer, "tokenizer")
    if isinstance(token, bool) or not isinstance(token, (str, int)):
        raise InputTypeError(f"token is a {type(token).__name__}: give a vocabulary entry (str) or a token id (int)")
    if isinstance(token, int):
        if not 0 <= token < len(tok):
            raise InputError(f"token id {token} is outside the vocabulary (0 to {len(tok) - 1})")
        entry = tok.convert_ids_to_tokens(token)
        if entry is None:
            return tok.decode([token])
        return _decode_entry(tok, entry)
    return _decode_entry(tok, token)


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE vocabularies write each byte as one printable character: printable Latin-1
    bytes stand for themselves, the others (controls, space, ...) move to code points 256, 257, ...
    in byte order (so space is ``Ġ``, tab ``ĉ``, newline ``Ċ``). Character -> byte."""
    kept = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    alphabet = {chr(b): b for b in kept}
    moved = 0
    for byte in range(256):
        if byte not in alphabet.values():
            alphabet[chr(256 + moved)] = byte
            moved += 1
    return alphabet


_BYTE_ALPHABET = _byte_level_alphabet()
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _guess_text(entry: str) -> str:
    """A vocabulary entry's text without its tokenizer: sentencepiece (``▁``, ``<0xNN>``) or
    byte-level markers undone where the entry reads as one of them, else the entry as it is."""
    if "▁" in entry or _BYTE_PIECE.search(entry):
        return _BYTE_PIECE.sub(lambda m: chr(int(m.group(1), 16)) if int(m.group(1), 16) < 0x80 else m.group(0), entry).replace("▁", " ")
    if entry and all(char in _BYTE_ALPHABET for char in entry):
        try:
            return bytes(_BYTE_ALPHABET[char] for char in entry).decode("utf-8")
        except UnicodeDecodeError:
            pass
    return entry


def display_token(token: Union[str, int], tokenizer: Any = None) -> str:
    """A token as a label that is never blank: its text (:func:`token_text`, the tokenizer's own
    decoding, when ``tokenizer`` (a tokenizer or model) is given; else the byte-level / sentencepiece
    markers undone where the entry reads as one) passed through :func:`visible_text`."""
    if tokenizer is not None:
        return visible_text(token_text(tokenizer, token))
    if not isinstance(token, str):
        raise InputTypeError(f"display_token: token is a {type(token).__name__}; a token id needs tokenizer=")
    return visible_text(_guess_text(token))


class _Texts:
    """Token id -> decoded text, each id decoded once."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.known: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.known:
            if 0 <= token_id < len(self.tokenizer):
                self.known[token_id] = token_text(self.tokenizer, int(token_id))
            else:  # an unembedding row past the tokenizer's vocabulary (padded embedding matrices)
                self.known[token_id] = f"<id {token_id}>"
        return self.known[token_id]


# -- colours ----------------------------------------------------------------------------------------

# Viridis (perceptually uniform, readable in grey and by most colour-blind readers) at nine stops.
_VIRIDIS = (
    (68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 145, 140),
    (40, 174, 128), (94, 201, 98), (173, 220, 48), (253, 231, 37),
)


def _scale_colour(value: float) -> tuple[int, int, int]:
    """The viridis colour of ``value`` in [0, 1] (clamped), as 0-255 RGB."""
    x = min(max(float(value), 0.0), 1.0) * (len(_VIRIDIS) - 1)
    low = min(int(x), len(_VIRIDIS) - 2)
    t = x - low
    a, b = _VIRIDIS[low], _VIRIDIS[low + 1]
    return tuple(round(a[i] + (b[i] - a[i]) * t) for i in range(3))  # type: ignore[return-value]


def _luminance(rgb: Sequence[float]) -> float:
    """Relative luminance (WCAG 2) of a 0-255 RGB colour."""
    def linear(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _text_colour(rgb: Sequence[float]) -> str:
    """Black or white, whichever contrasts more with the background ``rgb``."""
    lum = _luminance(rgb)
    return "#000000" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#ffffff"


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb[:3])


# -- checks -----------------------------------------------------------------------------------------


def _check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise InputTypeError(f"prompt is a {type(prompt).__name__}: give one prompt as a string")
    if not prompt:
        raise InputError("prompt is empty")
    return prompt


def _check_k(k: Any, vocab: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= vocab:
        raise InputError(f"k must be an integer from 1 to the vocabulary size ({vocab}), got {k!r}")
    return k


def _check_flag(value: Any, label: str) -> bool:
    if not isinstance(value, bool):
        raise InputTypeError(f"{label} must be True or False, got {value!r}")
    return value


def _check_path(value: Any, label: str) -> Optional[Path]:
    if value is None:
        return None
    if not isinstance(value, (str, Path)) or not str(value):
        raise InputTypeError(f"{label} must be a file path (str or Path), got {value!r}")
    path = Path(value)
    if not path.parent.is_dir():
        raise InputError(f"{label}={str(path)!r}: folder {str(path.parent)!r} does not exist")
    return path


def _check_title(title: Any) -> Optional[str]:
    if title is not None and not isinstance(title, str):
        raise InputTypeError(f"title is a {type(title).__name__}, not a string")
    return title


# -- logit lens -------------------------------------------------------------------------------------


@torch.no_grad()
def lens_grid(model: Any, prompt: str, layers: Layers = None, k: int = 5, remote: bool = False) -> dict[str, Any]:
    """Logit lens at every position of one prompt: each chosen layer's ``layers_output`` decoded
    with ``model.project_on_vocab`` (final norm and unembedding, softcaps included).

    Returns a dict, with ``L`` layers, ``S`` prompt tokens and ``V`` the vocabulary size:
    ``"layers"`` (list of ``L`` layer numbers), ``"tokens"`` / ``"token_ids"`` / ``"texts"`` (the
    prompt's tokens as vocabulary entries, ids and decoded text, ``S`` each), ``"probs"`` ``(L, S,
    V)`` float32 tensor, ``"top"`` ``[[[(entry, prob)] * k] * S] * L`` (most likely first),
    ``"top_ids"`` ``(L, S, k)`` tensor and ``"top_texts"`` (the top tokens' decoded text, ``L x S x k``).
    """
    _check_prompt(prompt)
    _check_k(k, model.vocab_size)
    _check_flag(remote, "remote")
    chosen = as_layers(model, layers)
    saved: dict[int, Any] = {}
    with model.trace(prompt, remote=remote):
        for layer in sorted(set(chosen)):  # read in forward order, whatever order was asked for
            saved[layer] = model.layers_output[layer][0].save()
    probs = model.project_on_vocab(torch.stack([saved[layer] for layer in chosen], 0)).softmax(-1).float().cpu()
    tok = model.tokenizer
    ids = tok(prompt, return_tensors="pt")["input_ids"][0].tolist()
    top = torch.topk(probs, k=k, dim=-1)
    text = _Texts(tok)
    entries = [[tok.convert_ids_to_tokens(row.tolist()) for row in layer] for layer in top.indices]
    grid = [[list(zip(entries[l][p], top.values[l, p].tolist())) for p in range(probs.shape[1])] for l in range(len(chosen))]
    return {
        "layers": chosen,
        "tokens": tok.convert_ids_to_tokens(ids),
        "token_ids": ids,
        "texts": [text(i) for i in ids],
        "probs": probs,
        "top": grid,
        "top_ids": top.indices,
        "top_texts": [[[text(i) for i in cell] for cell in layer] for layer in top.indices.tolist()],
    }


def _labels(grid: dict[str, Any]) -> tuple[list[str], list[list[list[str]]]]:
    """Visible labels of a lens grid: the prompt tokens ``(S,)`` and each cell's top tokens
    ``(L, S, k)``; decoded text where the grid has it (:func:`lens_grid`), else the entries read
    without a tokenizer."""
    if "texts" in grid and "top_texts" in grid:
        inputs = [visible_text(t) for t in grid["texts"]]
        cells = [[[visible_text(t) for t in cell] for cell in row] for row in grid["top_texts"]]
    else:
        inputs = [display_token(t) for t in grid["tokens"]]
        cells = [[[display_token(t) for t, _ in cell] for cell in row] for row in grid["top"]]
    return inputs, cells


def _check_grid(grid: Any) -> dict[str, Any]:
    missing = [key for key in ("layers", "tokens", "top") if not isinstance(grid, dict) or key not in grid]
    if missing:
        raise InputTypeError(f"grid: expected the dict lens_grid returns; missing {', '.join(missing)}")
    return grid


def lens_figure(grid: dict[str, Any], title: Optional[str] = None) -> Any:
    """The lens grid (:func:`lens_grid`) as a matplotlib ``Figure``: layers (bottom to top) x
    prompt positions, each cell coloured by its top token's probability (viridis, 0 to 1) and
    labelled with that token (whitespace made visible) and its probability. The figure is not
    registered with pyplot: save it with ``fig.savefig`` or let a notebook display it."""
    Figure, FigureCanvasAgg, _, colormaps = _matplotlib("lens_figure")
    _check_grid(grid)
    _check_title(title)
    inputs, cells = _labels(grid)
    probs = [[cell[0][1] for cell in row] for row in grid["top"]]
    n_layers, n_pos = len(probs), len(probs[0])
    width = min(max(4.5, 0.85 * n_pos + 2.2), 60.0)
    height = min(max(2.5, 0.42 * n_layers + 1.6), 60.0)
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    image = ax.imshow(probs, cmap=cmap, vmin=0, vmax=1, aspect="auto", origin="lower", interpolation="nearest")
    for l in range(n_layers):
        for p in range(n_pos):
            prob = probs[l][p]
            colour = _text_colour([255 * c for c in cmap(prob)[:3]])
            ax.text(p, l, f"{cells[l][p][0]}\n{prob:.2f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(n_pos), inputs, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_layers), [str(l) for l in grid["layers"]], fontsize=8)
    ax.set_xlabel("input position")
    ax.set_ylabel("layer")
    ax.set_title(title if title is not None else "logit lens", fontsize=9)
    fig.colorbar(image, ax=ax, label="top-token probability", fraction=0.05, pad=0.01, aspect=30)
    return fig


def plot_logit_lens(
    model: Any,
    prompt: str,
    path: Union[str, Path, None] = None,
    layers: Layers = None,
    html_path: Union[str, Path, None] = None,
    k: int = 5,
    remote: bool = False,
) -> Any:
    """Logit lens of one prompt as a heatmap: layers x positions, each cell showing the top token
    (whitespace made visible) and its probability.

    Saves a PNG at ``path`` (matplotlib, see :func:`lens_figure`) and/or a self-contained HTML page
    at ``html_path`` (:func:`write_lens_html`, with each cell's top ``k`` tokens). Returns the
    matplotlib ``Figure`` when ``path`` is given, else the grid from :func:`lens_grid`.
    """
    png = _check_path(path, "path")
    page = _check_path(html_path, "html_path")
    if png is not None:
        _matplotlib("plot_logit_lens(path=...)")
    grid = lens_grid(model, prompt, layers, k, remote)
    if page is not None:
        write_lens_html(grid, page, title=prompt)
    if png is None:
        return grid
    fig = lens_figure(grid, title=f"logit lens: {visible_text(prompt)}")
    fig.savefig(png, dpi=120)
    return fig


_HTML_STYLE = """
body{font:13px system-ui,-apple-system,"Segoe UI",sans-serif;margin:1em;color:#222}
table{border-collapse:collapse}
td,th{border:1px solid #bbb;padding:3px 5px;text-align:center;vertical-align:top}
th{background:#f4f4f4;font-weight:600}
.tok{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre}
summary{cursor:pointer;list-style:none}
summary::-webkit-details-marker{display:none}
details[open] summary{text-decoration:underline}
details ol{margin:3px 0 0;padding-left:1.7em;text-align:left;font-size:11px}
.legend{display:flex;align-items:center;gap:6px;margin:.6em 0}
.bar{display:inline-block;width:260px;height:14px;border:1px solid #888}
"""

_HTML_SCRIPT = (
    "<script>function lensToggle(open){for(const d of document.querySelectorAll('details'))d.open=open}</script>"
)


def write_lens_html(grid: dict[str, Any], path: Union[str, Path], title: str = "logit lens") -> Path:
    """Write a lens grid (:func:`lens_grid`) as one self-contained HTML page.

    Layers run top (last) to bottom, positions left to right. Each cell is coloured by its top
    token's probability (viridis; the legend shows the scale) with black or white text, whichever
    contrasts more; clicking a cell opens its list of top-k tokens with their probabilities (two
    buttons open or close them all). Returns the path written.
    """
    _check_grid(grid)
    out = _check_path(path, "path")
    if out is None:
        raise InputError("path is required: the HTML file to write")
    if not isinstance(title, str):
        raise InputTypeError(f"title is a {type(title).__name__}, not a string")
    inputs, cells = _labels(grid)
    rows = []
    for l in reversed(range(len(grid["layers"]))):
        tds = []
        for p, cell in enumerate(grid["top"][l]):
            prob = cell[0][1]
            background = _scale_colour(prob)
            labels = cells[l][p]
            tip = "&#10;".join(f"{html.escape(t)}: {q:.3f}" for t, (_, q) in zip(labels, cell))
            items = "".join(f"<li><span class='tok'>{html.escape(t)}</span> {q:.3f}</li>" for t, (_, q) in zip(labels, cell))
            tds.append(
                f"<td data-layer='{grid['layers'][l]}' data-position='{p}' title=\"{tip}\" "
                f"style='background:{_hex(background)};color:{_text_colour(background)}'>"
                f"<details><summary><span class='tok'>{html.escape(labels[0])}</span><br><small>{prob:.2f}</small></summary>"
                f"<ol>{items}</ol></details></td>"
            )
        rows.append(f"<tr><th>{grid['layers'][l]}</th>{''.join(tds)}</tr>")
    header = "".join(f"<th><small>{p}</small><br><span class='tok'>{html.escape(t)}</span></th>" for p, t in enumerate(inputs))
    stops = ", ".join(f"{_hex(c)} {100 * i / (len(_VIRIDIS) - 1):.1f}%" for i, c in enumerate(_VIRIDIS))
    k = len(grid["top"][0][0]) if grid["top"] and grid["top"][0] else 0
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_HTML_STYLE}</style>{_HTML_SCRIPT}</head><body>"
        f"<h3>logit lens: <span class='tok'>{html.escape(visible_text(title))}</span></h3>"
        f"<p>Each cell: the most likely next token at that layer and position, and its probability. "
        f"Click a cell for its top {k} tokens. Spaces show as {SPACE_MARK}, newlines and tabs as \\n and \\t.</p>"
        f"<div class='legend'>top-token probability: 0 <span class='bar' style='background:linear-gradient(to right, {stops})'>"
        f"</span> 1 <button type='button' onclick='lensToggle(true)'>open all</button>"
        f"<button type='button' onclick='lensToggle(false)'>close all</button></div>"
        f"<table><tr><th>layer</th>{header}</tr>{''.join(rows)}</table></body></html>"
    )
    out.write_text(page, encoding="utf-8")
    return out


# -- categories -------------------------------------------------------------------------------------


def _check_results(results: Any, layers: Optional[Sequence[int]]) -> tuple[dict[str, torch.Tensor], Optional[list[int]]]:
    """``run_prompts`` output checked: ``{category: (prompts,) or (prompts, layers) tensor}``, all
    one shape. Returns the float tensors and, for per-layer values, the layer numbers."""
    if not isinstance(results, dict):
        raise InputTypeError(f"results is a {type(results).__name__}: give the dict run_prompts returns")
    if not results:
        raise InputError("results is empty")
    shape = None
    checked: dict[str, torch.Tensor] = {}
    for name, values in results.items():
        if not isinstance(values, torch.Tensor) or values.ndim not in (1, 2) or values.shape[0] == 0:
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ShapeMismatchError(f"results[{name!r}]: expected a (prompts,) or (prompts, layers) tensor, got {got}")
        if shape is not None and values.shape != shape:
            raise ShapeMismatchError(f"results[{name!r}] has shape {tuple(values.shape)}, the others {tuple(shape)}")
        shape = values.shape
        checked[str(name)] = values.detach().float().cpu()
    if shape is None or len(shape) == 1:
        if layers is not None:
            raise InputError("layers= is for per-layer results ((prompts, layers) tensors); these are (prompts,)")
        return checked, None
    if layers is None:
        return checked, list(range(shape[1]))
    xs = list(layers) if isinstance(layers, (list, tuple, range)) else None
    if xs is None or any(isinstance(x, bool) or not isinstance(x, int) for x in xs):
        raise InputTypeError(f"layers must be a list of layer numbers (int), got {layers!r}")
    if len(xs) != shape[1]:
        raise InputError(f"layers has {len(xs)} entries, the results {shape[1]} layers")
    return checked, xs


def _spread(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over prompts (dimension 0); zero spread for one prompt."""
    mean = values.mean(0)
    std = values.std(0) if values.shape[0] > 1 else torch.zeros_like(mean)
    return mean, std


def plot_category_probs(
    results: dict[str, torch.Tensor], path: Union[str, Path], title: Optional[str] = None, layers: Optional[Sequence[int]] = None
) -> Any:
    """Plot :func:`run_prompts` results and save a PNG at ``path``.

    ``(prompts, layers)`` values give one curve per category: the mean over prompts at each layer,
    shaded by one standard deviation, on an axis of whole layer numbers (``layers``: their numbers,
    default ``0..n-1``); ``(prompts,)`` values give one bar per category (mean, with the standard
    deviation as an error bar). Returns the matplotlib ``Figure`` (not registered with pyplot).
    """
    Figure, FigureCanvasAgg, MaxNLocator, _ = _matplotlib("plot_category_probs")
    out = _check_path(path, "path")
    if out is None:
        raise InputError("path is required: the PNG file to write")
    _check_title(title)
    values, xs = _check_results(results, layers)
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if xs is not None:
        for category, tensor in values.items():
            mean, std = _spread(tensor)
            ax.plot(xs, mean.tolist(), marker="o", label=category)
            ax.fill_between(xs, (mean - std).tolist(), (mean + std).tolist(), alpha=0.2)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    else:
        spreads = [_spread(tensor) for tensor in values.values()]
        ax.bar(list(values), [float(m) for m, _ in spreads], yerr=[float(s) for _, s in spreads], capsize=4)
    ax.set_ylabel("probability")
    ax.set_title(title or "probability by category")
    fig.savefig(out, dpi=120)
    return fig


# -- nnterp's plotly and pandas helpers -------------------------------------------------------------

def topk_tokens(next_token_probs: torch.Tensor, tokenizer: Any, k: int = 4) -> dict[str, Any]:
    """The ``k`` most likely tokens per (prompt, layer) of a probability tensor.

    ``next_token_probs`` is ``(batch, layers, vocab)``, ``(layers, vocab)`` or ``(vocab,)`` (missing
    dimensions become 1). Returns ``{"probs": (batch, layers, k) tensor, "ids": (batch, layers, k)
    tensor, "tokens": nested lists of token strings, batch x layers x k}``.
    """
    from .prompt_utils import tokenizer_of

    tok = tokenizer_of(tokenizer, "tokenizer")
    if not isinstance(next_token_probs, torch.Tensor) or not 1 <= next_token_probs.ndim <= 3:
        shape = tuple(next_token_probs.shape) if isinstance(next_token_probs, torch.Tensor) else type(next_token_probs).__name__
        raise ShapeMismatchError(f"next_token_probs: expected (batch, layers, vocab), (layers, vocab) or (vocab,), got {shape}")
    probs = next_token_probs.detach().float().cpu()
    while probs.ndim < 3:
        probs = probs.unsqueeze(0)
    vocab = probs.shape[-1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= vocab:
        raise InputError(f"k must be an integer from 1 to the vocabulary size ({vocab}), got {k!r}")
    top = torch.topk(probs, k=k, dim=-1)
    tokens = [[tok.convert_ids_to_tokens(row.tolist()) for row in layers] for layers in top.indices]
    return {"probs": top.values, "ids": top.indices, "tokens": tokens}


def plot_topk_tokens(
    next_token_probs: torch.Tensor,
    tokenizer: Any,
    k: int = 4,
    title: Optional[str] = None,
    use_token_ids: bool = False,
    file: Union[str, Path, None] = None,
    save_html: bool = True,
    height: int = 300,
    width: int = 400,
    show: bool = True,
) -> Any:
    """Heatmap of the top ``k`` tokens per layer, one panel per prompt (plotly).

    ``next_token_probs`` is ``(batch, layers, vocab)``, ``(layers, vocab)`` or ``(vocab,)`` (e.g.
    :func:`~nnspec.interventions.logit_lens` output). Each cell shows a token (its id with
    ``use_token_ids``), coloured by its probability. Panels sit three to a row, each
    ``width x height`` pixels. ``file``: an ``.html`` path is written as HTML; another suffix is
    written as an image (needs ``kaleido``) plus, with ``save_html``, an HTML copy beside it.
    ``show`` displays the figure (``fig.show()``).

    Returns:
        the ``plotly.graph_objects.Figure``.
    """
    for label, value in (("use_token_ids", use_token_ids), ("save_html", save_html), ("show", show)):
        if not isinstance(value, bool):
            raise InputTypeError(f"{label} must be True or False, got {value!r}")
    for label, pixels in (("height", height), ("width", width)):
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
            raise InputError(f"{label} must be a positive number of pixels, got {pixels!r}")
    if title is not None and not isinstance(title, str):
        raise InputTypeError(f"title is a {type(title).__name__}, not a string")
    path = Path(file) if file is not None else None
    if path is not None and path.suffix != ".html":
        _import("kaleido", f"plot_topk_tokens(file={str(path)!r}) writes an image, which")
    go = _import("plotly.graph_objects", "plot_topk_tokens")
    subplots = _import("plotly.subplots", "plot_topk_tokens")
    top = topk_tokens(next_token_probs, tokenizer, k)
    batch, num_layers = top["probs"].shape[:2]
    n_cols = min(3, batch)
    n_rows = -(-batch // n_cols)
    fig = subplots.make_subplots(rows=n_rows, cols=n_cols, vertical_spacing=0.1, horizontal_spacing=0.05)
    for b in range(batch):
        ids = [[str(i) for i in layer] for layer in top["ids"][b].tolist()]
        names = [[html.escape(repr(token_text(tokenizer, int(i))), quote=False) for i in layer] for layer in top["ids"][b].tolist()]
        hover = [[f"id {i}<br>token {t}" for i, t in zip(li, lt)] for li, lt in zip(ids, names)]
        row, col = b // n_cols + 1, b % n_cols + 1
        fig.add_trace(
            go.Heatmap(
                z=top["probs"][b].tolist(),
                x=list(range(k)),
                y=list(range(num_layers)),
                text=ids if use_token_ids else names,
                texttemplate="%{text}",
                hovertext=hover,
                hovertemplate="layer %{y}<br>%{hovertext}<br>probability %{z:.4f}<extra></extra>",
                colorscale="RdBu_r",
                zmin=0,
                zmax=1,
                showscale=b == 0,
                colorbar=dict(title="probability", thickness=15, len=0.9),
            ),
            row=row,
            col=col,
        )
        fig.update_xaxes(title_text="rank", row=row, col=col)
        fig.update_yaxes(title_text="layer", row=row, col=col)
    fig.update_layout(title=title or f"Top {k} tokens per layer", height=height * n_rows, width=width * n_cols, showlegend=False)
    if path is not None:
        if path.suffix == ".html":
            fig.write_html(path)
        else:
            fig.write_image(path, scale=3)
            if save_html:
                fig.write_html(path.with_suffix(".html"))
    if show:
        fig.show()
    return fig


def prompts_to_df(prompts: Sequence[Any], tokenizer: Any = None) -> Any:
    """A pandas DataFrame of prompts and their targets, one column per prompt (as nnterp lays it
    out): row ``"prompt"``, a ``"<category>_string"`` row per category, and with a ``tokenizer``
    (or model) a ``"<category>_tokens"`` row with the tracked tokens as vocabulary entries."""
    from .prompt_utils import Prompt, tokenizer_of

    listed = list(prompts) if isinstance(prompts, (list, tuple)) else None
    if listed is None:
        raise InputTypeError(f"prompts is a {type(prompts).__name__}: give a list of Prompt")
    for i, prompt in enumerate(listed):
        if not isinstance(prompt, Prompt):
            raise InputTypeError(f"prompts[{i}] is a {type(prompt).__name__}, not a Prompt (Prompt.from_strings)")
    tok = tokenizer_of(tokenizer, "tokenizer") if tokenizer is not None else None
    pd = _import("pandas", "prompts_to_df")
    table: dict[int, dict[str, Any]] = {}
    for i, prompt in enumerate(listed):
        entry: dict[str, Any] = {"prompt": prompt.prompt}
        for category, words in (prompt.target_strings or {}).items():
            entry[f"{category}_string"] = words
        if tok is not None:
            for category, tokens in prompt.target_tokens.items():
                entry[f"{category}_tokens"] = tok.convert_ids_to_tokens(list(tokens))
        table[i] = entry
    return pd.DataFrame.from_dict(table)

if TYPE_CHECKING:
    from .plots_attention import attention_pattern_view
    from .plots_plotly import plot_category_probs_plotly, plot_logit_lens_plotly, plot_patchscope_lens_plotly

#: The interactive figures, in their own modules (they need plotly / circuitsvis).
_ELSEWHERE = {
    "attention_pattern_view": "plots_attention",
    "plot_category_probs_plotly": "plots_plotly",
    "plot_logit_lens_plotly": "plots_plotly",
    "plot_patchscope_lens_plotly": "plots_plotly",
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in _ELSEWHERE:
            return getattr(importlib.import_module(f"nnspec.{_ELSEWHERE[name]}"), name)
        raise AttributeError(f"module 'nnspec.display' has no attribute {name!r}")


__all__ = [
    "attention_pattern_view",
    "display_token",
    "lens_figure",
    "lens_grid",
    "plot_category_probs",
    "plot_category_probs_plotly",
    "plot_logit_lens",
    "plot_logit_lens_plotly",
    "plot_patchscope_lens_plotly",
    "plot_topk_tokens",
    "prompts_to_df",
    "token_text",
    "topk_tokens",
    "visible_text",
    "write_lens_html",
]
