/* A connection to a NATS JetStream cluster (see natsconn.h). */
#include "natsconn.h"
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct idl_natsconn {
    natsConnection *nc;
    jsCtx *js;
};

bool idl_natsconn_node_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 32) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) return false;
    }
    return true;
}

static void on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    (void)closure;
}

int idl_natsconn_open(idl_natsconn **out, const char *urls, const char *name, bool wait,
                      char err[IDL_ERR_MAX])
{
    idl_natsconn *c = calloc(1, sizeof(*c));
    natsOptions *o = NULL;
    char *copy = strdup(urls ? urls : "");
    const char *list[16];
    int n = 0;
    int rc = IDL_INTERNAL;
    if (!c || !copy) {
        snprintf(err, IDL_ERR_MAX, "out of memory");
        goto fail;
    }
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && n < 16;
         t = strtok_r(NULL, ",", &save))
        if (*t) list[n++] = t;
    if (n == 0) {
        snprintf(err, IDL_ERR_MAX, "--nats: no URL given");
        rc = IDL_INVALID_ARGUMENT;
        goto fail;
    }
    if (natsOptions_Create(&o) != NATS_OK) {
        snprintf(err, IDL_ERR_MAX, "nats: cannot create options");
        goto fail;
    }
    natsOptions_SetServers(o, list, n);
    natsOptions_SetName(o, name);
    natsOptions_SetMaxReconnect(o, -1); /* forever: NATS coming back is the normal case */
    natsOptions_SetReconnectWait(o, 100);
    natsOptions_SetTimeout(o, 1000);
    /* A lost server is noticed within about a second even when its socket
     * stays open (a partition): pings every 500 ms, two missed. */
    natsOptions_SetPingInterval(o, 500);
    natsOptions_SetMaxPingsOut(o, 2);
    /* With a connected callback the connect returns at once and retries in
     * the background; without one it would block until NATS answers. */
    if (!wait) natsOptions_SetRetryOnFailedConnect(o, true, on_connected, NULL);
    natsStatus s = natsConnection_Connect(&c->nc, o);
    if (s != NATS_OK && !(s == NATS_NOT_YET_CONNECTED && !wait)) {
        snprintf(err, IDL_ERR_MAX, "nats: cannot connect to %s: %s", urls, natsStatus_GetText(s));
        rc = IDL_UNAVAILABLE;
        goto fail;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    if (natsConnection_JetStream(&c->js, c->nc, &jo) != NATS_OK) {
        snprintf(err, IDL_ERR_MAX, "nats: cannot create a JetStream context");
        goto fail;
    }
    natsOptions_Destroy(o);
    free(copy);
    *out = c;
    return IDL_OK;
fail:
    natsOptions_Destroy(o);
    free(copy);
    idl_natsconn_close(c);
    return rc;
}

void idl_natsconn_close(idl_natsconn *c)
{
    if (!c) return;
    jsCtx_Destroy(c->js);
    if (c->nc) {
        natsConnection_Close(c->nc);
        natsConnection_Destroy(c->nc);
    }
    free(c);
}

bool idl_natsconn_connected(idl_natsconn *c)
{
    return natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

bool idl_natsconn_wait_connected(idl_natsconn *c, unsigned grace_ms)
{
    /* Polled rather than told by nats.c's callbacks: those run on the
     * library's own thread and may still be queued when the handle is
     * freed. */
    for (unsigned waited = 0; !idl_natsconn_connected(c); waited += 20) {
        if (waited >= grace_ms) return false;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

natsConnection *idl_natsconn_nc(idl_natsconn *c)
{
    return c->nc;
}

jsCtx *idl_natsconn_js(idl_natsconn *c)
{
    return c->js;
}

/* 3 replicas when the cluster has 3 servers or more (RAFT needs a majority
 * of them to acknowledge), 1 for a single server. */
static int replicas(idl_natsconn *c)
{
    char **servers = NULL;
    int n = 0;
    if (natsConnection_GetServers(c->nc, &servers, &n) != NATS_OK) return 1;
    for (int i = 0; i < n; i++)
        free(servers[i]);
    free(servers);
    return n >= 3 ? 3 : 1;
}

static int ensure_stream(idl_natsconn *c, const char *name, const char *subject, int r,
                         int64_t dup_ns, char err[IDL_ERR_MAX])
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, c->js, name, NULL, &jerr);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return IDL_OK;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        snprintf(err, IDL_ERR_MAX, "nats: stream %s: %s", name, natsStatus_GetText(s));
        return IDL_UNAVAILABLE;
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    const char *subjects[1] = {subject};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = r;
    cfg.Duplicates = dup_ns;
    jerr = 0;
    s = js_AddStream(&si, c->js, &cfg, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    /* Another node created it between our look and our add: fine. */
    if (s == NATS_OK || jerr == JSStreamNameExistErr) return IDL_OK;
    snprintf(err, IDL_ERR_MAX, "nats: cannot create stream %s: %s (%d)", name,
             natsStatus_GetText(s), (int)jerr);
    return IDL_UNAVAILABLE;
}

int idl_natsconn_ensure(idl_natsconn *c, char err[IDL_ERR_MAX])
{
    if (!idl_natsconn_connected(c)) {
        snprintf(err, IDL_ERR_MAX, "nats: not connected");
        return IDL_UNAVAILABLE;
    }
    int r = replicas(c);
    /* Duplicate windows: a change is retried within seconds; a query-log
     * entry may wait in the outbox through a NATS restart, and its id must
     * still be remembered when the publisher resends it. */
    int rc = ensure_stream(c, IDL_NATS_CHANGES_STREAM, IDL_NATS_CHANGES_SUBJECT, r,
                           (int64_t)120 * 1000000000, err);
    if (rc == IDL_OK)
        rc = ensure_stream(c, IDL_NATS_QLOG_STREAM, IDL_NATS_QLOG_PREFIX "*", r,
                           (int64_t)600 * 1000000000, err);
    if (rc) return rc;
    kvStore *kv = NULL;
    natsStatus s = js_KeyValue(&kv, c->js, IDL_NATS_DISCLOSURES_BUCKET);
    if (s == NATS_OK) {
        kvStore_Destroy(kv);
        return IDL_OK;
    }
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = IDL_NATS_DISCLOSURES_BUCKET;
    kc.History = 1;
    /* A mark for year Y must outlive Y; 370 days does, and then the
     * bucket forgets it by itself. */
    kc.TTL = (int64_t)370 * 86400 * 1000000000; /* nanoseconds in nats.c 3.4 */
    kc.Replicas = r;
    kc.StorageType = js_FileStorage;
    s = js_CreateKeyValue(&kv, c->js, &kc);
    if (s == NATS_OK) {
        kvStore_Destroy(kv);
        return IDL_OK;
    }
    /* Lost a creation race: the bucket is there now. */
    if (js_KeyValue(&kv, c->js, IDL_NATS_DISCLOSURES_BUCKET) == NATS_OK) {
        kvStore_Destroy(kv);
        return IDL_OK;
    }
    snprintf(err, IDL_ERR_MAX, "nats: cannot create bucket %s: %s", IDL_NATS_DISCLOSURES_BUCKET,
             natsStatus_GetText(s));
    return IDL_UNAVAILABLE;
}

int idl_natsconn_last_seq(idl_natsconn *c, const char *stream, uint64_t *seq)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, c->js, stream, NULL, &jerr) != NATS_OK) return IDL_UNAVAILABLE;
    *seq = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return IDL_OK;
}
