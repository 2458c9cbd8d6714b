/* Shape checker: turns schemas/api.json into a small tree of parsed types once, then walks
 * decoded msgpack values against it.  Loading is strict (unknown spec keys, type names or
 * bad ranges are refused) so that a typo in the schema fails loudly instead of silently
 * accepting anything.
 */
#include "shape.h"

#include "status.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The seen-bitmap of a named type is a fixed array, so its width bounds the fields. */
#define SHAPE_MAX_FIELDS 64
/* A union of more alternatives than this is a schema mistake, not a need. */
#define SHAPE_MAX_ALTS 4
/* Values nest no deeper than the schema does; a peer's deeper value is refused, not
 * followed, so a hostile reply cannot exhaust the stack. */
#define SHAPE_MAX_DEPTH 32

typedef enum {
    K_STR,
    K_UINT,
    K_INT,
    K_FLOAT,
    K_BOOL,
    K_NIL,
    K_ANY_MAP,
    K_MAP,
    K_ARRAY,
    K_NAMED,
    K_UNION,
} shape_kind;

typedef struct shape_type shape_type;
typedef struct shape_struct shape_struct;

struct shape_type {
    shape_kind kind;
    char *text;                             /* the type as written, for messages */
    const shape_type *elem;                 /* K_MAP values, K_ARRAY elements */
    const shape_struct *named;              /* K_NAMED */
    const shape_type *alts[SHAPE_MAX_ALTS]; /* K_UNION */
    size_t nalts;
    shape_type *next; /* every node is on the schema's list and freed with it */
};

/* Constraints of one field; enum alone travels down into elements and map values. */
typedef struct {
    const json_t *enum_values; /* array of str, or NULL */
    const json_t *keys;        /* array of str, or NULL */
    bool has_range;
    double lo, hi;
} shape_limits;

typedef struct {
    const char *name; /* borrowed from the schema's JSON, like every string here */
    const shape_type *type;
    bool required;
    shape_limits limits;
} shape_field;

struct shape_struct {
    const char *name;
    shape_field *fields;
    size_t nfields;
};

typedef struct {
    const char *name;
    const char *scope;
    shape_struct request, response;
} shape_method;

typedef struct {
    int code;
    const char *name;
} shape_code;

struct shape_schema {
    json_t *root;
    shape_struct *types;
    size_t ntypes;
    shape_struct env_request, env_reply;
    shape_method *methods;
    size_t nmethods;
    shape_code *codes;
    size_t ncodes;
    shape_type *nodes;
};

/* ---- loading ------------------------------------------------------------------------ */

typedef struct {
    shape_schema *s;
    const char *where; /* e.g. "types.Person.age", for messages */
    const char *text;  /* the whole type string */
    const char *p;     /* parse position */
    char *err;
    int status; /* why parsing stopped: IDL_INVALID_ARGUMENT or IDL_INTERNAL */
} type_parser;

static int load_fail(char *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int load_fail(char *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, 256, fmt, ap);
    va_end(ap);
    return status;
}

static int parse_error(type_parser *tp, const char *what)
{
    tp->status = IDL_INVALID_ARGUMENT;
    return load_fail(tp->err, IDL_INVALID_ARGUMENT, "%s: type '%s': %s at offset %d", tp->where,
                     tp->text, what, (int)(tp->p - tp->text));
}

static int new_node(type_parser *tp, shape_kind kind, const char *start, shape_type **out)
{
    shape_type *t = calloc(1, sizeof *t);
    if (!t) goto fail;
    t->text = strndup(start, (size_t)(tp->p - start));
    if (!t->text) goto fail;
    t->kind = kind;
    t->next = tp->s->nodes;
    tp->s->nodes = t;
    *out = t;
    return 0;
fail:
    free(t);
    tp->status = IDL_INTERNAL;
    return load_fail(tp->err, IDL_INTERNAL, "%s: out of memory", tp->where);
}

static const shape_struct *find_struct(const shape_struct *v, size_t n, const char *name,
                                       size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i].name) == len && memcmp(v[i].name, name, len) == 0) return &v[i];
    return NULL;
}

static int parse_union(type_parser *tp, const shape_type **out);

static int expect(type_parser *tp, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(tp->p, lit, n) != 0) {
        char what[32];
        snprintf(what, sizeof what, "expected '%s'", lit);
        return parse_error(tp, what);
    }
    tp->p += n;
    return 0;
}

/* alt := scalar | "map" | "map<str," type ">" | "array<" type ">" | TypeName */
static int parse_alt(type_parser *tp, const shape_type **out)
{
    static const struct {
        const char *word;
        shape_kind kind;
    } scalars[] = {{"str", K_STR},     {"uint", K_UINT}, {"int", K_INT},
                   {"float", K_FLOAT}, {"bool", K_BOOL}, {"nil", K_NIL}};
    const char *start = tp->p;
    size_t len = 0;
    while ((start[len] >= 'a' && start[len] <= 'z') || (start[len] >= 'A' && start[len] <= 'Z') ||
           (start[len] >= '0' && start[len] <= '9') || start[len] == '_')
        len++;
    if (len == 0) return parse_error(tp, "expected a type");
    tp->p += len;

    shape_type *t = NULL;
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        if (strlen(scalars[i].word) == len && memcmp(scalars[i].word, start, len) == 0) {
            if (new_node(tp, scalars[i].kind, start, &t)) return tp->status;
            *out = t;
            return 0;
        }
    }
    if (len == 3 && memcmp(start, "map", 3) == 0) {
        const shape_type *elem = NULL;
        if (*tp->p != '<') {
            if (new_node(tp, K_ANY_MAP, start, &t)) return tp->status;
            *out = t;
            return 0;
        }
        if (expect(tp, "<str,") || parse_union(tp, &elem) || expect(tp, ">")) return tp->status;
        if (new_node(tp, K_MAP, start, &t)) return tp->status;
        t->elem = elem;
        *out = t;
        return 0;
    }
    if (len == 5 && memcmp(start, "array", 5) == 0) {
        const shape_type *elem = NULL;
        if (expect(tp, "<") || parse_union(tp, &elem) || expect(tp, ">")) return tp->status;
        if (new_node(tp, K_ARRAY, start, &t)) return tp->status;
        t->elem = elem;
        *out = t;
        return 0;
    }
    const shape_struct *named = find_struct(tp->s->types, tp->s->ntypes, start, len);
    if (!named) {
        tp->p = start;
        tp->status = IDL_INVALID_ARGUMENT;
        return load_fail(tp->err, IDL_INVALID_ARGUMENT, "%s: unknown type name '%.*s'", tp->where,
                         (int)len, start);
    }
    if (new_node(tp, K_NAMED, start, &t)) return tp->status;
    t->named = named;
    *out = t;
    return 0;
}

/* type := alt ("|" alt)*; nil only as one alternative of several, none twice. */
static int parse_union(type_parser *tp, const shape_type **out)
{
    const char *start = tp->p;
    const shape_type *alts[SHAPE_MAX_ALTS];
    size_t n = 0;
    for (;;) {
        if (n == SHAPE_MAX_ALTS) return parse_error(tp, "too many alternatives");
        if (parse_alt(tp, &alts[n])) return tp->status;
        for (size_t i = 0; i < n; i++)
            if (strcmp(alts[i]->text, alts[n]->text) == 0)
                return parse_error(tp, "alternative given twice");
        n++;
        if (*tp->p != '|') break;
        tp->p++;
    }
    if (n == 1) {
        if (alts[0]->kind == K_NIL) return parse_error(tp, "nil outside a union");
        *out = alts[0];
        return 0;
    }
    shape_type *u = NULL;
    if (new_node(tp, K_UNION, start, &u)) return tp->status;
    memcpy(u->alts, alts, n * sizeof alts[0]);
    u->nalts = n;
    *out = u;
    return 0;
}

static int parse_type_string(shape_schema *s, const char *where, const char *text,
                             const shape_type **out, char *err)
{
    type_parser tp = {.s = s, .where = where, .text = text, .p = text, .err = err};
    const shape_type *t = NULL;
    if (parse_union(&tp, &t)) return tp.status;
    if (*tp.p != '\0') return parse_error(&tp, "trailing characters");
    *out = t;
    return 0;
}

/* Whether a value of t can be a str somewhere below it (through unions, arrays and map
 * values, not into named types): where an enum can apply. */
static bool reaches_str(const shape_type *t)
{
    switch (t->kind) {
    case K_STR:
        return true;
    case K_ARRAY:
    case K_MAP:
        return reaches_str(t->elem);
    case K_UNION:
        for (size_t i = 0; i < t->nalts; i++)
            if (reaches_str(t->alts[i])) return true;
        return false;
    default:
        return false;
    }
}

/* Whether t itself (or one of its alternatives) is of one of the kinds in mask. */
static bool top_is(const shape_type *t, unsigned mask)
{
    if (t->kind == K_UNION) {
        for (size_t i = 0; i < t->nalts; i++)
            if (top_is(t->alts[i], mask)) return true;
        return false;
    }
    return (mask >> t->kind) & 1u;
}

static bool is_str_array(const json_t *v)
{
    size_t i;
    const json_t *e;
    if (!json_is_array(v) || json_array_size(v) == 0) return false;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e)) return false;
    }
    return true;
}

static int parse_field(shape_schema *s, const char *where, const char *name, json_t *spec,
                       shape_field *f, char *err)
{
    const char *key;
    json_t *v;
    if (!json_is_object(spec))
        return load_fail(err, IDL_INVALID_ARGUMENT, "%s: field spec is not an object", where);
    json_t *type = json_object_get(spec, "type");
    json_t *required = json_object_get(spec, "required");
    json_t *meaning = json_object_get(spec, "meaning");
    if (!json_is_string(type))
        return load_fail(err, IDL_INVALID_ARGUMENT, "%s: \"type\" missing or not a string", where);
    if (!json_is_boolean(required))
        return load_fail(err, IDL_INVALID_ARGUMENT, "%s: \"required\" missing or not a bool",
                         where);
    if (!json_is_string(meaning) || json_string_length(meaning) == 0)
        return load_fail(err, IDL_INVALID_ARGUMENT, "%s: \"meaning\" missing or empty", where);

    shape_field out = {.name = name, .required = json_is_true(required)};
    int rc = parse_type_string(s, where, json_string_value(type), &out.type, err);
    if (rc) return rc;

    json_object_foreach(spec, key, v)
    {
        if (!strcmp(key, "type") || !strcmp(key, "required") || !strcmp(key, "meaning") ||
            !strcmp(key, "default"))
            continue;
        if (!strcmp(key, "enum")) {
            if (!is_str_array(v) || !reaches_str(out.type))
                return load_fail(err, IDL_INVALID_ARGUMENT,
                                 "%s: \"enum\" must be strings, on a type holding str", where);
            out.limits.enum_values = v;
        } else if (!strcmp(key, "keys")) {
            if (!is_str_array(v) || !top_is(out.type, 1u << K_MAP))
                return load_fail(err, IDL_INVALID_ARGUMENT,
                                 "%s: \"keys\" must be strings, on a map<str,T>", where);
            out.limits.keys = v;
        } else if (!strcmp(key, "range")) {
            unsigned ranged = 1u << K_UINT | 1u << K_INT | 1u << K_FLOAT | 1u << K_ARRAY;
            if (!json_is_array(v) || json_array_size(v) != 2 ||
                !json_is_number(json_array_get(v, 0)) || !json_is_number(json_array_get(v, 1)) ||
                !top_is(out.type, ranged))
                return load_fail(err, IDL_INVALID_ARGUMENT,
                                 "%s: \"range\" must be [lo, hi], on a number or array", where);
            out.limits.has_range = true;
            out.limits.lo = json_number_value(json_array_get(v, 0));
            out.limits.hi = json_number_value(json_array_get(v, 1));
            if (out.limits.lo > out.limits.hi)
                return load_fail(err, IDL_INVALID_ARGUMENT, "%s: range has lo > hi", where);
        } else {
            return load_fail(err, IDL_INVALID_ARGUMENT, "%s: unknown spec key \"%s\"", where, key);
        }
    }
    *f = out;
    return 0;
}

/* Fills st from a shape object (field name -> spec).  st->name must be set already. */
static int parse_shape(shape_schema *s, const char *where, json_t *obj, shape_struct *st, char *err)
{
    const char *name;
    json_t *spec;
    size_t i = 0;
    if (!json_is_object(obj))
        return load_fail(err, IDL_INVALID_ARGUMENT, "%s: not an object", where);
    if (json_object_size(obj) > SHAPE_MAX_FIELDS)
        return load_fail(err, IDL_INVALID_ARGUMENT, "%s: more than %d fields", where,
                         SHAPE_MAX_FIELDS);
    /* calloc(0) may return NULL; one spare slot keeps "NULL means out of memory" true. */
    st->fields = calloc(json_object_size(obj) + 1, sizeof st->fields[0]);
    if (!st->fields) return load_fail(err, IDL_INTERNAL, "%s: out of memory", where);
    json_object_foreach(obj, name, spec)
    {
        char fwhere[160];
        snprintf(fwhere, sizeof fwhere, "%s.%s", where, name);
        int rc = parse_field(s, fwhere, name, spec, &st->fields[i], err);
        if (rc) return rc;
        st->nfields = ++i;
    }
    return 0;
}

static int parse_types(shape_schema *s, json_t *types, char *err)
{
    const char *name;
    json_t *shape;
    size_t i = 0;
    if (!json_is_object(types))
        return load_fail(err, IDL_INVALID_ARGUMENT, "types: missing or not an object");
    s->types = calloc(json_object_size(types) + 1, sizeof s->types[0]);
    if (!s->types) return load_fail(err, IDL_INTERNAL, "types: out of memory");
    /* Names first, fields second: a field may name any type, in any order. */
    json_object_foreach(types, name, shape)
    {
        s->types[i++].name = name;
    }
    s->ntypes = i;
    i = 0;
    json_object_foreach(types, name, shape)
    {
        char where[96];
        snprintf(where, sizeof where, "types.%s", name);
        int rc = parse_shape(s, where, shape, &s->types[i++], err);
        if (rc) return rc;
    }
    return 0;
}

static int parse_methods(shape_schema *s, json_t *methods, char *err)
{
    size_t i;
    json_t *m;
    if (!json_is_array(methods) || json_array_size(methods) == 0)
        return load_fail(err, IDL_INVALID_ARGUMENT, "methods: missing or empty");
    s->methods = calloc(json_array_size(methods), sizeof s->methods[0]);
    if (!s->methods) return load_fail(err, IDL_INTERNAL, "methods: out of memory");
    json_array_foreach(methods, i, m)
    {
        char where[160];
        shape_method *sm = &s->methods[i];
        s->nmethods = i + 1;
        json_t *name = json_object_get(m, "name");
        json_t *scope = json_object_get(m, "scope");
        if (!json_is_object(m) || json_object_size(m) != 4 || !json_is_string(name) ||
            !(json_is_string(scope) || json_is_null(scope)))
            return load_fail(err, IDL_INVALID_ARGUMENT,
                             "methods[%zu]: needs exactly name, scope (str or null), request, "
                             "response",
                             i);
        sm->name = json_string_value(name);
        sm->scope = json_is_string(scope) ? json_string_value(scope) : NULL;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s->methods[j].name, sm->name))
                return load_fail(err, IDL_INVALID_ARGUMENT, "methods[%zu]: %s listed twice", i,
                                 sm->name);
        sm->request.name = sm->name;
        sm->response.name = sm->name;
        snprintf(where, sizeof where, "%s.request", sm->name);
        int rc = parse_shape(s, where, json_object_get(m, "request"), &sm->request, err);
        if (rc) return rc;
        snprintf(where, sizeof where, "%s.response", sm->name);
        rc = parse_shape(s, where, json_object_get(m, "response"), &sm->response, err);
        if (rc) return rc;
    }
    return 0;
}

static int parse_codes(shape_schema *s, json_t *codes, char *err)
{
    size_t i;
    json_t *c;
    if (!json_is_array(codes) || json_array_size(codes) == 0)
        return load_fail(err, IDL_INVALID_ARGUMENT, "codes: missing or empty");
    s->codes = calloc(json_array_size(codes), sizeof s->codes[0]);
    if (!s->codes) return load_fail(err, IDL_INTERNAL, "codes: out of memory");
    json_array_foreach(codes, i, c)
    {
        json_t *code = json_object_get(c, "code");
        json_t *name = json_object_get(c, "name");
        json_t *when = json_object_get(c, "when");
        if (json_object_size(c) != 3 || !json_is_integer(code) || json_integer_value(code) < 0 ||
            json_integer_value(code) > 0xffff || !json_is_string(name) || !json_is_string(when))
            return load_fail(err, IDL_INVALID_ARGUMENT,
                             "codes[%zu]: needs exactly code (uint), name, when", i);
        s->codes[i].code = (int)json_integer_value(code);
        s->codes[i].name = json_string_value(name);
        s->ncodes = i + 1;
    }
    return 0;
}

int shape_load(const char *schema_path, shape_schema **out, char err[256])
{
    shape_schema *s = NULL;
    json_error_t jerr;
    int rc = IDL_INTERNAL;
    FILE *f = fopen(schema_path, "r");
    if (!f) {
        rc = load_fail(err, IDL_NOT_FOUND, "%s: %s", schema_path, strerror(errno));
        goto fail;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        rc = load_fail(err, IDL_INTERNAL, "out of memory");
        goto fail;
    }
    s->root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    if (!s->root) {
        rc = load_fail(err, IDL_INVALID_ARGUMENT, "%s:%d:%d: %s", schema_path, jerr.line,
                       jerr.column, jerr.text);
        goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach(s->root, key, v)
    {
        if (strcmp(key, "$comment") && strcmp(key, "version") && strcmp(key, "types") &&
            strcmp(key, "envelope") && strcmp(key, "codes") && strcmp(key, "methods")) {
            rc = load_fail(err, IDL_INVALID_ARGUMENT, "unknown top-level key \"%s\"", key);
            goto fail;
        }
    }
    if (!json_is_string(json_object_get(s->root, "version"))) {
        rc = load_fail(err, IDL_INVALID_ARGUMENT, "version: missing or not a string");
        goto fail;
    }
    rc = parse_types(s, json_object_get(s->root, "types"), err);
    if (rc) goto fail;
    json_t *env = json_object_get(s->root, "envelope");
    if (!json_is_object(env) || json_object_size(env) != 2) {
        rc = load_fail(err, IDL_INVALID_ARGUMENT, "envelope: needs exactly request and reply");
        goto fail;
    }
    s->env_request.name = "envelope.request";
    s->env_reply.name = "envelope.reply";
    rc = parse_shape(s, "envelope.request", json_object_get(env, "request"), &s->env_request, err);
    if (rc) goto fail;
    rc = parse_shape(s, "envelope.reply", json_object_get(env, "reply"), &s->env_reply, err);
    if (rc) goto fail;
    rc = parse_codes(s, json_object_get(s->root, "codes"), err);
    if (rc) goto fail;
    rc = parse_methods(s, json_object_get(s->root, "methods"), err);
    if (rc) goto fail;
    fclose(f);
    *out = s;
    return 0;
fail:
    if (f) fclose(f);
    shape_free(s);
    return rc;
}

void shape_free(shape_schema *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->ntypes; i++)
        free(s->types[i].fields);
    free(s->types);
    for (size_t i = 0; i < s->nmethods; i++) {
        free(s->methods[i].request.fields);
        free(s->methods[i].response.fields);
    }
    free(s->methods);
    free(s->env_request.fields);
    free(s->env_reply.fields);
    free(s->codes);
    while (s->nodes) {
        shape_type *t = s->nodes;
        s->nodes = t->next;
        free(t->text);
        free(t);
    }
    json_decref(s->root);
    free(s);
}

/* ---- checking ----------------------------------------------------------------------- */

typedef struct {
    char path[256];
    size_t len;
    const char *root; /* what to call the value itself when the path is empty */
    char *err;
    int depth;
} check_ctx;

static int mismatch(check_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int mismatch(check_ctx *c, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(c->err, 512, "%s: ", c->len ? c->path : c->root);
    if (n > 0 && n < 512) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, 512 - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return IDL_INVALID_ARGUMENT;
}

/* Appends ".name" (or "name" at the root) or "[i]"; returns the length to restore.  A
 * path too long for the buffer is cut, which only shortens the message. */
static size_t push_name(check_ctx *c, const char *name, size_t len)
{
    size_t saved = c->len;
    char shown[72];
    size_t n = len < sizeof shown - 1 ? len : sizeof shown - 1;
    /* A peer's key may hold any bytes; keep the message one printable line. */
    for (size_t i = 0; i < n; i++)
        shown[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
    shown[n] = '\0';
    int w = snprintf(c->path + c->len, sizeof c->path - c->len, "%s%s", c->len ? "." : "", shown);
    if (w > 0)
        c->len = c->len + (size_t)w < sizeof c->path ? c->len + (size_t)w : sizeof c->path - 1;
    return saved;
}

static size_t push_index(check_ctx *c, size_t i)
{
    size_t saved = c->len;
    int w = snprintf(c->path + c->len, sizeof c->path - c->len, "[%zu]", i);
    if (w > 0)
        c->len = c->len + (size_t)w < sizeof c->path ? c->len + (size_t)w : sizeof c->path - 1;
    return saved;
}

static void pop(check_ctx *c, size_t saved)
{
    c->len = saved;
    c->path[saved] = '\0';
}

static const char *msgpack_kind_name(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "negative int";
    case MSGPACK_OBJECT_FLOAT32:
        return "float32";
    case MSGPACK_OBJECT_FLOAT64:
        return "float64";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "unknown";
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = p[i];
        size_t extra;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if (b >= 0xc2 && b <= 0xdf) {
            extra = 1;
            cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
            extra = 2;
            cp = b & 0x0f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            extra = 3;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (n - i <= extra) return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += extra + 1;
    }
    return true;
}

static bool in_str_list(const json_t *list, const char *p, size_t n)
{
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        if (json_string_length(e) == n && memcmp(json_string_value(e), p, n) == 0) return true;
    }
    return false;
}

/* Shows a peer's string in a message: at most 64 bytes, unprintable ones as '?'. */
static void show_str(const msgpack_object_str *s, char out[72])
{
    size_t n = s->size < 64 ? s->size : 64;
    for (size_t i = 0; i < n; i++)
        out[i] = (s->ptr[i] >= 0x20 && s->ptr[i] < 0x7f) ? s->ptr[i] : '?';
    strcpy(out + n, s->size > 64 ? "..." : "");
}

static int check_value(check_ctx *c, const shape_type *t, const shape_limits *lim,
                       const msgpack_object *o);

static int check_struct(check_ctx *c, const shape_struct *st, const msgpack_object *o)
{
    bool seen[SHAPE_MAX_FIELDS] = {false};
    if (o->type != MSGPACK_OBJECT_MAP)
        return mismatch(c, "expected map (%s), got %s", st->name, msgpack_kind_name(o));
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return mismatch(c, "key of type %s, expected str", msgpack_kind_name(k));
        const shape_field *f = NULL;
        size_t fi = 0;
        for (; fi < st->nfields; fi++) {
            if (strlen(st->fields[fi].name) == k->via.str.size &&
                memcmp(st->fields[fi].name, k->via.str.ptr, k->via.str.size) == 0) {
                f = &st->fields[fi];
                break;
            }
        }
        size_t saved = push_name(c, k->via.str.ptr, k->via.str.size);
        int rc = !f         ? mismatch(c, "undocumented field")
                 : seen[fi] ? mismatch(c, "field given twice")
                            : check_value(c, f->type, &f->limits, &o->via.map.ptr[i].val);
        pop(c, saved);
        if (rc) return rc;
        seen[fi] = true;
    }
    for (size_t fi = 0; fi < st->nfields; fi++) {
        if (st->fields[fi].required && !seen[fi]) {
            size_t saved = push_name(c, st->fields[fi].name, strlen(st->fields[fi].name));
            int rc = mismatch(c, "missing required field");
            pop(c, saved);
            return rc;
        }
    }
    return 0;
}

static int check_range(check_ctx *c, const shape_limits *lim, double v, const char *shown)
{
    /* Written so that NaN, which compares false both ways, is out of range. */
    if (lim && lim->has_range && !(v >= lim->lo && v <= lim->hi))
        return mismatch(c, "%s out of range [%g, %g]", shown, lim->lo, lim->hi);
    return 0;
}

/* Whether o is of the msgpack kind t expects, before looking inside: picks which
 * alternative of a union a mismatch is reported against. */
static bool kind_fits(const shape_type *t, const msgpack_object *o)
{
    switch (t->kind) {
    case K_STR:
        return o->type == MSGPACK_OBJECT_STR;
    case K_UINT:
        return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    case K_INT:
        return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
               o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
    case K_FLOAT:
        return o->type == MSGPACK_OBJECT_FLOAT64;
    case K_BOOL:
        return o->type == MSGPACK_OBJECT_BOOLEAN;
    case K_NIL:
        return o->type == MSGPACK_OBJECT_NIL;
    case K_ANY_MAP:
    case K_MAP:
    case K_NAMED:
        return o->type == MSGPACK_OBJECT_MAP;
    case K_ARRAY:
        return o->type == MSGPACK_OBJECT_ARRAY;
    case K_UNION:
        return false;
    }
    return false;
}

static int check_value(check_ctx *c, const shape_type *t, const shape_limits *lim,
                       const msgpack_object *o)
{
    char shown[80];
    int rc = 0;
    if (++c->depth > SHAPE_MAX_DEPTH) {
        rc = mismatch(c, "nested deeper than %d", SHAPE_MAX_DEPTH);
        goto out;
    }
    if (t->kind == K_UNION) {
        for (size_t i = 0; i < t->nalts; i++)
            if (kind_fits(t->alts[i], o)) {
                /* At most one alternative per msgpack kind in practice (str|RecordPhone,
                 * T|nil), so the first that fits is the one to blame. */
                rc = check_value(c, t->alts[i], lim, o);
                goto out;
            }
        rc = mismatch(c, "expected %s, got %s", t->text, msgpack_kind_name(o));
        goto out;
    }
    if (!kind_fits(t, o)) {
        rc = mismatch(c, "expected %s, got %s", t->text, msgpack_kind_name(o));
        goto out;
    }
    switch (t->kind) {
    case K_STR:
        if (!utf8_valid((const unsigned char *)o->via.str.ptr, o->via.str.size)) {
            rc = mismatch(c, "str is not valid UTF-8");
            break;
        }
        if (lim && lim->enum_values &&
            !in_str_list(lim->enum_values, o->via.str.ptr, o->via.str.size)) {
            show_str(&o->via.str, shown);
            rc = mismatch(c, "'%s' not in enum", shown);
        }
        break;
    case K_UINT:
    case K_INT:
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            snprintf(shown, sizeof shown, "%llu", (unsigned long long)o->via.u64);
            rc = check_range(c, lim, (double)o->via.u64, shown);
        } else {
            snprintf(shown, sizeof shown, "%lld", (long long)o->via.i64);
            rc = check_range(c, lim, (double)o->via.i64, shown);
        }
        break;
    case K_FLOAT:
        snprintf(shown, sizeof shown, "%g", o->via.f64);
        rc = check_range(c, lim, o->via.f64, shown);
        break;
    case K_BOOL:
    case K_NIL:
    case K_ANY_MAP:
        break;
    case K_NAMED:
        rc = check_struct(c, t->named, o);
        break;
    case K_ARRAY: {
        snprintf(shown, sizeof shown, "length %u", o->via.array.size);
        rc = check_range(c, lim, (double)o->via.array.size, shown);
        /* Only the enum applies element-wise; range and keys belong to the field. */
        shape_limits inner = {.enum_values = lim ? lim->enum_values : NULL};
        for (uint32_t i = 0; !rc && i < o->via.array.size; i++) {
            size_t saved = push_index(c, i);
            rc = check_value(c, t->elem, &inner, &o->via.array.ptr[i]);
            pop(c, saved);
        }
        break;
    }
    case K_MAP: {
        shape_limits inner = {.enum_values = lim ? lim->enum_values : NULL};
        for (uint32_t i = 0; !rc && i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type != MSGPACK_OBJECT_STR) {
                rc = mismatch(c, "key of type %s, expected str", msgpack_kind_name(k));
                break;
            }
            size_t saved = push_name(c, k->via.str.ptr, k->via.str.size);
            if (!utf8_valid((const unsigned char *)k->via.str.ptr, k->via.str.size))
                rc = mismatch(c, "key is not valid UTF-8");
            else if (lim && lim->keys && !in_str_list(lim->keys, k->via.str.ptr, k->via.str.size))
                rc = mismatch(c, "key not allowed here");
            for (uint32_t j = 0; !rc && j < i; j++) {
                const msgpack_object *p = &o->via.map.ptr[j].key;
                if (p->via.str.size == k->via.str.size &&
                    memcmp(p->via.str.ptr, k->via.str.ptr, k->via.str.size) == 0)
                    rc = mismatch(c, "key given twice");
            }
            if (!rc) rc = check_value(c, t->elem, &inner, &o->via.map.ptr[i].val);
            pop(c, saved);
        }
        break;
    }
    case K_UNION:
        break; /* handled above */
    }
out:
    c->depth--;
    return rc;
}

static int check_root(const shape_struct *st, const char *root, const msgpack_object *o, char *err)
{
    check_ctx c = {.root = root, .err = err};
    if (!o) {
        snprintf(err, 512, "%s: missing", root);
        return IDL_INVALID_ARGUMENT;
    }
    return check_struct(&c, st, o);
}

static const shape_method *find_method(const shape_schema *s, const char *method, char *err)
{
    for (size_t i = 0; i < s->nmethods; i++)
        if (!strcmp(s->methods[i].name, method)) return &s->methods[i];
    snprintf(err, 512, "unknown method '%s'", method);
    return NULL;
}

int shape_check_request(const shape_schema *s, const char *method, const msgpack_object *body,
                        char err[512])
{
    const shape_method *m = find_method(s, method, err);
    return m ? check_root(&m->request, "body", body, err) : IDL_NOT_FOUND;
}

int shape_check_response(const shape_schema *s, const char *method, const msgpack_object *body,
                         char err[512])
{
    const shape_method *m = find_method(s, method, err);
    return m ? check_root(&m->response, "body", body, err) : IDL_NOT_FOUND;
}

int shape_check_type(const shape_schema *s, const char *type_name, const msgpack_object *obj,
                     char err[512])
{
    const shape_struct *st = find_struct(s->types, s->ntypes, type_name, strlen(type_name));
    if (!st) {
        snprintf(err, 512, "unknown type '%s'", type_name);
        return IDL_NOT_FOUND;
    }
    return check_root(st, type_name, obj, err);
}

int shape_check_envelope(const shape_schema *s, const char *side, const msgpack_object *obj,
                         char err[512])
{
    if (!strcmp(side, "request")) return check_root(&s->env_request, "envelope", obj, err);
    if (!strcmp(side, "reply")) return check_root(&s->env_reply, "envelope", obj, err);
    snprintf(err, 512, "unknown envelope side '%s'", side);
    return IDL_NOT_FOUND;
}

size_t shape_method_count(const shape_schema *s)
{
    return s->nmethods;
}

int shape_method_at(const shape_schema *s, size_t i, const char **name, const char **scope)
{
    if (i >= s->nmethods) return IDL_NOT_FOUND;
    *name = s->methods[i].name;
    *scope = s->methods[i].scope;
    return 0;
}

size_t shape_code_count(const shape_schema *s)
{
    return s->ncodes;
}

int shape_code_at(const shape_schema *s, size_t i, int *code, const char **name)
{
    if (i >= s->ncodes) return IDL_NOT_FOUND;
    *code = s->codes[i].code;
    *name = s->codes[i].name;
    return 0;
}
