"""Names, paths and host names a user gives: checked before anything uses them.

An experiment name is one folder name -- no path separator, not ``.``/``..``, no control
character -- so ``<root>/<name>/...`` never leaves ``<root>``; a path (``--out``,
``out_dir``, the data and cache folders) may be relative, absolute or use ``..`` (the user
chose it) but holds no control or unprintable character (a NUL byte cannot name a file;
a newline, an escape sequence or an unassigned code point makes the folder's name lie
when printed); a host name is an IP address or
an RFC 1123 DNS name. Each is refused in one line (``UserError``), never rewritten.

Pure checks with no dependency beyond ``errors``: the config (``experiments``) and the
Dask runtime (``grid``) both use them.
"""
from __future__ import annotations

import ipaddress
import os
import re
import unicodedata
from typing import Optional

from fedjax_grid.errors import UserError, show

#: Longest experiment name (characters): a folder name, with room for the time stamp.
MAX_NAME = 100
#: Longest path accepted (characters; Linux's PATH_MAX is 4096 bytes).
MAX_PATH = 4096


def _control(text: str) -> Optional[str]:
    """The first character of ``text`` that does not print as itself: control and format
    characters (NUL, newline, ESC, U+202E ...), separators other than the space, surrogates,
    private-use and unassigned code points (``str.isprintable`` is False for each)."""
    for c in text:
        if not c.isprintable():
            return c
    return None


def _why_char(c: str) -> str:
    """'it holds the control character '\\n'' / '... the unprintable character ...'."""
    kind = "control" if unicodedata.category(c) in ("Cc", "Cf") else "unprintable"
    return f"it holds the {kind} character {c!r}"


def check_name(name, what: str = "name") -> str:
    """``name`` if it can be one folder name inside the runs folder, else a one-line
    ``UserError`` (refused, not rewritten: the folder is the name the user gave)."""
    rule = (f"one folder name of 1-{MAX_NAME} characters (no '/' or '\\', not '.' or '..', "
            "no control or unprintable characters, no leading or trailing space) is required")
    if not isinstance(name, str):
        raise UserError(f"{what}={show(name)} is invalid: {rule}", path=what)
    bad = _control(name)
    why = (_why_char(bad) if bad is not None else
           "it holds a path separator" if ("/" in name or "\\" in name) else
           "it names a parent or the current folder" if name in (".", "..") else
           "it is empty" if not name else
           "it starts or ends with a space" if name != name.strip() else
           f"it is longer than {MAX_NAME} characters" if len(name) > MAX_NAME else None)
    if why is not None:
        raise UserError(f"{what}={show(name)} is refused ({why}): {rule}", path=what)
    return name


def check_path(path, what: str):
    """``path`` (a str or Path) unless it holds a control character or is empty / too
    long: then a one-line ``UserError`` naming ``what`` (``--out``, ``out_dir`` ...)."""
    text = str(path) if isinstance(path, (str, os.PathLike)) else None
    if text is None:
        raise UserError(f"{what}={show(path)} is invalid: a folder or file path is required")
    bad = _control(text)
    why = (_why_char(bad) if bad is not None else
           "it is empty" if not text.strip() else
           f"it is longer than {MAX_PATH} characters" if len(text) > MAX_PATH else None)
    if why is not None:
        raise UserError(f"{what}={show(text)} is refused ({why}): a path without control "
                        f"or unprintable characters, at most {MAX_PATH} characters, is required", path=what)
    return path


#: One label of a DNS host name (RFC 1123): letters, digits, inner hyphens, <= 63 chars.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_host(host) -> str:
    """``host`` if it is an IP address or a DNS host name, else a one-line ``UserError``
    (no spaces, control characters, wildcards, empty labels such as ``..``)."""
    if isinstance(host, str):
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        name = host[:-1] if host.endswith(".") else host
        if 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split(".")):
            return host
    raise UserError(f"--hosts entry {show(host)} is not a host name or IP address; allowed: "
                    "names like node1.example.org (letters, digits, inner hyphens, dot-separated) "
                    "or addresses like 192.168.1.20")
