#!/usr/bin/env python3
"""Generates norm_tables.c, the reference tables of common/norm.c.

Usage: gen_tables.py OUT.c usps_suffixes.tsv usps_units.tsv directionals.tsv
                     nicknames.csv states.tsv

The tables are compiled into the library rather than read at run time so the
shipped binaries need no data path, and they are sorted bytewise here so norm.c
can bsearch them with strcmp order.  Any surprise in the data (a key mapped two
ways, a malformed row) stops the build: a silently wrong table would change
index keys.
"""

import csv
import re
import sys


def fail(msg):
    sys.exit(f"gen_tables.py: {msg}")


def read_tsv(path, min_cols):
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().splitlines()
    if not lines:
        fail(f"{path}: empty")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < min_cols:
            fail(f"{path}:{n}: expected {min_cols} columns")
        rows.append((n, [c.strip() for c in cols]))
    return rows


def byte_key(s):
    # strcmp compares unsigned bytes; sorting code points agrees only for ASCII.
    return s.encode("utf-8")


def c_str(s):
    out = ['"']
    for b in s.encode("utf-8"):
        ch = chr(b)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= b < 0x7F:
            out.append(ch)
        else:
            # Octal escapes cannot swallow a following hex digit the way \x can.
            out.append(f"\\{b:03o}")
    out.append('"')
    return "".join(out)


WORD = re.compile(r"^[A-Z0-9#]+$")


def add_unique(table, key, value, where):
    if key in table and table[key] != value:
        fail(f"{where}: {key!r} maps to both {table[key]!r} and {value!r}")
    table[key] = value


def load_suffixes(path):
    # Each entry: standard abbreviation and the primary (spelled-out) name,
    # which Pub 28 234.2 writes when a suffix word is part of the name.
    table = {}
    for n, cols in read_tsv(path, 3):
        variant, std, full = cols[0].upper(), cols[1].upper(), cols[2].upper()
        if not WORD.match(variant) or not WORD.match(std) or not WORD.match(full):
            fail(f"{path}:{n}: not a single word")
        add_unique(table, variant, (std, 0, full), f"{path}:{n}")
    for std, _, full in list(table.values()):
        # An address already in standard form must stay as it is.
        table.setdefault(std, (std, 0, full))
    return table


def load_units(path):
    table = {}
    for n, cols in read_tsv(path, 3):
        name, abbr, needs = cols[0].upper(), cols[1].upper(), cols[2].lower()
        if needs not in ("yes", "no"):
            fail(f"{path}:{n}: requires_range must be yes or no")
        entry = (abbr, 1 if needs == "yes" else 0, abbr)
        if abbr == "#":
            # The pound sign row has no designator word; '#' itself is the key.
            add_unique(table, "#", entry, f"{path}:{n}")
            continue
        if not WORD.match(name) or not WORD.match(abbr):
            fail(f"{path}:{n}: not a single word")
        add_unique(table, name, entry, f"{path}:{n}")
        add_unique(table, abbr, entry, f"{path}:{n}")
    return table


def load_directionals(path):
    table = {}
    for n, cols in read_tsv(path, 3):
        word, abbr, lang = cols[0].upper(), cols[1].upper(), cols[2].lower()
        # Spanish words (SUR, ESTE, OESTE) are ordinary name words in English
        # addresses, and the ZIP+4 file writes them with English letters anyway,
        # so only the English directionals are abbreviated.
        if lang != "en":
            continue
        if not WORD.match(word) or not WORD.match(abbr):
            fail(f"{path}:{n}: not a single word")
        add_unique(table, word, (abbr, 0, word), f"{path}:{n}")
        add_unique(table, abbr, (abbr, 0, word), f"{path}:{n}")
    return table


def load_states(path):
    names, codes = {}, set()
    for n, cols in read_tsv(path, 2):
        name = " ".join(cols[0].upper().split())
        code = cols[1].upper()
        if not re.match(r"^[A-Z]{2}$", code):
            fail(f"{path}:{n}: code must be two letters")
        if not re.match(r"^[A-Z ]+$", name):
            fail(f"{path}:{n}: name must be letters and spaces")
        add_unique(names, name, (code, 0, code), f"{path}:{n}")
        codes.add(code)
    for code in codes:
        # A code typed as such ("OR") is accepted like a name.
        add_unique(names, code, (code, 0, code), f"{path}: code {code}")
    return names, len(codes)


def norm_nick(s):
    # The ASCII subset of idl_norm_name: lower-case, punctuation other than
    # '-' and '\'' removed ("k.c." -> "kc"), spaces collapsed.
    s = s.strip().lower()
    s = re.sub(r"[^a-z0-9\-' ]", "", s)
    return " ".join(s.split())


def load_nicknames(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip().lower() for c in rows[0]] != ["name1", "relationship", "name2"]:
        fail(f"{path}: expected header name1,relationship,name2")
    canon_of = {}
    for n, cols in enumerate(rows[1:], start=2):
        if not cols:
            continue
        if len(cols) != 3:
            fail(f"{path}:{n}: expected 3 columns")
        if cols[1].strip() != "has_nickname":
            fail(f"{path}:{n}: unknown relationship {cols[1]!r}")
        name, nick = norm_nick(cols[0]), norm_nick(cols[2])
        if not name or not nick:
            fail(f"{path}:{n}: empty name")
        canon_of.setdefault(name, set()).add(name)
        canon_of.setdefault(nick, set()).add(name)
    return canon_of


def emit_abbr(out, cname, table):
    keys = sorted(table, key=byte_key)
    out.append(f"const idl_abbr {cname}[] = {{")
    for k in keys:
        abbr, needs_value, full = table[k]
        out.append(f"    {{{c_str(k)}, {c_str(abbr)}, {c_str(full)}, {needs_value}}},")
    out.append("};")
    out.append(f"const size_t {cname}_len = {len(keys)};")
    out.append("")


def main(argv):
    if len(argv) != 7:
        fail("usage: gen_tables.py OUT.c suffixes.tsv units.tsv directionals.tsv "
             "nicknames.csv states.tsv")
    out_path, suf_path, unit_path, dir_path, nick_path, state_path = argv[1:]
    suffixes = load_suffixes(suf_path)
    units = load_units(unit_path)
    directionals = load_directionals(dir_path)
    states, state_codes = load_states(state_path)
    canon_of = load_nicknames(nick_path)

    if state_codes != 56:
        fail(f"{state_path}: expected 56 codes (50 states, DC, 5 territories), got {state_codes}")
    canonical = {c for cs in canon_of.values() for c in cs}
    if len(canonical) < 200:
        fail(f"{nick_path}: only {len(canonical)} nickname groups")

    names = sorted(canon_of, key=byte_key)
    index = {name: i for i, name in enumerate(names)}
    if len(names) > 0xFFFF:
        fail("too many names for uint16_t indexes")

    out = [
        "/* Generated by common/gen_tables.py from data/; do not edit. */",
        '#include "norm_tables.h"',
        "",
    ]
    emit_abbr(out, "idl_suffixes", suffixes)
    emit_abbr(out, "idl_units", units)
    emit_abbr(out, "idl_directionals", directionals)
    emit_abbr(out, "idl_states", states)

    canon_flat, entries, most = [], [], 0
    for name in names:
        # The name itself is reported first by idl_nick_groups, so it is left
        # out of its own list.
        groups = sorted((c for c in canon_of[name] if c != name), key=byte_key)
        entries.append((name, len(canon_flat), len(groups)))
        canon_flat.extend(index[g] for g in groups)
        most = max(most, len(groups) + 1)
    if len(canon_flat) > 0xFFFF:
        fail("too many nickname links for uint16_t indexes")

    out.append("const idl_nick_name idl_nick_names[] = {")
    for name, first, count in entries:
        out.append(f"    {{{c_str(name)}, {first}, {count}}},")
    out.append("};")
    out.append(f"const size_t idl_nick_names_len = {len(entries)};")
    out.append("")
    out.append("const uint16_t idl_nick_canon[] = {")
    for i in range(0, len(canon_flat), 12):
        out.append("    " + " ".join(f"{v}," for v in canon_flat[i:i + 12]))
    if not canon_flat:
        out.append("    0,")
    out.append("};")
    out.append(f"const size_t idl_nick_max_groups = {most};")
    out.append("")

    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main(sys.argv)
