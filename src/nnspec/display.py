"""Plots for logit lens and prompt tracking, and nnterp's ``plot_topk_tokens`` / ``prompts_to_df``
(these need ``pip install nnspec[display]``)."""

from .runtime.display import (
    lens_grid,
    plot_category_probs,
    plot_logit_lens,
    plot_topk_tokens,
    prompts_to_df,
    topk_tokens,
    write_lens_html,
)

__all__ = [
    "lens_grid",
    "plot_category_probs",
    "plot_logit_lens",
    "plot_topk_tokens",
    "prompts_to_df",
    "topk_tokens",
    "write_lens_html",
]
