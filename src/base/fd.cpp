#include "base/fd.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

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

Result<std::vector<std::byte>> read_whole_file(const std::string& path, size_t max_bytes)
{
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return Error::from_errno(path);
    struct stat st { };
    if (::fstat(fd.get(), &st) < 0)
        return Error::from_errno(path);
    if (S_ISDIR(st.st_mode))
        return Error::format("{}: is a directory", path);
    std::vector<std::byte> out;
    if (S_ISREG(st.st_mode) && st.st_size > 0)
        out.reserve(size_t(std::min<uint64_t>(uint64_t(st.st_size), max_bytes + 1)));
    // Read to the end rather than trusting st_size: pipes and files that grow while we read.
    std::byte buffer[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return Error::from_errno(path);
        if (n == 0)
            break;
        out.insert(out.end(), buffer, buffer + n);
        if (out.size() > max_bytes)
            return Error::format("{}: larger than {} bytes", path, max_bytes);
    }
    return out;
}

} // namespace vgpu
