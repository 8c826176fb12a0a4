"""The web page of `videoldm serve` (the optional `ui` extra: gradio).

`models.py` finds the models the page offers (the base folder and the personalised ones next to it), `jobs.py`
checks a request against the server's limits and runs it through `pipelines.generate` (the path `videoldm
generate` takes), caching loaded pipelines; neither imports gradio. `app.py` builds the gradio page on them.
"""

# How the browser test and `scripts/serve_screenshot.py` start Debian's chromium headless on a machine without a
# network: no sandbox (root in a container), no GPU, and none of the background calls out that would be refused.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
