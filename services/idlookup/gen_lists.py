#!/usr/bin/env python3
"""Turns the frequency lists of data/gen/ into C tables for `idlookup gen`.

Usage: gen_lists.py OUT.c OUT.h FILE.tsv...

The TSV files are named by their base names (see data/gen/README.md for what
each holds and where it comes from).  Every list becomes a const array whose
entries carry the running total of the weights (`cum`), so the generator draws
an entry with one random number and a binary search.  The input is checked
here, at build time, so the C code can trust it: a malformed file stops the
build with a message naming the file and line.
"""

import math
import sys
from pathlib import Path

REQUIRED = {
    'surnames.tsv': ['name', 'count'],
    'given_male.tsv': ['name', 'percent'],
    'given_female.tsv': ['name', 'percent'],
    'name_spellings.tsv': ['name', 'display', 'accented'],
    'street_names.tsv': ['name', 'weight'],
    'street_suffixes.tsv': ['suffix', 'abbreviation', 'weight'],
    'cities.tsv': ['city', 'state', 'zip', 'area_code', 'weight'],
    'states.tsv': ['code', 'name'],
    'email_domains.tsv': ['domain', 'kind', 'weight'],
}

DOMAIN_KINDS = {'plain': 'IDL_GEN_DOMAIN_PLAIN', 'gmail': 'IDL_GEN_DOMAIN_GMAIL',
                'work': 'IDL_GEN_DOMAIN_WORK'}

MAX_FIELD = 63          # every string must fit a uint8_t length with room to spare
MAX_TOTAL = 2**32 - 1   # running totals are uint32_t


class DataError(Exception):
    pass


def read_tsv(path, columns):
    """Returns the rows of a TSV file as (line number, dict) pairs, checking
    the header and the number of fields."""
    rows = []
    with open(path, encoding='utf-8', newline='') as f:
        lines = f.read().split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    if not lines:
        raise DataError(f'{path}: empty file')
    header = lines[0].rstrip('\r').split('\t')
    if header != columns:
        raise DataError(f'{path}:1: header is {header}, want {columns}')
    for no, line in enumerate(lines[1:], start=2):
        line = line.rstrip('\r')
        if line == '':
            raise DataError(f'{path}:{no}: empty line')
        fields = line.split('\t')
        if len(fields) != len(columns):
            raise DataError(f'{path}:{no}: {len(fields)} fields, want {len(columns)}')
        rows.append((no, dict(zip(columns, fields))))
    if not rows:
        raise DataError(f'{path}: no rows')
    return rows


def check_text(path, no, text, allow_empty=False):
    if text == '' and not allow_empty:
        raise DataError(f'{path}:{no}: empty field')
    if text != text.strip():
        raise DataError(f'{path}:{no}: leading or trailing space in {text!r}')
    for ch in text:
        if ord(ch) < 0x20 or ch in '"\\' or ord(ch) == 0x7f:
            raise DataError(f'{path}:{no}: character {ch!r} not allowed in {text!r}')
    if len(text.encode('utf-8')) > MAX_FIELD:
        raise DataError(f'{path}:{no}: {text!r} is longer than {MAX_FIELD} bytes')
    return text


def positive_int(path, no, text):
    if not text.isdigit() or int(text) <= 0:
        raise DataError(f'{path}:{no}: weight {text!r} is not a positive integer')
    return int(text)


def percent_weight(path, no, text):
    """A percentage with three decimals ("3.318") as an integer weight."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f'{path}:{no}: percent {text!r} is not a number') from None
    weight = int(round(value * 1000))
    if not math.isfinite(value) or weight <= 0:
        raise DataError(f'{path}:{no}: percent {text!r} is not positive')
    return weight


def title_case(upper):
    """SMITH -> Smith, MCDONALD -> McDonald; exceptions come from name_spellings.tsv."""
    out = []
    start = True
    for ch in upper.lower():
        out.append(ch.upper() if start else ch)
        start = ch in " -'"
    word = ''.join(out)
    if len(word) > 2 and word.startswith('Mc'):
        word = 'Mc' + word[2].upper() + word[3:]
    return word


def email_letters(text):
    letters = ''.join(ch for ch in text.lower() if 'a' <= ch <= 'z')
    return letters


def c_string(text):
    """A C string literal; bytes outside printable ASCII as octal escapes
    (three digits, so a following digit cannot join the escape)."""
    if text is None:
        return 'NULL'
    out = ['"']
    for b in text.encode('utf-8'):
        if 0x20 <= b < 0x7f and b not in (0x22, 0x5c, 0x3f):
            out.append(chr(b))
        else:
            out.append('\\%03o' % b)
    out.append('"')
    return ''.join(out)


def blen(text):
    return 0 if text is None else len(text.encode('utf-8'))


def accumulate(path, weights):
    total = 0
    cums = []
    for w in weights:
        total += w
        cums.append(total)
    if total > MAX_TOTAL:
        raise DataError(f'{path}: weights add up to {total}, more than {MAX_TOTAL}')
    return cums


def load(files):
    rows = {name: read_tsv(path, cols) for name, (path, cols) in files.items()}

    # Spellings: display form and accented variant by upper-case source name.
    spellings = {}
    path = files['name_spellings.tsv'][0]
    for no, r in rows['name_spellings.tsv']:
        name = r['name']
        if not name.isalpha() or not name.isupper() or not name.isascii():
            raise DataError(f'{path}:{no}: name {name!r} is not upper-case ASCII letters')
        if name in spellings:
            raise DataError(f'{path}:{no}: {name} listed twice')
        display = check_text(path, no, r['display'])
        if not display.isascii():
            raise DataError(f'{path}:{no}: display form {display!r} must be ASCII')
        if email_letters(display) != name.lower():
            raise DataError(f'{path}:{no}: display form {display!r} does not spell {name}')
        accented = check_text(path, no, r['accented'], allow_empty=True) or None
        spellings[name] = (display, accented, no)
    used_spellings = set()

    def names(key):
        path = files[key][0]
        out = []
        seen = set()
        for no, r in rows[key]:
            name = r['name']
            if not name.isascii() or not name.isalpha() or not name.isupper():
                raise DataError(f'{path}:{no}: name {name!r} is not upper-case ASCII letters')
            if name in seen:
                raise DataError(f'{path}:{no}: {name} listed twice')
            seen.add(name)
            weight = (positive_int(path, no, r['count']) if 'count' in r
                      else percent_weight(path, no, r['percent']))
            display, accented = title_case(name), None
            if name in spellings:
                display, accented, _ = spellings[name]
                used_spellings.add(name)
            out.append({'plain': display, 'accented': accented,
                        'letters': email_letters(display), 'weight': weight})
        return out

    tables = {
        'surnames': names('surnames.tsv'),
        'given_male': names('given_male.tsv'),
        'given_female': names('given_female.tsv'),
    }
    for name, (_, _, no) in spellings.items():
        if name not in used_spellings:
            raise DataError(f'{files["name_spellings.tsv"][0]}:{no}: {name} is in no name list')

    path = files['states.tsv'][0]
    states = {}
    for no, r in rows['states.tsv']:
        code = r['code']
        if len(code) != 2 or not code.isalpha() or not code.isupper():
            raise DataError(f'{path}:{no}: state code {code!r}')
        states[code] = check_text(path, no, r['name'])

    path = files['cities.tsv'][0]
    cities = []
    seen = set()
    for no, r in rows['cities.tsv']:
        city = check_text(path, no, r['city'])
        state = r['state']
        if state not in states:
            raise DataError(f'{path}:{no}: unknown state {state!r}')
        if (city, state) in seen:
            raise DataError(f'{path}:{no}: {city}, {state} listed twice')
        seen.add((city, state))
        zip5 = r['zip']
        if len(zip5) != 5 or not zip5.isdigit() or zip5 == '00000':
            raise DataError(f'{path}:{no}: ZIP {zip5!r} is not five digits')
        ac = r['area_code']
        # NANP: NXX with N in 2-9, and not N11 (service codes).
        if len(ac) != 3 or not ac.isdigit() or ac[0] in '01' or ac[1:] == '11':
            raise DataError(f'{path}:{no}: area code {ac!r} is not a NANP NPA')
        cities.append({'city': city, 'state': state, 'state_name': states[state],
                       'zip': zip5, 'area_code': int(ac),
                       'weight': positive_int(path, no, r['weight'])})
    tables['cities'] = cities

    path = files['street_names.tsv'][0]
    streets = []
    for no, r in rows['street_names.tsv']:
        name = check_text(path, no, r['name'])
        if not name.isascii():
            raise DataError(f'{path}:{no}: street name {name!r} must be ASCII')
        streets.append({'name': name, 'weight': positive_int(path, no, r['weight'])})
    tables['street_names'] = streets

    path = files['street_suffixes.tsv'][0]
    suffixes = []
    for no, r in rows['street_suffixes.tsv']:
        full = check_text(path, no, r['suffix'])
        abbr = check_text(path, no, r['abbreviation'])
        if not (full + abbr).isascii() or not (full + abbr).isalpha():
            raise DataError(f'{path}:{no}: suffix must be ASCII letters')
        suffixes.append({'full': full, 'abbr': abbr,
                         'weight': positive_int(path, no, r['weight'])})
    tables['street_suffixes'] = suffixes

    path = files['email_domains.tsv'][0]
    domains = []
    for no, r in rows['email_domains.tsv']:
        domain = check_text(path, no, r['domain'])
        labels = domain.split('.')
        if len(labels) < 2 or not all(
                lbl and lbl.isascii() and all(c.isalnum() or c == '-' for c in lbl)
                and not lbl.startswith('-') and not lbl.endswith('-') for lbl in labels):
            raise DataError(f'{path}:{no}: {domain!r} is not a domain name')
        if domain != domain.lower():
            raise DataError(f'{path}:{no}: write {domain!r} in lower case')
        kind = r['kind']
        if kind not in DOMAIN_KINDS:
            raise DataError(f'{path}:{no}: kind {kind!r}, want one of {sorted(DOMAIN_KINDS)}')
        domains.append({'domain': domain, 'kind': kind,
                        'weight': positive_int(path, no, r['weight'])})
    tables['email_domains'] = domains

    for key, entries in tables.items():
        cums = accumulate(key, [e['weight'] for e in entries])
        for e, c in zip(entries, cums):
            e['cum'] = c
    return tables


HEADER = '''\
/* Generated by services/idlookup/gen_lists.py from the TSV files of data/gen/; do not edit.
 *
 * The frequency lists of `idlookup gen`.  Each array is in file order and each
 * entry's `cum` is the running total of the weights up to and including it, so
 * the last entry's `cum` is the list's total.  All strings are static, valid
 * UTF-8, and hold no character that JSON must escape; lengths are in bytes.
 */
#ifndef IDL_GEN_LISTS_H
#define IDL_GEN_LISTS_H

#include <stddef.h>
#include <stdint.h>

/* A person's name: the display form (ASCII, "O'Brien"), an optional accented
 * variant ("Peña", or NULL), and its lower-case letters for e-mail addresses. */
typedef struct {
    const char *plain;
    const char *accented;
    const char *letters;
    uint8_t plain_len, accented_len, letters_len;
    uint32_t cum;
} idl_gen_name;

/* A street name ("Maple", "Country Club"). */
typedef struct {
    const char *name;
    uint8_t len;
    uint32_t cum;
} idl_gen_street;

/* A street suffix spelled out and as its USPS Pub 28 abbreviation. */
typedef struct {
    const char *full;
    const char *abbr;
    uint8_t full_len, abbr_len;
    uint32_t cum;
} idl_gen_suffix;

/* A city with its state (code and name), a ZIP code and a local area code. */
typedef struct {
    const char *city;
    const char *state;
    const char *state_name;
    const char *zip;
    uint8_t city_len, state_name_len;
    uint16_t area_code;
    uint32_t cum;
} idl_gen_city;

enum { IDL_GEN_DOMAIN_PLAIN, IDL_GEN_DOMAIN_GMAIL, IDL_GEN_DOMAIN_WORK };

/* An e-mail domain and how addresses on it look (kind above). */
typedef struct {
    const char *domain;
    uint8_t len;
    uint8_t kind;
    uint32_t cum;
} idl_gen_domain;

'''


def render(tables):
    decls = [
        ('surnames', 'idl_gen_name'), ('given_male', 'idl_gen_name'),
        ('given_female', 'idl_gen_name'), ('street_names', 'idl_gen_street'),
        ('street_suffixes', 'idl_gen_suffix'), ('cities', 'idl_gen_city'),
        ('email_domains', 'idl_gen_domain'),
    ]
    h = [HEADER]
    for key, ctype in decls:
        macro = f'IDL_GEN_{key.upper()}_COUNT'
        h.append(f'#define {macro} {len(tables[key])}\n')
        h.append(f'extern const {ctype} idl_gen_{key}[{macro}];\n\n')
    h.append('#endif\n')

    c = ['/* Generated by services/idlookup/gen_lists.py from the TSV files of data/gen/; do not edit. */\n',
         '#include "gen_lists.h"\n\n']

    def emit(key, ctype, fmt):
        c.append(f'const {ctype} idl_gen_{key}[IDL_GEN_{key.upper()}_COUNT] = {{\n')
        for e in tables[key]:
            c.append('    {' + fmt(e) + '},\n')
        c.append('};\n\n')

    name_fmt = lambda e: (f'{c_string(e["plain"])}, {c_string(e["accented"])}, '
                          f'{c_string(e["letters"])}, {blen(e["plain"])}, '
                          f'{blen(e["accented"])}, {blen(e["letters"])}, {e["cum"]}u')
    emit('surnames', 'idl_gen_name', name_fmt)
    emit('given_male', 'idl_gen_name', name_fmt)
    emit('given_female', 'idl_gen_name', name_fmt)
    emit('street_names', 'idl_gen_street',
         lambda e: f'{c_string(e["name"])}, {blen(e["name"])}, {e["cum"]}u')
    emit('street_suffixes', 'idl_gen_suffix',
         lambda e: (f'{c_string(e["full"])}, {c_string(e["abbr"])}, '
                    f'{blen(e["full"])}, {blen(e["abbr"])}, {e["cum"]}u'))
    emit('cities', 'idl_gen_city',
         lambda e: (f'{c_string(e["city"])}, {c_string(e["state"])}, '
                    f'{c_string(e["state_name"])}, {c_string(e["zip"])}, '
                    f'{blen(e["city"])}, {blen(e["state_name"])}, {e["area_code"]}, {e["cum"]}u'))
    emit('email_domains', 'idl_gen_domain',
         lambda e: (f'{c_string(e["domain"])}, {blen(e["domain"])}, '
                    f'{DOMAIN_KINDS[e["kind"]]}, {e["cum"]}u'))
    return ''.join(c), ''.join(h)


def main(argv):
    if len(argv) < 4:
        print('usage: gen_lists.py OUT.c OUT.h FILE.tsv...', file=sys.stderr)
        return 2
    out_c, out_h, inputs = argv[1], argv[2], argv[3:]
    files = {}
    for p in inputs:
        base = Path(p).name
        if base not in REQUIRED:
            print(f'gen_lists.py: unexpected input {p}', file=sys.stderr)
            return 2
        files[base] = (p, REQUIRED[base])
    missing = sorted(set(REQUIRED) - set(files))
    if missing:
        print(f'gen_lists.py: missing inputs: {", ".join(missing)}', file=sys.stderr)
        return 2
    try:
        tables = load(files)
    except (DataError, OSError, UnicodeDecodeError) as e:
        print(f'gen_lists.py: {e}', file=sys.stderr)
        return 1
    text_c, text_h = render(tables)
    Path(out_c).write_text(text_c, encoding='utf-8')
    Path(out_h).write_text(text_h, encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
