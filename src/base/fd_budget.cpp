#include "base/fd_budget.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace vgpu::fds {

Result<uint64_t> raise_limit()
{
    rlimit limits {};
    if (::getrlimit(RLIMIT_NOFILE, &limits) < 0)
        return Error::from_errno("getrlimit(RLIMIT_NOFILE)");
    if (limits.rlim_cur < limits.rlim_max) {
        limits.rlim_cur = limits.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &limits) < 0)
            return Error::from_errno("setrlimit(RLIMIT_NOFILE)");
    }
    return uint64_t(limits.rlim_cur);
}

uint64_t limit()
{
    rlimit limits {};
    if (::getrlimit(RLIMIT_NOFILE, &limits) < 0 || limits.rlim_cur == RLIM_INFINITY)
        return UINT64_MAX;
    return uint64_t(limits.rlim_cur);
}

size_t open_count()
{
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) {
        // No /proc (a sandbox): the lowest free descriptor is a lower bound of those open.
        int probe = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
        if (probe < 0)
            return SIZE_MAX;
        ::close(probe);
        return size_t(probe);
    }
    size_t count = 0;
    while (auto* entry = ::readdir(dir))
        if (entry->d_name[0] != '.')
            ++count;
    ::closedir(dir);
    return count - 1; // the directory's own descriptor
}

bool may_open(size_t wanted)
{
    uint64_t in_use = open_count();
    uint64_t cap = limit();
    return in_use != SIZE_MAX && in_use + wanted + reserve <= cap;
}

} // namespace vgpu::fds
