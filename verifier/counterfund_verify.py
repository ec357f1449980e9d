#!/usr/bin/env python3
"""Verify a Counterfund public ledger without trusting the operator, or the app.

One file; needs only Python 3.9+ and the `cryptography` package (pip install
cryptography). What it checks, from files you download yourself:

  python3 counterfund_verify.py --key KEY --checkpoint checkpoint.txt --export ledger.json
      The checkpoint is a note signed by KEY (the published verifier key,
      "<name>+<key id>+<base64 key>"); every entry of the JSON export is re-hashed
      from its exact leaf bytes; the entries are numbered 0..n-1 with no gap; each
      transaction's postings sum to zero per currency; and the Merkle root of the
      first <tree size> entries equals the root the operator signed.

  python3 counterfund_verify.py --key KEY --checkpoint checkpoint.txt \\
      --inclusion proof.json
      An inclusion proof (as served at /api/v1/ledger/proof/inclusion, with the entry's
      leaf from /api/v1/ledger/entries) shows one entry is in the signed tree.

  python3 counterfund_verify.py round ROUND --export ledger.json [--key KEY --checkpoint C]
      A matching round (its JSON from /api/v1/rounds/<id>, a file or the address):
      every match is recomputed from the published contributions and parameters with
      the rules below, must equal the published match, and the matches must sum to at
      most the pool; with the ledger's export, a final round's pool must be what was
      paid into its account and each match exactly one transaction from the pool to
      the campaign (and none before the round is final).

  python3 counterfund_verify.py --key KEY --checkpoint new.txt --old-checkpoint old.txt \\
      --consistency proof.json
      A consistency proof shows the newer signed tree extends the older one: history
      was only appended to, never rewritten.

Hashing follows RFC 6962: leaf = SHA-256(0x00 || leaf bytes), node = SHA-256(0x01 ||
left || right). Checkpoints follow C2SP tlog-checkpoint, signed as a C2SP signed note
with Ed25519. Exit status 0 means every check passed; anything else names what failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import sys
from collections import defaultdict
from fractions import Fraction

HASH_SIZE = 32


class VerificationError(Exception):
    pass


# ---- Merkle hashing and proof verification (RFC 9162 2.1.3.2 and 2.1.4.2) --------


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaf_hashes: list[bytes]) -> bytes:
    """The root of a whole tree, computed in one pass with a stack of perfect subtrees."""
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    stack: list[tuple[int, bytes]] = []  # (size, hash)
    for value in leaf_hashes:
        size, current = 1, value
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            current = node_hash(left, current)
            size += left_size
        stack.append((size, current))
    current = stack.pop()[1]
    while stack:
        current = node_hash(stack.pop()[1], current)
    return current


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> None:
    """Raise VerificationError unless `proof` shows leaf hash `leaf` at `index` in the
    tree of `size` entries with `root`."""
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root")
    for item in proof:
        _check_hash(item, "proof hash")
    if index < 0 or size <= 0 or index >= size:
        raise VerificationError(f"index {index} is not inside a tree of size {size}")
    fn, sn, current = index, size - 1, leaf
    for item in proof:
        if sn == 0:
            raise VerificationError("the inclusion proof is too long")
        if fn % 2 == 1 or fn == sn:
            current = node_hash(item, current)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            current = node_hash(current, item)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the inclusion proof is too short")
    if current != root:
        raise VerificationError("the inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> None:
    """Raise VerificationError unless the tree of `size2` entries with `root2` extends
    the tree of `size1` entries with `root1`."""
    if _same_tree(size1, size2, root1, root2, proof):
        return
    _check_hash(root1, "first root")
    _check_hash(root2, "second root")
    if not proof:
        raise VerificationError("the consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # an exact power of two: the old root is a node
        path.insert(0, root1)
    first, second = _consistency_roots(size1, size2, path)
    if first != root1:
        raise VerificationError("the consistency proof does not lead to the first root")
    if second != root2:
        raise VerificationError("the consistency proof does not lead to the second root")


def _same_tree(size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]) -> bool:
    """The checks before walking a consistency proof; True when both trees have one
    size (then equal roots and an empty proof are all there is to check)."""
    for item in proof:
        _check_hash(item, "proof hash")
    if size1 <= 0:
        raise VerificationError("a consistency proof must start from a non-empty tree")
    if size1 > size2:
        raise VerificationError("the first tree is larger than the second")
    if size1 != size2:
        return False
    if proof:
        raise VerificationError("trees of equal size need an empty proof")
    if root1 != root2:
        raise VerificationError("trees of equal size have different roots")
    return True


def _consistency_roots(size1: int, size2: int, path: list[bytes]) -> tuple[bytes, bytes]:
    """RFC 9162 section 2.1.4.2: the two roots a consistency proof leads to."""
    fn, sn = size1 - 1, size2 - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for item in path[1:]:
        if sn == 0:
            raise VerificationError("the consistency proof is too long")
        if fn % 2 == 1 or fn == sn:
            first = node_hash(item, first)
            second = node_hash(item, second)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            second = node_hash(second, item)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the consistency proof is too short")
    return first, second


# ---- Signed checkpoints (C2SP tlog-checkpoint and signed-note) ---------------------


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_key).digest()[:4]


def parse_verifier_key(text: str) -> tuple[str, bytes, bytes]:
    """'<name>+<8 hex digits>+<base64(0x01 || Ed25519 public key)>'."""
    try:
        name, hex_id, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
    except (ValueError, TypeError):
        raise VerificationError("the verifier key is malformed") from None
    if len(raw) != 33 or raw[0] != 1:
        raise VerificationError("the verifier key is not an Ed25519 key")
    public_key = raw[1:]
    if key_id(name, public_key).hex() != hex_id:
        raise VerificationError("the verifier key's id does not match its name and key")
    return name, bytes.fromhex(hex_id), public_key


def verify_checkpoint(note: str, verifier_key: str) -> tuple[str, int, bytes]:
    """Check the note's Ed25519 signature; return (origin, tree size, root hash)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name, wanted_id, public_key = parse_verifier_key(verifier_key)
    body, separator, signatures = note.partition("\n\n")
    if not separator:
        raise VerificationError("the checkpoint has no signature block")
    body += "\n"
    verified = False
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            raise VerificationError("malformed signature line in the checkpoint")
        signer, _, encoded = line[2:].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise VerificationError("malformed signature in the checkpoint") from None
        if signer != name or raw[:4] != wanted_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], body.encode())
        except InvalidSignature:
            raise VerificationError("the checkpoint's signature is not valid") from None
        verified = True
    if not verified:
        raise VerificationError(f"the checkpoint carries no signature by {name}")
    lines = body.split("\n")
    if len(lines) < 4:
        raise VerificationError("the checkpoint body is too short")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise VerificationError("the checkpoint's tree size is malformed")
    root = base64.b64decode(root_text, validate=True)
    _check_hash(root, "checkpoint root")
    return origin, int(size_text), root


# ---- Exports -----------------------------------------------------------------------


def check_export(entries: list[dict], size: int, root: bytes) -> int:
    """Re-hash every leaf, check numbering and balances, compare the root."""
    hashes = []
    for position, entry in enumerate(entries):
        if entry.get("index") != position:
            raise VerificationError(f"entry {position}: index {entry.get('index')} out of order")
        leaf = base64.b64decode(entry["leaf"], validate=True)
        transaction = json.loads(leaf)
        canonical = json.dumps(
            transaction, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        if canonical != leaf:
            raise VerificationError(f"entry {position}: leaf bytes are not canonical JSON")
        sums: dict[str, int] = defaultdict(int)
        for posting in transaction["postings"]:
            if not isinstance(posting["amount"], int):
                raise VerificationError(f"entry {position}: an amount is not an integer")
            sums[posting["currency"]] += posting["amount"]
        if any(sums.values()):
            raise VerificationError(f"entry {position}: postings do not sum to zero")
        hashes.append(leaf_hash(leaf))
    if len(hashes) < size:
        raise VerificationError(f"the export has {len(hashes)} entries; the tree has {size}")
    if root_of(hashes[:size]) != root:
        raise VerificationError("the export's entries do not produce the signed root")
    return size


def _b64list(items) -> list[bytes]:
    return [base64.b64decode(item, validate=True) for item in items]


def check_batch_line(line: dict, entries: list | None) -> None:
    """A batch disbursement's line: its leaf is in the tree whose root is the list's
    commitment; with the ledger's entries, an approved disbursement names that root."""
    leaf = base64.b64decode(line["leaf"], validate=True)
    fields = json.loads(leaf)
    if not {"amount", "currency", "line", "name", "salt"} <= set(fields):
        raise VerificationError("the line lacks one of amount, currency, line, name, salt")
    commitment = bytes.fromhex(line["commitment"])
    verify_inclusion(
        line["index"], line["size"], leaf_hash(leaf), _b64list(line["proof"]), commitment
    )
    if entries is not None:
        for entry in entries:
            document = json.loads(base64.b64decode(entry["leaf"]))
            if document.get("kind") == "disbursement" and line["commitment"] in document.get(
                "memo", ""
            ):
                return
        raise VerificationError("no disbursement on the ledger commits to this list")


# ---- Matching rounds: the two rules, exactly as the app computes them -------------
#
# The app imports these functions (rounds.rules), so a round's published matches come
# from the very code an auditor runs. Amounts are integers in minor units; nothing
# here uses floating point, so every machine gets the same answer.

# Square roots are taken of amounts scaled by SQRT_SCALE² (10¹²) and floored: √c to
# six decimals. A campaign's raw match is then in units of 10⁻¹² of a minor unit.
SQRT_SCALE = 10**6


def quadratic_raw(backer_totals: list[int]) -> int:
    """(Σ_j √c_j)² - Σ_j c_j over one campaign's distinct backers' totals, scaled by
    10¹² and never below zero (one backer's raw match is zero)."""
    scale = SQRT_SCALE * SQRT_SCALE
    roots = sum(math.isqrt(total * scale) for total in backer_totals)
    return max(0, roots * roots - sum(backer_totals) * scale)


def _largest_remainders(shares: dict[str, Fraction]) -> dict[str, int]:
    """Whole minor units that sum to the shares' total, rounded down to a whole unit:
    each share's floor, plus one unit to the largest fractional parts (ties to the
    smaller campaign name)."""
    floors = {name: share.numerator // share.denominator for name, share in shares.items()}
    leftover = int(sum(shares.values())) - sum(floors.values())
    by_remainder = sorted(shares, key=lambda name: (-(shares[name] - floors[name]), name))
    for name in by_remainder[:leftover]:
        floors[name] += 1
    return floors


def quadratic_matches(
    contributions: dict[str, list[tuple[str, int]]],
    pool: int,
    *,
    max_share_bp: int | None = None,
    min_contribution: int = 0,
) -> dict[str, int]:
    """Each campaign's match from (backer tag, amount) contributions.

    A contribution below `min_contribution` does not count; a backer's contributions
    to one campaign are added up; raw matches (quadratic_raw) are scaled to share the
    pool; no campaign gets more than `max_share_bp` ten-thousandths of the pool: the
    excess goes to the others in proportion to their raw matches, again and again
    until none is over. Shares are rounded to whole minor units by largest
    remainder, so the matches sum to the pool unless every campaign is capped (or
    none has a raw match), and never to more."""
    raw: dict[str, int] = {}
    for campaign, rows in contributions.items():
        totals: dict[str, int] = {}
        for backer, amount in rows:
            if amount >= max(min_contribution, 1):
                totals[backer] = totals.get(backer, 0) + amount
        raw[campaign] = quadratic_raw(list(totals.values()))
    # A whole number of minor units, so a capped campaign gets exactly the cap.
    cap = Fraction(pool * max_share_bp // 10_000 if max_share_bp is not None else pool)
    shares = {campaign: Fraction(0) for campaign in raw}
    open_ = {campaign for campaign, value in raw.items() if value}  # raw is never negative
    remaining = Fraction(pool)
    while open_:
        total = sum(raw[c] for c in open_)
        proposed = {c: remaining * raw[c] / total for c in open_}
        over = {c for c, share in proposed.items() if share > cap}
        if not over:
            shares.update(proposed)
            break
        for campaign in over:
            shares[campaign] = cap
            remaining -= cap
        open_ -= over
    return _largest_remainders(shares)


def capped_matches(
    pledges: list[tuple[str, str, int]],
    pool: int,
    *,
    ratio_bp: int = 10_000,
    per_pledge: int | None = None,
    per_backer: int | None = None,
    per_campaign: int | None = None,
) -> dict[str, int]:
    """Each campaign's match from (campaign, backer tag, amount) pledges in the order
    they were charged: each is matched at ratio_bp/10 000 (rounded down), up to the
    cap per pledge, what is left of the backer's cap on that campaign and of the
    campaign's cap, and what is left of the pool. First charged, first matched."""
    matches: dict[str, int] = {}
    by_backer: dict[tuple[str, str], int] = {}
    left = pool
    for campaign, backer, amount in pledges:
        match = amount * ratio_bp // 10_000
        if per_pledge is not None:
            match = min(match, per_pledge)
        if per_backer is not None:
            match = min(match, per_backer - by_backer.get((campaign, backer), 0))
        if per_campaign is not None:
            match = min(match, per_campaign - matches.get(campaign, 0))
        match = max(0, min(match, left))
        matches[campaign] = matches.get(campaign, 0) + match
        by_backer[(campaign, backer)] = by_backer.get((campaign, backer), 0) + match
        left -= match
    return matches


# ---- The `round` command --------------------------------------------------------------


def _load(source: str) -> dict:
    """A JSON document from a file, or downloaded from an http(s) address."""
    if source.startswith(("https://", "http://")):
        from urllib.request import urlopen

        with urlopen(source, timeout=60) as response:  # noqa: S310 - the auditor's own URL
            return json.load(response)
    with open(source, encoding="utf-8") as f:
        return json.load(f)


def recompute_round(document: dict) -> dict[str, int]:
    """Every campaign's match, from the round's published contributions and parameters."""
    parameters = document["parameters"]
    pool = document["pool"]["amount"]
    campaigns = document["campaigns"]
    for campaign in campaigns:
        for row in campaign["contributions"]:
            if not isinstance(row["amount"], int) or row["amount"] < 0:
                raise VerificationError(f"{campaign['slug']}: an amount is not a whole number")
    if document["rule"] == "quadratic":
        found = quadratic_matches(
            {
                c["slug"]: [(r["backer"], r["amount"]) for r in c["contributions"]]
                for c in campaigns
            },
            pool,
            max_share_bp=parameters.get("max_share_bp"),
            min_contribution=parameters.get("min_contribution") or 0,
        )
    elif document["rule"] == "capped_match":
        ordered = sorted(
            (r["order"], c["slug"], r["backer"], r["amount"])
            for c in campaigns
            for r in c["contributions"]
        )
        found = capped_matches(
            [(slug, backer, amount) for _order, slug, backer, amount in ordered],
            pool,
            ratio_bp=parameters["ratio_bp"],
            per_pledge=parameters.get("per_pledge"),
            per_backer=parameters.get("per_backer"),
            per_campaign=parameters.get("per_campaign"),
        )
    else:
        raise VerificationError(f"unknown rule {document['rule']!r}")
    return {c["slug"]: found.get(c["slug"], 0) for c in campaigns}


def check_round(document: dict, entries: list[dict] | None) -> dict[str, int]:
    """The published matches equal the recomputed ones and sum to at most the pool;
    with the ledger's entries, a final round's pool is what was paid into its account
    and each match is exactly one ledger transaction from the pool to the campaign."""
    found = recompute_round(document)
    for campaign in document["campaigns"]:
        if campaign["match"] != found[campaign["slug"]]:
            raise VerificationError(
                f"{campaign['slug']}: published match {campaign['match']}, "
                f"recomputed {found[campaign['slug']]}"
            )
    pool = document["pool"]["amount"]
    if sum(found.values()) > pool:
        raise VerificationError(f"the matches sum to {sum(found.values())}, above the pool {pool}")
    if entries is not None:
        _check_round_on_ledger(document, entries)
    return found


def _pool_movements(document: dict, entries: list[dict]) -> tuple[int, dict[str, list[dict]]]:
    """What the ledger paid into the round's account, and each campaign's transactions
    out of it."""
    account, currency = document["account"], document["currency"]
    paid_in = 0
    moved: dict[str, list[dict]] = defaultdict(list)
    for entry in entries:
        transaction = json.loads(base64.b64decode(entry["leaf"], validate=True))
        into_pool = sum(
            p["amount"]
            for p in transaction["postings"]
            if p["account"] == account and p["currency"] == currency
        )
        if transaction["kind"] == "round_pool":
            paid_in += into_pool
        elif transaction["kind"] == "round_match" and into_pool:
            moved[transaction["campaign"]].append({"out": -into_pool, **transaction})
    return paid_in, moved


def _check_round_on_ledger(document: dict, entries: list[dict]) -> None:
    paid_in, moved = _pool_movements(document, entries)
    final = document["status"] == "final"
    pool = document["pool"]["amount"]
    if final and paid_in != pool:
        raise VerificationError(f"the ledger shows {paid_in} paid into the pool, not {pool}")
    for campaign in document["campaigns"]:
        slug, match = campaign["slug"], campaign["match"]
        transactions = moved.pop(slug, [])
        if not final:
            if transactions:
                raise VerificationError(f"{slug}: matched on the ledger before the round is final")
            continue
        if match == 0 and not transactions:
            continue
        if len(transactions) != 1 or transactions[0]["out"] != match:
            raise VerificationError(
                f"{slug}: the ledger moves {[t['out'] for t in transactions]} from the pool, "
                f"the round says {match}"
            )
        if transactions[0]["reference"] != campaign.get("ledger_reference"):
            raise VerificationError(f"{slug}: the ledger's entry has another reference")
    if moved:
        raise VerificationError(f"the pool paid campaigns outside the round: {sorted(moved)}")


def round_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="counterfund_verify.py round",
        description="Recompute a matching round's matches from its published inputs.",
    )
    parser.add_argument("round", help="the round's JSON: a file, or /api/v1/rounds/<id>")
    parser.add_argument("--export", help="the ledger's JSON export (a file or /ledger/export.json)")
    parser.add_argument("--key", help="the published verifier key (checks the export)")
    parser.add_argument("--checkpoint", help="a signed checkpoint file (checks the export)")
    args = parser.parse_args(argv)
    try:
        document = _load(args.round)
        entries = None
        if args.export:
            entries = _load(args.export)["entries"]
            if args.key and args.checkpoint:
                with open(args.checkpoint, encoding="utf-8") as f:
                    origin, size, root = verify_checkpoint(f.read(), args.key)
                check_export(entries, size, root)
                print(f"export: {size} entries of {origin} re-hashed; root matches")
        found = check_round(document, entries)
        print(
            f"round {document['id']} ({document['rule']}, {document['status']}): "
            f"{len(found)} campaigns, matches recomputed, {sum(found.values())} of "
            f"{document['pool']['amount']} {document['currency']}"
        )
        if entries is not None:
            print(
                "ledger: "
                + (
                    "each match is its entry"
                    if document["status"] == "final"
                    else "no match moved before the round is final"
                )
            )
    except (VerificationError, KeyError, ValueError, TypeError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print("OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["round"]:
        return round_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", required=True, help="the published verifier key")
    parser.add_argument("--checkpoint", required=True, help="a signed checkpoint file")
    parser.add_argument("--export", help="a JSON export of the ledger")
    parser.add_argument("--inclusion", help="an inclusion proof (JSON)")
    parser.add_argument("--old-checkpoint", help="an earlier signed checkpoint")
    parser.add_argument("--consistency", help="a consistency proof (JSON) old → new")
    parser.add_argument(
        "--batch-line",
        help="one line of a batch disbursement (JSON, from its committee): checked against "
        "the list's commitment, and with --export, the commitment against the ledger",
    )
    args = parser.parse_args(argv)
    try:
        with open(args.checkpoint, encoding="utf-8") as f:
            origin, size, root = verify_checkpoint(f.read(), args.key)
        print(f"checkpoint: signature valid; {origin}, {size} entries")
        if args.export:
            with open(args.export, encoding="utf-8") as f:
                export = json.load(f)
            check_export(export["entries"], size, root)
            print(f"export: {len(export['entries'])} entries re-hashed; balanced; root matches")
        if args.inclusion:
            with open(args.inclusion, encoding="utf-8") as f:
                proof = json.load(f)
            if proof["size"] != size:
                raise VerificationError("the inclusion proof is for another tree size")
            leaf = leaf_hash(base64.b64decode(proof["leaf"], validate=True))
            verify_inclusion(proof["index"], size, leaf, _b64list(proof["proof"]), root)
            print(f"inclusion: entry {proof['index']} is in the signed tree")
        if args.batch_line:
            with open(args.batch_line, encoding="utf-8") as f:
                line = json.load(f)
            check_batch_line(line, export["entries"] if args.export else None)
            print(f"batch line: line {line['index'] + 1} of {line['size']} is in the batch")
        if args.consistency:
            if not args.old_checkpoint:
                raise VerificationError("--consistency needs --old-checkpoint")
            with open(args.old_checkpoint, encoding="utf-8") as f:
                old_origin, old_size, old_root = verify_checkpoint(f.read(), args.key)
            if old_origin != origin:
                raise VerificationError("the two checkpoints are of different logs")
            with open(args.consistency, encoding="utf-8") as f:
                proof = json.load(f)
            verify_consistency(old_size, size, old_root, root, _b64list(proof["proof"]))
            print(f"consistency: the tree of {size} extends the tree of {old_size}")
    except (VerificationError, KeyError, ValueError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
