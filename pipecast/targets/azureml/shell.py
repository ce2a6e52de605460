r"""Azure ML's ``command:`` is a shell string into which Azure ML pastes input values as text.

Azure ML replaces every ``${{inputs.x}}`` in a command with the input's value, verbatim, and then runs
the command with a shell. So a value is safe only if the shell cannot read it as syntax. pipecast puts
every placeholder inside single quotes, where the shell reads everything literally except a closing
``'``, and writes every value that goes into such a place in *shell-single-quote form*:

- each ``'`` becomes ``'\''`` (close the quote, an escaped quote, reopen the quote);
- each ``${{`` becomes ``$''{{`` and each ``$[[`` becomes ``$''[[`` (an empty ``''`` pair splits them),
  so Azure ML never finds an expression (``${{…}}``) or an optional block (``$[[…]]``) inside a value.

The shell joins the pieces back, so the program receives the value unchanged. The same form is used for
literal text of the command (names, the artifact root), so nothing but pipecast's own placeholders is an
Azure ML expression.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# Characters a shell word may hold without quotes (the set shlex.quote leaves alone).
_SAFE_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def single_quote_body(text: str) -> str:
    """``text`` written so that, pasted between single quotes, the shell reads back exactly ``text``."""
    return text.replace("'", "'\\''").replace("${{", "$''{{").replace("$[[", "$''[[")


def shell_command(argv: Sequence[str], placeholders: Mapping[str, str]) -> str:
    r"""Join ``argv`` into one shell command line.

    Args:
        argv: The program and its arguments, as the program must receive them.
        placeholders: Marker text found inside ``argv`` mapped to the Azure ML expression that replaces
            it (``{"\x00n\x00": "${{inputs.n}}"}``). Only these become expressions; every other
            character is literal.
    """
    pattern = re.compile("|".join(re.escape(marker) for marker in placeholders)) if placeholders else None
    words = []
    for arg in argv:
        if _SAFE_WORD.fullmatch(arg):
            words.append(arg)
            continue
        body, position = [], 0
        for match in pattern.finditer(arg) if pattern else ():
            body.append(single_quote_body(arg[position:match.start()]))
            body.append(placeholders[match.group(0)])
            position = match.end()
        body.append(single_quote_body(arg[position:]))
        words.append("'" + "".join(body) + "'")
    return " ".join(words)
