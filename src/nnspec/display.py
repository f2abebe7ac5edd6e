"""Plots for the logit lens, the patchscope lens, prompt tracking and attention patterns, how
tokens are shown in them, and nnterp's ``plot_topk_tokens`` / ``prompts_to_df`` (matplotlib,
plotly, pandas and circuitsvis come with ``pip install 'nnspec[display]'``)."""

from .runtime.display import (
    display_token,
    lens_figure,
    lens_grid,
    plot_category_probs,
    plot_logit_lens,
    plot_topk_tokens,
    prompts_to_df,
    token_text,
    topk_tokens,
    visible_text,
    write_lens_html,
)
from .runtime.plots_attention import attention_pattern_view
from .runtime.plots_plotly import plot_category_probs_plotly, plot_logit_lens_plotly, plot_patchscope_lens_plotly

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
