/* See rocksx.h.  The C API's handles wrap the C++ objects in one-member
 * structs (rocksdb/db/c.cc, unchanged since the C API began); they are
 * restated here, the one place that reaches through them. */
#include "rocksx.h"
#include "status.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>

#include <cstdarg>
#include <cstdio>
#include <memory>

struct rocksdb_t {
    rocksdb::DB *rep;
};
struct rocksdb_options_t {
    rocksdb::Options rep;
};

namespace
{

class StderrLogger : public rocksdb::Logger
{
  public:
    explicit StderrLogger(rocksdb::InfoLogLevel level) : rocksdb::Logger(level)
    {
    }
    using rocksdb::Logger::Logv;
    void Logv(const char *fmt, va_list ap) override
    {
        /* One write per line, so lines of concurrent threads do not mix. */
        char line[1024];
        int n = snprintf(line, sizeof line, "rocksdb: ");
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
        if (len > sizeof line - 2) len = sizeof line - 2;
        line[len++] = '\n';
        fwrite(line, 1, len, stderr);
    }
};

} // namespace

extern "C" int idl_rocksx_resume(rocksdb_t *db, char err[IDL_ERR_MAX])
{
    rocksdb::Status st = db->rep->Resume();
    if (st.ok()) return IDL_OK;
    snprintf(err, IDL_ERR_MAX, "%s", st.ToString().c_str());
    return IDL_UNAVAILABLE;
}

extern "C" void idl_rocksx_log_to_stderr(rocksdb_options_t *o)
{
    o->rep.info_log = std::make_shared<StderrLogger>(o->rep.info_log_level);
}
