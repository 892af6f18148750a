"""The statements of the SQL files under `sql/`, without comments."""

import re

_TOKEN = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`|--[^\n]*|/\*.*?\*/|;|[^'"`;/-]+|.""",
    re.DOTALL,
)


def statements(text: str) -> list[str]:
    """Split a script at the semicolons outside quotes; comments become spaces."""
    result: list[str] = []
    current: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token.startswith(("--", "/*")):
            current.append(" ")
        elif token == ";":
            result.append("".join(current).strip())
            current = []
        else:
            current.append(token)
    result.append("".join(current).strip())
    return [statement for statement in result if statement]


def leading_comment(text: str) -> str:
    """The `--` comment lines a file starts with, without the dashes."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    return "\n".join(lines).strip()
