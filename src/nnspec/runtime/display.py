"""Plots: a logit-lens heatmap (layers x positions), per-category probabilities, and nnterp's
``plot_topk_tokens`` / ``prompts_to_df``.

PNG output needs matplotlib, ``plot_topk_tokens`` plotly and ``prompts_to_df`` pandas (all in
``pip install nnspec[display]``); the lens HTML page is self-contained and needs nothing extra.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from ..errors import InputError, InputTypeError, ShapeMismatchError

from .interventions import Layers, as_layers


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'nnspec[display]'") from exc
    return plt


@torch.no_grad()
def lens_grid(model: Any, prompt: str, layers: Layers = None, k: int = 5, remote: bool = False) -> dict[str, Any]:
    """Logit lens at every position of one prompt.

    Returns ``{"layers": [...], "tokens": [str] (seq), "probs": (layers, seq, vocab) tensor,
    "top": [[[(token, prob)] * k] * seq] * layers}``.
    """
    chosen = as_layers(model, layers)
    states: list[Any] = []
    with model.trace(prompt, remote=remote):
        for layer in chosen:
            states.append(model.layers_output[layer][0].save())
    probs = model.project_on_vocab(torch.stack(states, 0)).softmax(-1).float().cpu()
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"][0].tolist()
    top = torch.topk(probs, k=min(k, probs.shape[-1]), dim=-1)
    names = [[model.tokenizer.convert_ids_to_tokens(row.tolist()) for row in layer] for layer in top.indices]
    grid = [
        [list(zip(names[l][p], top.values[l, p].tolist())) for p in range(probs.shape[1])] for l in range(len(chosen))
    ]
    return {"layers": chosen, "tokens": model.tokenizer.convert_ids_to_tokens(ids), "probs": probs, "top": grid}


def display_token(token: str) -> str:
    """A vocabulary entry as readable text (byte-level and sentencepiece space markers shown as spaces)."""
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\\n")


def plot_logit_lens(
    model: Any,
    prompt: str,
    path: Union[str, Path, None] = None,
    layers: Layers = None,
    html_path: Union[str, Path, None] = None,
    k: int = 5,
    remote: bool = False,
) -> Any:
    """Heatmap of the top token's probability per (layer, position), with the token in each cell.

    Saves a PNG at ``path`` (matplotlib) and/or a self-contained HTML page at ``html_path``;
    returns the matplotlib figure when ``path`` is given, else the grid from :func:`lens_grid`.
    """
    grid = lens_grid(model, prompt, layers, k, remote)
    if html_path is not None:
        write_lens_html(grid, html_path, title=prompt)
    if path is None:
        return grid
    plt = _pyplot()
    best = [[cell[0] for cell in row] for row in grid["top"]]
    values = [[p for _, p in row] for row in best]
    n_layers, n_pos = len(values), len(values[0])
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * n_pos + 1.5), max(2.5, 0.45 * n_layers + 1.2)))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto", origin="lower")
    for l in range(n_layers):
        for p in range(n_pos):
            token, prob = best[l][p]
            ax.text(p, l, f"{display_token(token)}\n{prob:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if prob < 0.6 else "black")
    ax.set_xticks(range(n_pos), [display_token(t) for t in grid["tokens"]], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_layers), [str(l) for l in grid["layers"]], fontsize=8)
    ax.set_xlabel("input position")
    ax.set_ylabel("layer")
    ax.set_title(f"logit lens: {prompt!r}", fontsize=9)
    fig.colorbar(image, ax=ax, label="top-token probability")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def write_lens_html(grid: dict[str, Any], path: Union[str, Path], title: str = "logit lens") -> Path:
    """Write the lens grid as an HTML table; each cell's tooltip lists the top-k tokens."""
    rows = []
    for layer, cells in reversed(list(zip(grid["layers"], grid["top"]))):
        tds = []
        for cell in cells:
            token, prob = cell[0]
            tip = "&#10;".join(f"{html.escape(display_token(t))}: {p:.3f}" for t, p in cell)
            shade = int(255 - 200 * prob)
            tds.append(f'<td title="{tip}" style="background: rgb({shade},{shade},255)">{html.escape(display_token(token))}<br><small>{prob:.2f}</small></td>')
        rows.append(f"<tr><th>{layer}</th>{''.join(tds)}</tr>")
    header = "".join(f"<th>{html.escape(display_token(t))}</th>" for t in grid["tokens"])
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>table{border-collapse:collapse;font:12px sans-serif}td,th{border:1px solid #ccc;padding:3px;text-align:center}</style>"
        f"<h3>logit lens: {html.escape(title)}</h3><table><tr><th>layer</th>{header}</tr>{''.join(rows)}</table>"
    )
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


def plot_category_probs(
    results: dict[str, torch.Tensor], path: Union[str, Path], title: Optional[str] = None, layers: Optional[Sequence[int]] = None
) -> Any:
    """Plot :func:`run_prompts` results: per-layer curves for ``(prompts, layers)`` values (mean
    and spread over prompts), bars for ``(prompts,)`` values. Saves a PNG at ``path``."""
    if not results:
        raise InputError("results is empty")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    first = next(iter(results.values()))
    if first.ndim == 2:
        xs = list(layers) if layers is not None else list(range(first.shape[1]))
        for category, values in results.items():
            mean, std = values.float().mean(0), values.float().std(0) if values.shape[0] > 1 else torch.zeros(values.shape[1])
            ax.plot(xs, mean.tolist(), marker="o", label=category)
            ax.fill_between(xs, (mean - std).tolist(), (mean + std).tolist(), alpha=0.2)
        ax.set_xlabel("layer")
    else:
        names = list(results)
        ax.bar(names, [float(v.float().mean()) for v in results.values()])
    ax.set_ylabel("probability")
    ax.set_title(title or "probability by category")
    if first.ndim == 2:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


# -- nnterp's plotly and pandas helpers -------------------------------------------------------------

_EXTRA = "pip install 'nnspec[display]'"


def _import(module: str, purpose: str) -> Any:
    """``module`` imported, or an ImportError saying which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs {module.split('.')[0]}, which is not installed: {_EXTRA}") from exc


def topk_tokens(next_token_probs: torch.Tensor, tokenizer: Any, k: int = 4) -> dict[str, Any]:
    """The ``k`` most likely tokens per (prompt, layer) of a probability tensor.

    ``next_token_probs`` is ``(batch, layers, vocab)``, ``(layers, vocab)`` or ``(vocab,)`` (missing
    dimensions become 1). Returns ``{"probs": (batch, layers, k) tensor, "ids": (batch, layers, k)
    tensor, "tokens": nested lists of token strings, batch x layers x k}``.
    """
    from .prompts import tokenizer_of

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
    for label, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{label} must be a positive number of pixels, got {value!r}")
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
        names = [[repr(display_token(t)) for t in layer] for layer in top["tokens"][b]]
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
    from .prompts import Prompt, tokenizer_of

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
