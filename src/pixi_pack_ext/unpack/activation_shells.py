"""Each shell's syntax for the few statements an activation script needs, quoted by construction.

Values come from the pack (package ``env_vars.d`` files, the manifest's ``[activation]`` tables) and
from the output folder's name, so none of them may be read as code by the shell that sources the
script. Each shell here writes a value as a literal string in its own quoting (POSIX single quotes,
fish's and PowerShell's single quotes, a Python literal for xonsh, an escaped nushell string), and
refuses a value it cannot hold (cmd cannot hold a double quote or a line break).

A value is a sequence of parts: literal text, or a reference to another environment variable
(``VarRef``), which the manifest's values may contain (``$HOME/bin``, as ``pixi shell-hook`` expands
it); a reference is written as the shell's own variable lookup, never as text the shell re-parses.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import InvalidPackError


@dataclass(frozen=True)
class VarRef:
    """A reference to an environment variable, expanded when the script is sourced."""

    name: str


Part = str | VarRef
Value = Sequence[Part]


class ShellValueError(InvalidPackError):
    """A value the chosen shell cannot hold safely."""


def check_text(text: str, where: str) -> str:
    """No environment variable can hold a NUL character, on any system, and a script is UTF-8 text
    (a lone surrogate, from a broken JSON escape or an undecodable file name, is not)."""
    if "\0" in text:
        raise ShellValueError(f"{where} contains a NUL character, which no environment variable can hold")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ShellValueError(f"{where} is not valid Unicode text ({text!r})") from None
    return text


def render_parts(
    value: Value, where: str, var: Callable[[str], str], literal: Callable[[str], str]
) -> list[str]:
    """Each part in the shell's own words: a reference by ``var`` (its name), text by ``literal``
    (once ``check_text`` passed it), so no shell writes the checks or the dispatch twice."""
    return [
        var(part.name) if isinstance(part, VarRef) else literal(check_text(part, where)) for part in value
    ]


class ShellSyntax:
    """The statements of one shell's activation script."""

    def __init__(self, windows: bool) -> None:
        self.windows = windows

    def set_var(self, name: str, value: Value, where: str) -> str:
        raise NotImplementedError

    def prepend_path(self, entries: Sequence[str], where: str) -> str:
        raise NotImplementedError

    def source(self, path: str, where: str) -> str:
        raise NotImplementedError

    def comment(self, text: str) -> str:
        return "# " + " ".join(text.splitlines())


class Posix(ShellSyntax):
    """bash, zsh and POSIX sh: single quotes hold anything but NUL; ``'`` is written ``'"'"'``."""

    def _value(self, value: Value, where: str) -> str:
        if not value:
            return "''"
        return "".join(render_parts(value, where, lambda name: '"${' + name + '}"', shlex.quote))

    def set_var(self, name: str, value: Value, where: str) -> str:
        return f"export {name}={self._value(value, where)}"

    def prepend_path(self, entries: Sequence[str], where: str) -> str:
        sep = ";" if self.windows else ":"
        head = shlex.quote(check_text(sep.join(entries), where))
        return f'export PATH={head}"${{PATH:+{sep}${{PATH}}}}"'

    def source(self, path: str, where: str) -> str:
        return f". {shlex.quote(check_text(path, where))}"


def _fish_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Fish(ShellSyntax):
    """fish: inside single quotes only ``\\\\`` and ``\\'`` are escapes; newlines are literal."""

    def _value(self, value: Value, where: str) -> str:
        if not value:
            return "''"
        # A path list (PATH) joins with ':' in double quotes; an unset variable is ''.
        return "".join(render_parts(value, where, lambda name: '"$' + name + '"', _fish_literal))

    def set_var(self, name: str, value: Value, where: str) -> str:
        return f"set -gx {name} {self._value(value, where)}"

    def prepend_path(self, entries: Sequence[str], where: str) -> str:
        quoted = " ".join(_fish_literal(check_text(e, where)) for e in entries)
        return f"set -gx PATH {quoted} $PATH"

    def source(self, path: str, where: str) -> str:
        return f"source {_fish_literal(check_text(path, where))}"


class Xonsh(ShellSyntax):
    """xonsh: Python mode; a value is a Python string literal (``repr``), never a p- or f-string."""

    def _value(self, value: Value, where: str) -> str:
        if not value:
            return "''"
        return " + ".join(
            render_parts(value, where, lambda name: f"__xonsh__.env.detype().get({name!r}, '')", repr)
        )

    def set_var(self, name: str, value: Value, where: str) -> str:
        return f"${name} = {self._value(value, where)}"

    def prepend_path(self, entries: Sequence[str], where: str) -> str:
        items = ", ".join(repr(check_text(e, where)) for e in entries)
        return f"$PATH = [{items}] + list($PATH)"

    def source(self, path: str, where: str) -> str:
        # In Python mode: subprocess mode would expand $NAME inside even a quoted path.
        command = "source-bash" if path.endswith((".sh", ".bash")) else "source"
        return f"aliases[{command!r}]([{check_text(path, where)!r}])"


#: PowerShell ends a single-quoted string at any of these; doubling one writes it literally.
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"


def _ps_literal(text: str) -> str:
    """Single-quoted pieces; a line break is the constant ``"`n"``/``"`r"``, since the script's own
    line ends (CRLF for PowerShell) would otherwise change a break inside a value."""
    pieces = []
    for part in re.split(r"(\r|\n)", text):
        if part == "\n":
            pieces.append('"`n"')
        elif part == "\r":
            pieces.append('"`r"')
        elif part or not pieces:
            pieces.append("'" + "".join(c + c if c in _PS_QUOTES else c for c in part) + "'")
    return pieces[0] if len(pieces) == 1 else "(" + " + ".join(pieces) + ")"


class PowerShell(ShellSyntax):
    """PowerShell: single-quoted strings expand nothing; each kind of single quote is doubled."""

    def _value(self, value: Value, where: str) -> str:
        if not value:
            return "''"
        return " + ".join(
            ["''", *render_parts(value, where, lambda name: "${Env:" + name + "}", _ps_literal)]
        )

    def set_var(self, name: str, value: Value, where: str) -> str:
        return f"${{Env:{name}}} = {self._value(value, where)}"

    def prepend_path(self, entries: Sequence[str], where: str) -> str:
        head = _ps_literal(check_text((";" if self.windows else ":").join(entries), where))
        return f"${{Env:PATH}} = {head} + [IO.Path]::PathSeparator + ${{Env:PATH}}"

    def source(self, path: str, where: str) -> str:
        return f". {_ps_literal(check_text(path, where))}"


class Cmd(ShellSyntax):
    """cmd.exe: ``SET "NAME=value"`` keeps ``&|<>^()`` literal, ``%%`` is a literal ``%``; a double
    quote or a line break cannot be held and is refused. ``CALL`` expands ``%`` twice and doubles
    ``^``, so a script path with ``%``, ``^`` or ``!`` is refused."""

    _NEVER = ('"', "\n", "\r", "\x1a")

    def _literal(self, text: str, where: str) -> str:
        check_text(text, where)
        for bad in self._NEVER:
            if bad in text:
                raise ShellValueError(
                    f"{where} contains {bad!r}, which a cmd.exe script cannot hold; "
                    "choose another shell with --shell"
                )
        return text.replace("%", "%%")

    def _value(self, value: Value, where: str) -> str:
        return "".join(f"%{p.name}%" if isinstance(p, VarRef) else self._literal(p, where) for p in value)

    def set_var(self, name: str, value: Value, where: str) -> str:
        return f'@SET "{name}={self._value(value, where)}"'

    def prepend_path(self, entries: Sequence[str], where: str) -> str:
        return f'@SET "PATH={self._literal(";".join(entries), where)};%PATH%"'

    def source(self, path: str, where: str) -> str:
        for bad in ("%", "^", "!"):
            if bad in path:
                raise ShellValueError(
                    f"{where} has {bad!r} in its path, which cmd.exe's CALL changes; "
                    "choose another output folder or shell"
                )
        return f'@CALL "{self._literal(path, where)}"'

    def comment(self, text: str) -> str:
        return "@REM " + "".join(c for c in " ".join(text.splitlines()) if c not in '"%^&|<>')


def _nu_literal(text: str) -> str:
    """A nushell double-quoted string: only backslash escapes, no interpolation without ``$"``."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{{{ord(c):x}}}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


class Nushell(ShellSyntax):
    """nushell: double-quoted strings with backslash escapes; a list variable (PATH) is joined."""

    def _value(self, value: Value, where: str) -> str:
        parts = render_parts(value, where, self._var, _nu_literal)
        return "(" + " + ".join(['""', *parts]) + ")"

    @staticmethod
    def _var(name: str) -> str:
        return (
            f"($env.{name}? | default '' "
            "| if ($in | describe | str starts-with 'list') { $in | str join (char esep) } "
            "else { $in | into string })"
        )

    def set_var(self, name: str, value: Value, where: str) -> str:
        return f"$env.{name} = {self._value(value, where)}"

    def prepend_path(self, entries: Sequence[str], where: str) -> str:
        var = "Path" if self.windows else "PATH"
        items = " ".join(_nu_literal(check_text(e, where)) for e in entries)
        return (
            f"$env.{var} = ($env.{var} | if ($in | describe | str starts-with 'list') {{ $in }} "
            f"else {{ $in | split row (char esep) }} | prepend [{items}])"
        )

    def source(self, path: str, where: str) -> str:
        # nushell's `source` takes a path fixed when the script is parsed: a quoted literal.
        return f"source {_nu_literal(check_text(path, where))}"


SYNTAX: dict[str, type[ShellSyntax]] = {
    "bash": Posix,
    "zsh": Posix,
    "fish": Fish,
    "xonsh": Xonsh,
    "powershell": PowerShell,
    "cmd": Cmd,
    "nushell": Nushell,
}
