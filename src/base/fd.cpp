#include "base/fd.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace vgpu {

void Fd::reset()
{
    if (m_fd >= 0)
        ::close(m_fd);
    m_fd = -1;
}

Result<Fd> Fd::dup() const
{
    int copy = ::fcntl(m_fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return Error::from_errno("dup");
    return Fd(copy);
}

Result<Fd> make_eventfd(unsigned initial)
{
    int fd = ::eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return Error::from_errno("eventfd");
    return Fd(fd);
}

Result<void> set_nonblocking(int fd)
{
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return Error::from_errno("fcntl(O_NONBLOCK)");
    return {};
}

Result<void> eventfd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t n = ::write(fd, &one, sizeof(one));
    if (n == sizeof(one) || (n < 0 && errno == EAGAIN))
        return {};
    return Error::from_errno("eventfd write");
}

uint64_t eventfd_drain(int fd)
{
    uint64_t value = 0;
    if (::read(fd, &value, sizeof(value)) != sizeof(value))
        return 0;
    return value;
}

} // namespace vgpu
