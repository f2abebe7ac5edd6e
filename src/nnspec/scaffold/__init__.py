"""Drafting specs by inspecting models: tiny configs, structure discovery, residual hypotheses."""
