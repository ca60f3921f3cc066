"""Take credentials out of URLs before they are stored in the catalog and shown to every reader."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# Over SSH the user name is how the server routes the key (``git@github.com``), not a secret; over HTTP a
# lone user name is often a token (``https://ghp_xxx@github.com/...``), so it goes too.
_KEEP_USER_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})


def redact_url(url: str) -> str:
    """Return ``url`` without ``user:password@`` (or, outside SSH, without any ``user@``)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced ``[`` in an IPv6 host: not a URL we can take apart
        return url
    if not parts.scheme or "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    if ":" not in userinfo and parts.scheme.lower() in _KEEP_USER_SCHEMES:
        return url
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
