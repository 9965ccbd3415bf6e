"""The JSON document a `securegate` command printed, read out of captured stdout.

The CLI runs in the test's own process, which is a Ray driver: Ray forwards its workers' log lines (raylet
warnings and the like) to that process's stdout, so they can land in the same capture as the command's
output. The command prints one JSON document starting on a line of its own; that document is what is read.
"""

import json


def printed_json(out: str):
    """The last JSON document in out that starts at the beginning of a line."""
    decoder, found = json.JSONDecoder(), None
    starts = [0] if out[:1] in "{[" else []
    starts += [i + 1 for i, c in enumerate(out) if c == "\n" and out[i + 1:i + 2] in ("{", "[")]
    for start in starts:
        try:
            found, _ = decoder.raw_decode(out, start)
        except json.JSONDecodeError:
            continue
    if found is None:
        raise AssertionError(f"no JSON document printed: {out[-2000:]!r}")
    return found
