// Fd: a move-only owner of a file descriptor.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace vgpu {

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd)
        : m_fd(fd)
    {
    }
    ~Fd() { reset(); }
    Fd(Fd&& other) noexcept
        : m_fd(other.release())
    {
    }
    Fd& operator=(Fd&& other) noexcept
    {
        if (this != &other) {
            reset();
            m_fd = other.release();
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

    int get() const { return m_fd; }
    bool valid() const { return m_fd >= 0; }
    explicit operator bool() const { return valid(); }
    [[nodiscard]] int release() { return std::exchange(m_fd, -1); }
    void reset();
    Result<Fd> dup() const;

private:
    int m_fd = -1;
};

// Helpers for the descriptors the device uses.
Result<Fd> make_eventfd(unsigned initial = 0);
Result<void> set_nonblocking(int fd);
// Adds 1 to an eventfd counter; EAGAIN (counter saturated) is not an error.
Result<void> eventfd_signal(int fd);
// Reads and clears an eventfd counter; returns 0 when nothing was pending.
uint64_t eventfd_drain(int fd);
// A memfd of `size` bytes that can be sealed.
Result<Fd> make_memfd(const char* name, size_t size);
// Seals a memfd so that nobody else can write it (a new PROT_WRITE|MAP_SHARED mapping fails;
// mappings made before stay writable), shrink, grow or reseal it: what we hand to consumers.
Result<void> seal_read_only(int memfd);

// All of a file (read to its end, not trusting st_size: pipes, files that grow); more than
// max_bytes, or a directory, is an error naming the path.
Result<std::vector<std::byte>> read_whole_file(const std::string& path, size_t max_bytes);

} // namespace vgpu
