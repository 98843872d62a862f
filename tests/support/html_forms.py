"""What a browser without JavaScript would submit: the fields of a page's form, read from its HTML."""
from html.parser import HTMLParser


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._form = None
        self._select = None
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._form = {"method": (attrs.get("method") or "get").lower(), "action": attrs.get("action") or "",
                          "id": attrs.get("id"), "fields": {}, "buttons": []}
            self.forms.append(self._form)
        if self._form is None:
            return
        fields = self._form["fields"]
        name = attrs.get("name")
        if tag == "input" and name:
            kind = (attrs.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in attrs:
                    fields[name] = attrs.get("value") or "on"
            elif kind not in ("submit", "button", "image", "file"):
                fields[name] = attrs.get("value") or ""
        elif tag == "select" and name:
            self._select = name
            fields[name] = None
        elif tag == "option" and self._select:
            value = attrs.get("value", "")
            if fields[self._select] is None or "selected" in attrs:
                fields[self._select] = value
        elif tag == "textarea" and name:
            self._textarea = name
            fields[name] = ""
        elif tag == "button":
            self._form["buttons"].append(attrs)

    def handle_data(self, data):
        if self._form is not None and self._textarea:
            self._form["fields"][self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            fields = self._form["fields"] if self._form is not None else {}
            if self._textarea in fields:  # a browser drops the newline that opens a textarea
                value = fields[self._textarea]
                fields[self._textarea] = value[2:] if value.startswith("\r\n") else value.removeprefix("\n")
            self._textarea = None


def forms(html: str) -> list[dict]:
    """Every form of the page: method, action, id and the fields a plain submit sends."""
    parser = _Forms()
    parser.feed(html)
    for form in parser.forms:
        form["fields"] = {name: value for name, value in form["fields"].items() if value is not None}
    return parser.forms


def form_by_action(html: str, action: str, method: str | None = None) -> dict:
    found = [f for f in forms(html) if f["action"] == action and (method is None or f["method"] == method)]
    assert found, f"no form posting to {action}"
    return found[0]
