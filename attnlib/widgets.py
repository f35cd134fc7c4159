"""Explorers that keep working on the static website.

A kernel-backed slider (``ipywidgets.interact``) goes dead on a static page.
:func:`precomputed_explorer` instead renders one frame per slider position
ahead of time and links the slider to a ``Stack`` of those frames with
``jslink``: the link runs in the browser, so the page stays interactive with
no kernel, once the notebook is executed and its widget state saved.
"""
import base64
import html

import ipywidgets as widgets

from .plotting import to_png


def precomputed_explorer(options, render, *, description="value", start=0, alt=None):
    """A slider over ``options`` that shows ``render(option)`` for the chosen one.

    Args:
        options: the slider's positions (numbers or strings, shown as labels).
        render: ``option -> matplotlib Figure`` (or an HTML string); called once per option now.
        description: the slider's label (also its accessible name on the website).
        start: index of the option shown first.
        alt: ``option -> str``, the alt text of each figure frame, for readers who do not
            see it (default: "<description> = <option>: " and the figure's axis titles).

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
            text = alt(option) if alt is not None else _default_alt(out, description, option)
            frames.append(widgets.HTML(value=_img(to_png(out), text)))
    slider = widgets.SelectionSlider(
        options=[(str(o), i) for i, o in enumerate(options)], index=start,
        description=description, continuous_update=True,
        style={"description_width": "initial"}, layout=widgets.Layout(width="420px"),
    )
    stack = widgets.Stack(frames, selected_index=start)
    widgets.jslink((slider, "index"), (stack, "selected_index"))
    return widgets.VBox([slider, stack])


def _default_alt(fig, description, option):
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    return f"{description} = {option}" + (f": {'; '.join(titles)}" if titles else "")


def _img(png: bytes, alt: str) -> str:
    """An <img> holding ``png`` inline, with alt text (an ipywidgets Image cannot carry one)."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt, quote=True)}" '
            'style="max-width:100%">')
