"""``derain demo``: a local web page that derains an uploaded photo (needs ``derain[demo]``).

The page lives in :mod:`derain.demo.app`, which imports Gradio; this package itself does not,
so ``derain --help`` works without the extra.
"""

DEFAULT_MAX_PIXELS = 40_000_000  # a larger upload would take minutes on a laptop CPU
