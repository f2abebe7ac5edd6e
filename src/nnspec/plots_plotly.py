"""Interactive plotly figures: the logit lens (layers x positions), the patchscope lens (layers x
source prompts) and category probabilities over layers (:func:`~.prompts.run_prompts` output).

Each function returns the ``plotly.graph_objects.Figure`` (shown only with ``show=True``) and,
with ``html_path=``, writes it as one standalone HTML file (plotly's JavaScript embedded, so it
opens offline). Needs plotly (``pip install 'nnspec[display]'``).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from .display import (
    _check_flag,
    _check_k,
    _check_path,
    _check_prompt,
    _check_results,
    _check_title,
    _import,
    _spread,
    _Texts,
    lens_grid,
    visible_text,
)
from .runtime.arguments import Layers, as_layers, as_prompts

PathLike = Union[str, Path, None]


def _label(text: str) -> str:
    """Visible text made safe for plotly's HTML-like labels (``<s>`` is a token, not a tag)."""
    return html.escape(visible_text(text), quote=False)


def _short(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _finish(fig: Any, html_path: Optional[Path], show: bool) -> Any:
    if html_path is not None:
        fig.write_html(html_path, include_plotlyjs=True, full_html=True)
    if show:
        fig.show()
    return fig


def _lens_heatmap(
    go: Any,
    probs: list[list[list[float]]],
    texts: list[list[list[str]]],
    columns: list[str],
    layers: list[int],
    cell_heads: list[list[str]],
    title: str,
    x_title: str,
) -> Any:
    """A layers x columns heatmap: colour = top-1 probability, text = top-1 token, hover = top k.

    ``probs`` / ``texts`` are ``(layers, columns, k)`` (most likely first, raw decoded text);
    ``cell_heads`` ``(layers, columns)`` open each cell's hover."""
    rows, cols = len(layers), len(columns)
    z = [[probs[r][c][0] for c in range(cols)] for r in range(rows)]
    shown = [[_label(texts[r][c][0]) for c in range(cols)] for r in range(rows)]
    hover = [
        [
            cell_heads[r][c] + "<br>" + "<br>".join(
                f"{rank + 1}. {_label(t)}  {p:.3f}" for rank, (t, p) in enumerate(zip(texts[r][c], probs[r][c]))
            )
            for c in range(cols)
        ]
        for r in range(rows)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(cols)),
            y=list(range(rows)),
            text=shown,
            texttemplate="%{text}",
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
            colorscale="Viridis",
            zmin=0,
            zmax=1,
            xgap=1,
            ygap=1,
            colorbar=dict(title=dict(text="top-token<br>probability"), thickness=14),
        )
    )
    fig.update_xaxes(title_text=x_title, tickmode="array", tickvals=list(range(cols)), ticktext=columns, tickangle=-45)
    fig.update_yaxes(title_text="layer", tickmode="array", tickvals=list(range(rows)), ticktext=[str(l) for l in layers])
    fig.update_layout(
        title=dict(text=title),
        width=max(520, 70 * cols + 240),
        height=max(320, 30 * rows + 200),
        margin=dict(l=60, r=20, t=60, b=60),
        plot_bgcolor="white",
    )
    return fig


def plot_logit_lens_plotly(
    model: Any,
    prompt: str,
    layers: Layers = None,
    k: int = 5,
    html_path: PathLike = None,
    show: bool = False,
    title: Optional[str] = None,
    remote: bool = False,
) -> Any:
    """Interactive logit lens of one prompt: a layers x positions heatmap.

    Each cell is one layer's residual stream at one position decoded with
    ``model.project_on_vocab`` (:func:`~.display.lens_grid`): coloured by the top token's
    probability (viridis, 0 to 1), labelled with that token (whitespace visible: ``␣``, ``\\n``,
    ``\\t``); hovering lists the top ``k`` tokens with their probabilities. ``fig.data[0]``
    holds ``z`` (layers, positions) and ``text``; rows are ``layers`` in the order given.

    Returns:
        the ``plotly.graph_objects.Figure``; written to ``html_path`` as standalone HTML if given.
    """
    go = _import("plotly.graph_objects", "plot_logit_lens_plotly")
    _check_prompt(prompt)
    _check_flag(show, "show")
    _check_title(title)
    out = _check_path(html_path, "html_path")
    grid = lens_grid(model, prompt, layers, k, remote)
    probs = [[[p for _, p in cell] for cell in row] for row in grid["top"]]
    inputs = grid["texts"]
    heads = [
        [f"layer {layer}, position {p} ({_label(inputs[p])})" for p in range(len(inputs))] for layer in grid["layers"]
    ]
    fig = _lens_heatmap(
        go, probs, grid["top_texts"], [_label(t) for t in inputs], grid["layers"], heads,
        title if title is not None else f"logit lens: {_label(prompt)}", "input position",
    )
    return _finish(fig, out, show)


def plot_patchscope_lens_plotly(
    model: Any,
    source_prompts: Union[str, Sequence[str]],
    target_patch_prompts: Any = None,
    layers: Layers = None,
    k: int = 5,
    html_path: PathLike = None,
    show: bool = False,
    title: Optional[str] = None,
    remote: bool = False,
    batch_size: Optional[int] = None,
) -> Any:
    """Interactive patchscope lens: a layers x source-prompts heatmap.

    Runs :func:`~nnspec.interventions.patchscope_lens` (each source's last-token state at each
    layer patched into the target prompt, default :func:`~nnspec.interventions.repeat_prompt`)
    and shows, per (layer, source), the target's most likely next token, coloured by its
    probability; hovering lists the top ``k``. ``fig.data[0]`` holds ``z`` (layers, sources) and
    ``text``.

    Returns:
        the ``plotly.graph_objects.Figure``; written to ``html_path`` as standalone HTML if given.
    """
    from .interventions import patchscope_lens

    go = _import("plotly.graph_objects", "plot_patchscope_lens_plotly")
    sources = as_prompts(source_prompts, "source_prompts")
    _check_k(k, model.vocab_size)
    _check_flag(show, "show")
    _check_title(title)
    out = _check_path(html_path, "html_path")
    chosen = as_layers(model, layers)
    probs = patchscope_lens(
        model, source_prompts=sources, target_patch_prompts=target_patch_prompts, layers=chosen, remote=remote,
        batch_size=batch_size,
    )  # (sources, layers, vocab)
    top = torch.topk(probs.float(), k=k, dim=-1)
    text = _Texts(model.tokenizer)
    values = top.values.transpose(0, 1).tolist()  # (layers, sources, k)
    texts = [[[text(i) for i in cell] for cell in row] for row in top.indices.transpose(0, 1).tolist()]
    heads = [[f"layer {layer}<br>source {s}: {_label(src)}" for s, src in enumerate(sources)] for layer in chosen]
    fig = _lens_heatmap(
        go, values, texts, [_label(_short(s)) for s in sources], chosen, heads,
        title if title is not None else "patchscope lens", "source prompt",
    )
    return _finish(fig, out, show)


def plot_category_probs_plotly(
    results: dict[str, torch.Tensor],
    title: Optional[str] = None,
    layers: Optional[Sequence[int]] = None,
    html_path: PathLike = None,
    show: bool = False,
) -> Any:
    """Interactive plot of :func:`~nnspec.prompt_utils.run_prompts` results.

    ``(prompts, layers)`` values: one line per category, the mean over prompts at each layer, with
    a band of one standard deviation, on an axis of whole layer numbers (``layers``: their numbers,
    default ``0..n-1``). ``(prompts,)`` values: one bar per category (mean, standard deviation as
    error bar). The mean lines are the traces with ``mode == "lines+markers"``.

    Returns:
        the ``plotly.graph_objects.Figure``; written to ``html_path`` as standalone HTML if given.
    """
    go = _import("plotly.graph_objects", "plot_category_probs_plotly")
    palette = _import("plotly.colors", "plot_category_probs_plotly").qualitative.Plotly
    _check_title(title)
    _check_flag(show, "show")
    out = _check_path(html_path, "html_path")
    values, xs = _check_results(results, layers)
    fig = go.Figure()
    if xs is not None:
        for n, (category, tensor) in enumerate(values.items()):
            mean, std = _spread(tensor)
            colour = palette[n % len(palette)]
            low, high = (mean - std).tolist(), (mean + std).tolist()
            fig.add_trace(go.Scatter(
                x=xs + xs[::-1], y=high + low[::-1], fill="toself", fillcolor=colour, opacity=0.2,
                line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=category, name=f"{category} ± std",
            ))
            fig.add_trace(go.Scatter(
                x=xs, y=mean.tolist(), mode="lines+markers", name=category, legendgroup=category,
                line=dict(color=colour), customdata=std.tolist(),
                hovertemplate=f"{html.escape(category)}<br>layer %{{x}}<br>mean %{{y:.4f}} ± %{{customdata:.4f}}<extra></extra>",
            ))
        ticks: dict[str, object]  # keyword arguments of update_xaxes
        if len(xs) <= 32:
            ticks = dict(tickmode="array", tickvals=xs, ticktext=[str(x) for x in xs])
        else:
            ticks = dict(tickmode="linear", tick0=xs[0], dtick=max(1, math.ceil((max(xs) - min(xs)) / 20)))
        fig.update_xaxes(title_text="layer", tickformat="d", **ticks)
    else:
        names = list(values)
        spreads = [_spread(tensor) for tensor in values.values()]
        fig.add_trace(go.Bar(
            x=names, y=[float(m) for m, _ in spreads], error_y=dict(type="data", array=[float(s) for _, s in spreads]),
            marker_color=[palette[n % len(palette)] for n in range(len(names))],
            hovertemplate="%{x}<br>mean %{y:.4f}<extra></extra>",
        ))
        fig.update_xaxes(title_text="category")
    fig.update_yaxes(title_text="probability", rangemode="tozero")
    fig.update_layout(title=dict(text=title or "probability by category"), width=700, height=420, plot_bgcolor="white")
    fig.update_xaxes(showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee")
    return _finish(fig, out, show)
