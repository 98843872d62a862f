"""The filter guide: the filter DSL, its error messages and recipes, in Markdown packaged with
the templates (so it ships with the code and the workspace never reads docs/)."""
from importlib import resources

from markdown_it import MarkdownIt
from markupsafe import Markup

GUIDE_RESOURCE = "templates/imap/filter_guide.md"


def guide_markdown() -> str:
    return resources.files("portal").joinpath(GUIDE_RESOURCE).read_text(encoding="utf-8")


def guide_html() -> Markup:
    # Raw HTML in the Markdown is not passed through: the guide is rendered as text and tables only.
    return Markup(MarkdownIt("commonmark", {"html": False}).enable("table").render(guide_markdown()))
