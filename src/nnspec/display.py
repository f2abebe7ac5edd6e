"""Plots for logit lens and prompt tracking (PNG needs ``pip install nnspec[display]``)."""

from .runtime.display import lens_grid, plot_category_probs, plot_logit_lens, write_lens_html

__all__ = ["lens_grid", "plot_category_probs", "plot_logit_lens", "write_lens_html"]
