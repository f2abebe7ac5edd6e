"""Plots: a logit-lens heatmap (layers x positions) and per-category probabilities.

PNG output needs matplotlib (``pip install nnspec[display]``); the HTML output is a self-contained
page (hover a cell for the top tokens) and needs nothing extra.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from ..errors import InputError

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
