/* The daemon and the analytics job fail closed on a damaged store (32 bytes
 * overwritten in the middle of one column family's SST, tests/storefault.h):
 *   supp     the daemon refuses to start: exit status 1 and one line naming
 *            the suppression list;
 *   persons, idx  every Search, Validate, OptOut and Disclosures touching a
 *            damaged block answers UNAVAILABLE (14); no OK reply hides a
 *            person the store holds, and a failed Disclosures does not spend
 *            the person's one request of the year;
 *   log      `idlookup analytics` exits 1 with a message. */
#include "e2e.h"
#include "e2echeck.h"
#include "storefault.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static e2e_env env;

static void fresh_store(const char *cf)
{
    rm_rf(env.data);
    mkdir(env.data, 0700);
    CHECK(build(env.data));
    CHECK(corrupt(env.data, cf));
}

/* Runs the daemon on the store and waits up to 20 s for it to exit; a daemon
 * still running then is killed and reported as -1.  stderr into *err. */
static int daemon_exit_status(char *errtext, size_t errsz)
{
    char logpath[400];
    snprintf(logpath, sizeof logpath, "%s/refused.log", env.dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        execl(getenv("IDL_DAEMON"), "idlookupd", "--data", env.data, "--keys", env.keys, "--listen",
              "tcp://127.0.0.1:1", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    bool done = false;
    for (int i = 0; i < 400 && !done; i++) {
        done = waitpid(pid, &st, WNOHANG) == pid;
        struct timespec ts = {0, 50 * 1000000L};
        if (!done) nanosleep(&ts, NULL);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    errtext[0] = 0;
    FILE *f = fopen(logpath, "r");
    if (f) {
        size_t n = fread(errtext, 1, errsz - 1, f);
        errtext[n] = 0;
        fclose(f);
    }
    return done && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void supp_corrupt_daemon_refuses(void)
{
    fresh_store("supp");
    char err[2048];
    int st = daemon_exit_status(err, sizeof err);
    CHECK_INT(st, 1);
    CHECKM(strstr(err, "suppression list") != NULL, "stderr: %s", err);
    CHECKM(strstr(err, "serving on") == NULL, "stderr: %s", err);
}

/* Search, Validate, OptOut and Disclosures for every person: each answer is
 * either right or UNAVAILABLE, and some are UNAVAILABLE. */
static void every_answer_right_or_unavailable(const char *cf)
{
    fresh_store(cf);
    e2e_start(&env, NULL);
    int unavailable = 0, wrong = 0, optout_unavailable = 0;
    for (int i = 0; i < NPERSONS; i++) {
        bool suppressed = i % 2 == 0;
        char pid[19];
        idl_person_id_format(pid_of(i), pid);
        idl_reply *r = e2e_callf(&env, env.lookup_key, "idlookup.v1.Lookup/Search",
                                 "{\"email\": \"p%d@example.com\"}", i);
        if (r && r->code == IDL_UNAVAILABLE) {
            unavailable++;
        } else {
            const msgpack_object *ps = r && r->code == 0 ? e2e_get(&r->body, "persons") : NULL;
            bool found = ps && ps->type == MSGPACK_OBJECT_ARRAY && ps->via.array.size == 1 &&
                         e2e_str_is(e2e_get(&ps->via.array.ptr[0], "id"), pid);
            bool none = ps && ps->type == MSGPACK_OBJECT_ARRAY && ps->via.array.size == 0;
            if (!(suppressed ? none : found)) {
                if (wrong++ < 5)
                    fprintf(stderr, "  Search p%d: code %d %s\n", i, r ? r->code : -1,
                            r ? e2e_json(&r->body) : "");
            }
        }
        idl_reply_free(r);
        if (suppressed) continue;
        r = e2e_callf(&env, env.lookup_key, "idlookup.v1.Lookup/Validate",
                      "{\"email\": \"p%d@example.com\"}", i);
        bool ok = r && (r->code == IDL_UNAVAILABLE ||
                        (r->code == 0 && e2e_path(&r->body, "email.known") &&
                         e2e_path(&r->body, "email.known")->type == MSGPACK_OBJECT_BOOLEAN &&
                         e2e_path(&r->body, "email.known")->via.boolean));
        if (!ok && wrong++ < 5)
            fprintf(stderr, "  Validate p%d: code %d %s\n", i, r ? r->code : -1,
                    r ? e2e_json(&r->body) : "");
        idl_reply_free(r);
        if (i % 10 != 1) continue;
        /* An opt-out must reach the person or fail: "suppressed 0" for a
         * person the store holds would be a silent miss. */
        r = e2e_callf(&env, env.privacy_key, "idlookup.v1.Privacy/OptOut",
                      "{\"email\": \"p%d@example.com\"}", i);
        ok = r && (r->code == IDL_UNAVAILABLE ||
                   (r->code == 0 && e2e_uint(e2e_get(&r->body, "suppressed")) == 1));
        optout_unavailable += r && r->code == IDL_UNAVAILABLE;
        if (!ok && wrong++ < 5)
            fprintf(stderr, "  OptOut p%d: code %d %s\n", i, r ? r->code : -1,
                    r ? e2e_json(&r->body) : "");
        idl_reply_free(r);
    }
    CHECK_INT(wrong, 0);
    CHECK(unavailable > 0);
    printf("     %s damaged: %d of %d searches UNAVAILABLE, %d opt-outs UNAVAILABLE, none wrong\n",
           cf, unavailable, NPERSONS, optout_unavailable);
    CHECK_INT(e2e_stop(&env), 0);
}

static void persons_corrupt_answers_unavailable(void)
{
    every_answer_right_or_unavailable("persons");
}

static void idx_corrupt_answers_unavailable(void)
{
    every_answer_right_or_unavailable("idx");
}

/* Disclosures reads logp: a damaged block is UNAVAILABLE for a person whose
 * records sit in it (scanned by person_id, every person once). */
static void logp_corrupt_disclosures_unavailable(void)
{
    fresh_store("logp");
    e2e_start(&env, NULL);
    int unavailable = 0, bad = 0;
    for (int i = 0; i < NPERSONS; i++) {
        char pid[19];
        idl_person_id_format(pid_of(i), pid);
        idl_reply *r = e2e_callf(&env, env.privacy_key, "idlookup.v1.Privacy/Disclosures",
                                 "{\"person_id\": \"%s\", \"year\": 2023}", pid);
        if (r && r->code == IDL_UNAVAILABLE) {
            unavailable++;
            /* A failed answer must not spend the year's one request. */
            idl_reply_free(r);
            r = e2e_callf(&env, env.privacy_key, "idlookup.v1.Privacy/Disclosures",
                          "{\"person_id\": \"%s\", \"year\": 2023}", pid);
            CHECKM(r && r->code == IDL_UNAVAILABLE, "asked again: code %d (%s)", r ? r->code : -1,
                   msg_of(r));
        } else if (!r || r->code != 0) {
            bad++;
        }
        idl_reply_free(r);
    }
    CHECK_INT(bad, 0);
    CHECK(unavailable > 0);
    CHECK_INT(e2e_stop(&env), 0);
}

static void log_corrupt_analytics_fails(void)
{
    fresh_store("log");
    const char *args[] = {"analytics", "--data", env.data, NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(e2e_cli(args, NULL, &out, &err), 1);
    CHECKM(err && strstr(err, "cannot be read whole"), "stderr: %s", err ? err : "");
    free(out);
    free(err);
}

int main(void)
{
    e2e_init(&env);
    RUN(supp_corrupt_daemon_refuses);
    RUN(persons_corrupt_answers_unavailable);
    RUN(idx_corrupt_answers_unavailable);
    RUN(logp_corrupt_disclosures_unavailable);
    RUN(log_corrupt_analytics_fails);
    e2e_cleanup(&env);
    return test_summary();
}
