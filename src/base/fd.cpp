#include "base/fd.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

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

Result<Fd> make_memfd(const char* name, size_t size)
{
    Fd memfd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!memfd)
        return Error::from_errno(fmt::format("memfd_create({})", name));
    if (::ftruncate(memfd.get(), off_t(size)) != 0)
        return Error::from_errno(fmt::format("ftruncate of memfd {} to {} bytes", name, size));
    return memfd;
}

Result<void> seal_read_only(int memfd)
{
    if (::fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)
        != 0)
        return Error::from_errno("sealing a memfd");
    return {};
}

} // namespace vgpu
