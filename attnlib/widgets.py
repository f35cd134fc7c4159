"""Explorers that keep working on the static website.

A kernel-backed slider (``ipywidgets.interact``) goes dead on a static page.
:func:`precomputed_explorer` instead renders one frame per slider position
ahead of time and links the slider to a ``Stack`` of those frames with
``jslink``: the link runs in the browser, so the page stays interactive with
no kernel, once the notebook is executed and its widget state saved.
"""
import ipywidgets as widgets

from .plotting import to_png


def precomputed_explorer(options, render, *, description="value", start=0):
    """A slider over ``options`` that shows ``render(option)`` for the chosen one.

    Args:
        options: the slider's positions (numbers or strings, shown as labels).
        render: ``option -> matplotlib Figure`` (or an HTML string); called once per option now.
        description: the slider's label.
        start: index of the option shown first.

    Returns:
        an ``ipywidgets.VBox`` holding the slider and the stack of frames.
    """
    options = list(options)
    if not options:
        raise ValueError("options must not be empty")
    frames = []
    for option in options:
        out = render(option)
        if isinstance(out, str):
            frames.append(widgets.HTML(value=out))
        else:
            frames.append(widgets.Image(value=to_png(out), format="png"))
    slider = widgets.SelectionSlider(
        options=[(str(o), i) for i, o in enumerate(options)], index=start,
        description=description, continuous_update=True,
        style={"description_width": "initial"}, layout=widgets.Layout(width="420px"),
    )
    stack = widgets.Stack(frames, selected_index=start)
    widgets.jslink((slider, "index"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])
