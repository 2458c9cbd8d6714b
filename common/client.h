/* The idlookup client library: how a customer's C backend calls the service.
 *
 *   idl_client *c;
 *   idl_client_open(&c, "tcp://127.0.0.1:7411", "idl_k0123..._secret");
 *   idl_reply *r;
 *   idl_client_call(c, "idlookup.v1.Lookup/Search", body, body_len, 500, 2000, &r);
 *   if (r->code == 0) ... r->body is the response message (msgpack object) ...
 *   idl_reply_free(r);
 *   idl_client_close(c);
 *
 * One idl_client is one nng req0 socket with one dialer that reconnects by
 * itself.  idl_client_call is thread-safe: each call runs on its own nng
 * context, so many threads may share one client and have calls in flight at
 * once.  Request bodies are msgpack maps the caller encodes (msgpack-c's
 * packer, or idl_json_to_msgpack); replies are decoded for the caller.
 */
#ifndef IDL_CLIENT_H
#define IDL_CLIENT_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idl_client idl_client;

/* A decoded reply.  Everything in it lives until idl_reply_free. */
typedef struct {
    uint64_t id;            /* the request's id, echoed */
    int code;               /* status code (status.h); 0 = OK */
    const char *message;    /* NUL-terminated; NULL when the reply has none */
    const char *request_id; /* meta.request-id; NULL if absent */
    msgpack_object body;    /* the response message; type NIL when absent */
    msgpack_object details; /* type NIL when absent */
    msgpack_object meta;    /* map str->str */
    msgpack_object root;    /* the whole reply envelope */
} idl_reply;

/* Opens a client for url ("tcp://host:port" or "ipc:///path"), or for a
 * comma-separated list of them (the nodes of a cluster): every one is dialed,
 * requests are spread over the connections that are up, and a request whose
 * connection drops is sent again on another.  key may be
 * NULL (only Health and Describe then succeed); it is copied.  The dial is
 * non-blocking: a server that is not up yet is reached when it comes up.
 * Returns 0, IDL_INVALID_ARGUMENT for a bad URL, IDL_UNAVAILABLE otherwise. */
int idl_client_open(idl_client **out, const char *url, const char *key);

/* Closes the socket; no call may be in flight.  NULL is fine. */
void idl_client_close(idl_client *c);

/* Sends one request and waits for its reply.
 *   method       full name, "idlookup.v1.Lookup/Search"
 *   body, len    the request message as msgpack bytes (a map); NULL/0 = {}
 *   timeout_ms   the deadline sent to the server; < 0 sends none
 *   wait_ms      how long this call waits for the reply locally
 * Returns 0 and *out (whatever the reply's code), or a transport failure:
 * IDL_DEADLINE_EXCEEDED (no reply within wait_ms), IDL_UNAVAILABLE (cannot
 * send), IDL_INTERNAL (the reply is not a decodable envelope).  Thread-safe. */
int idl_client_call(idl_client *c, const char *method, const void *body, size_t len, int timeout_ms,
                    int wait_ms, idl_reply **out);

/* Sends an already encoded request envelope as is and returns the raw reply
 * bytes (malloc'd; the caller frees *rep).  For tools that build envelopes
 * themselves (the bench pre-encodes its requests).  Thread-safe. */
int idl_client_call_raw(idl_client *c, const void *req, size_t req_len, int wait_ms, void **rep,
                        size_t *rep_len);

/* Decodes reply bytes into *out (the bytes are copied). */
int idl_reply_decode(const void *buf, size_t len, idl_reply **out);

void idl_reply_free(idl_reply *r);

/* Encodes a request envelope {id, method, meta{authorization}, timeout_ms?,
 * body} into *out (malloc'd, caller frees).  key may be NULL. */
int idl_request_encode(uint64_t id, const char *method, const char *key, int timeout_ms,
                       const void *body, size_t body_len, void **out, size_t *out_len);

#endif
