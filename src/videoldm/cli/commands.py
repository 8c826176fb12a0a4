"""Imports every command module so that its commands register on the app."""

# Add one import per command module here (each module decorates functions with @app.command, ...).
from videoldm.cli import (
    data,  # noqa: F401
    encode,  # noqa: F401
    evaluate_metrics,  # noqa: F401
    evaluate_shapes,  # noqa: F401
    extend,  # noqa: F401
    generate,  # noqa: F401
    interpolate,  # noqa: F401
    reconstruct,  # noqa: F401
    serve,  # noqa: F401
    train,  # noqa: F401
    upscale,  # noqa: F401
)
