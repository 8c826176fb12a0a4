"""The web page of `videoldm serve` (the optional `ui` extra: gradio).

`models.py` finds the models the page offers (the base folder and the personalised ones next to it), `jobs.py`
checks a request against the server's limits and runs it through `pipelines.generate` (the path `videoldm
generate` takes), caching loaded pipelines; neither imports gradio. `app.py` builds the gradio page on them.
"""
