from core.markdown import render_markdown


def test_markdown_renders_and_shifts_headings():
    html = render_markdown("# Title\n\n**bold** and [link](https://example.org)")
    assert "<h2>Title</h2>" in html
    assert "<strong>bold</strong>" in html
    assert 'href="https://example.org"' in html
    assert 'rel="nofollow noopener noreferrer ugc"' in html


def test_raw_html_is_escaped_not_rendered():
    html = render_markdown("<b onclick=x>hi</b>")
    assert "<b" not in html
    assert "&lt;b onclick=x&gt;" in html


def test_images_never_load_from_elsewhere():
    assert "<img" not in render_markdown("![pixel](https://tracker.example/p.gif)")


def test_empty_story():
    assert render_markdown(None) == ""
