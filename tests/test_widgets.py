"""The explorer: one frame per option, each figure with alt text, the slider linked in the browser."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from attnlib.widgets import precomputed_explorer  # noqa: E402


def render(k):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, k])
    ax.set_title(f"slope {k}")
    return fig


def test_frames_are_images_with_alt_text():
    box = precomputed_explorer([1, 2, 3], render, description="slope", start=1)
    slider, stack = box.children
    assert slider.index == 1 and stack.selected_index == 1 and len(stack.children) == 3
    for k, frame in zip([1, 2, 3], stack.children):
        assert frame.value.startswith('<img src="data:image/png;base64,')
        assert f'alt="slope = {k}: slope {k}"' in frame.value


def test_alt_text_can_be_given_and_is_escaped():
    box = precomputed_explorer(["a"], lambda o: render(1), description="d",
                               alt=lambda o: f'the "{o}" <case>')
    assert 'alt="the &quot;a&quot; &lt;case&gt;"' in box.children[1].children[0].value


def test_html_frames_pass_through_and_empty_options_are_refused():
    box = precomputed_explorer(["x"], lambda o: "<b>x</b>")
    assert box.children[1].children[0].value == "<b>x</b>"
    with pytest.raises(ValueError, match="empty"):
        precomputed_explorer([], render)
