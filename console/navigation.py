"""Top navigation, assembled from what each app registers in its AppConfig.ready."""

from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

from console.roles import has_role


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: tuple[str, ...]
    order: int = 50


_ITEMS: list[NavItem] = []


def register(label: str, url_name: str, *roles: str, order: int = 50) -> None:
    if not any(item.url_name == url_name for item in _ITEMS):
        _ITEMS.append(NavItem(label, url_name, roles, order))


def items_for(user) -> list[dict]:
    links = []
    for item in sorted(_ITEMS, key=lambda i: (i.order, i.label)):
        if not has_role(user, *item.roles):
            continue
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        links.append({"label": item.label, "url": url})
    return links
