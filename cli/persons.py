"""`securegate persons find|reject|rejections|unreject|merge|move-face`: finding a person by external id and the
corrections API of a running service, through the typed client (securegate/client.py) with a tenant's API key.

Each command prints the API's answer as JSON on stdout and exits 0; a refusal or an unreachable service is one
line on stderr naming the stable error code (`securegate persons merge: 409 same_person: ...`), exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def cmd_persons(ns: argparse.Namespace) -> int:
    from securegate.client import SecureGateClient, SecureGateError

    name = f"securegate persons {ns.action}"
    api_key = ns.api_key or os.environ.get("SECUREGATE_API_KEY")
    if not api_key:
        raise SystemExit(f"{name}: pass --api-key or set SECUREGATE_API_KEY")
    image = None
    if ns.action == "reject":
        if ns.face_index is not None and ns.image is None:
            raise SystemExit(f"{name}: --face-index picks a face of --image; give --image FILE with it")
        if ns.image is not None:
            try:  # read here, so a wrong path is a usage error rather than a traceback from the client
                image = Path(ns.image).read_bytes()
            except OSError as exc:
                raise SystemExit(f"{name}: cannot read {ns.image}: {exc.strerror or exc}") from None
    with SecureGateClient(ns.url, api_key=api_key, timeout=ns.timeout) as client:
        try:
            answer = _call(client, ns, image)
        except SecureGateError as exc:  # str(exc) is "<status> <code>: <message>" (or "<code>: ..." with no answer)
            print(f"{name}: {exc}", file=sys.stderr, flush=True)
            return 1
    print(json.dumps(answer, indent=2))
    return 0


def _call(client, ns: argparse.Namespace, image: bytes | None) -> dict:
    if ns.action == "find":
        return client.list_persons(external_id=ns.external_id).model_dump()
    if ns.action == "reject":
        return client.reject(ns.person_id, image=image, face_index=ns.face_index, face_id=ns.face_id,
                             unknown_id=ns.unknown_id).model_dump()
    if ns.action == "rejections":
        return client.list_rejections(ns.person_id).model_dump()
    if ns.action == "unreject":
        client.delete_rejection(ns.person_id, ns.rejection_id)  # 204: no body, so say what was deleted
        return {"person_id": ns.person_id, "rejection_id": ns.rejection_id, "deleted": True}
    if ns.action == "merge":
        return client.merge_persons(ns.person_id, ns.merged_person_id).model_dump()
    return client.move_face(ns.person_id, ns.face_id, ns.to).model_dump()


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("SECUREGATE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", help="the tenant's API key (default: $SECUREGATE_API_KEY)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per request")


def add_parser(sub) -> None:
    p = sub.add_parser("persons", help="find a person by external id; corrections: 'not this person' rejections, "
                       "merge two persons, move a face (tenant API of a running service)")
    actions = p.add_subparsers(dest="action", required=True)

    find = actions.add_parser("find", help="the person holding exactly this external id (through the blind index)")
    find.add_argument("--external-id", required=True)

    reject = actions.add_parser("reject", help="'not this person': a face becomes a negative example of PERSON_ID")
    reject.add_argument("person_id")
    source = reject.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", metavar="FILE", help="a photo of the face that is not this person")
    source.add_argument("--face-id", help="an enrolled face of another person of the tenant")
    source.add_argument("--unknown-id", help="an unknown's id from the camera events (each kept sample)")
    reject.add_argument("--face-index", type=int, help="which face of --image, when it has several")

    actions.add_parser("rejections", help="list PERSON_ID's rejections").add_argument("person_id")

    unreject = actions.add_parser("unreject", help="delete one of PERSON_ID's rejections")
    unreject.add_argument("person_id")
    unreject.add_argument("rejection_id")

    merge = actions.add_parser("merge", help="MERGED_PERSON_ID's faces, rejections and events move to PERSON_ID; "
                               "MERGED_PERSON_ID is deleted")
    merge.add_argument("person_id")
    merge.add_argument("merged_person_id")

    move = actions.add_parser("move-face", help="a face enrolled to the wrong person becomes --to's")
    move.add_argument("person_id", help="the face's person now")
    move.add_argument("face_id")
    move.add_argument("--to", required=True, metavar="OTHER_PERSON_ID")

    for child in actions.choices.values():
        add_options(child)
    p.set_defaults(func=cmd_persons)
