// The descriptors one turn of vgpu-vnc's loop waits on: rebuilt each turn (libvncserver's
// clients come and go), then asked what each one got.
#pragma once

#include <poll.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace vgpu::vnc {

class PollSet {
public:
    void clear() { m_fds.clear(); }
    void add(int fd, short events)
    {
        if (fd >= 0)
            m_fds.push_back({ fd, events, 0 });
    }
    // poll(2); EINTR counts as a turn with nothing ready.
    void wait(std::chrono::milliseconds timeout)
    {
        if (::poll(m_fds.data(), m_fds.size(), int(timeout.count())) < 0)
            for (auto& p : m_fds)
                p.revents = 0;
    }
    short revents(int fd) const
    {
        auto it = std::find_if(
            m_fds.begin(), m_fds.end(), [fd](const pollfd& p) { return p.fd == fd; });
        return it == m_fds.end() ? short(0) : it->revents;
    }

private:
    std::vector<pollfd> m_fds;
};

} // namespace vgpu::vnc
