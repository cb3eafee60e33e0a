#include "base/sigbus.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <mutex>

namespace vgpu::sigbus {

namespace {

// Read by the handler, on any thread: only atomics. A slot is free when begin is 0.
struct Slot {
    std::atomic<uintptr_t> begin { 0 };
    std::atomic<uintptr_t> end { 0 };
};
std::array<Slot, 64> g_slots;
std::atomic<int> g_notify { -1 };
std::atomic<uint64_t> g_faults { 0 };
uintptr_t g_page_size = 4096;
std::mutex g_install_mutex; // protect()/unprotect() and install() only, never the handler
struct sigaction g_previous { }; // the handler before ours (a sanitizer's, or the default)

void on_sigbus(int signo, siginfo_t* info, void*)
{
    auto address = reinterpret_cast<uintptr_t>(info->si_addr);
    for (auto& slot : g_slots) {
        uintptr_t begin = slot.begin.load(std::memory_order_acquire);
        uintptr_t end = slot.end.load(std::memory_order_acquire);
        if (!begin || address < begin || address >= end)
            continue;
        // The file ended before this page: from here to the end of the mapping, zero pages.
        // (mmap is a plain system call here; glibc's wrapper does nothing unsafe.)
        uintptr_t page = address & ~(g_page_size - 1);
        void* replaced = ::mmap(reinterpret_cast<void*>(page), // NOLINT(performance-no-int-to-ptr)
            end - page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (replaced == MAP_FAILED)
            break;
        g_faults.fetch_add(1, std::memory_order_relaxed);
        uint64_t one = 1;
        int fd = g_notify.load(std::memory_order_relaxed);
        if (fd >= 0)
            (void)!::write(fd, &one, sizeof(one));
        return; // the access is retried, on the zero pages
    }
    // Not a mapping of ours: the handler before ours takes it (the fault repeats on return),
    // by default the signal's default action.
    ::sigaction(signo, &g_previous, nullptr);
}

} // namespace

Result<void> install()
{
    std::lock_guard lock(g_install_mutex);
    if (g_notify.load() >= 0)
        return {};
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return Error::from_errno("eventfd");
    g_page_size = uintptr_t(::sysconf(_SC_PAGESIZE));
    struct sigaction action { };
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (::sigaction(SIGBUS, &action, &g_previous) < 0) {
        ::close(fd);
        return Error::from_errno("sigaction(SIGBUS)");
    }
    g_notify.store(fd);
    return {};
}

int notify_fd() { return g_notify.load(); }

uint64_t faults() { return g_faults.load(std::memory_order_relaxed); }

bool protect(void* begin, size_t size)
{
    std::lock_guard lock(g_install_mutex);
    for (auto& slot : g_slots) {
        if (slot.begin.load() != 0)
            continue;
        // end first: a handler that sees begin also sees a valid end.
        slot.end.store(reinterpret_cast<uintptr_t>(begin) + size, std::memory_order_release);
        slot.begin.store(reinterpret_cast<uintptr_t>(begin), std::memory_order_release);
        return true;
    }
    return false;
}

void unprotect(void* begin)
{
    std::lock_guard lock(g_install_mutex);
    for (auto& slot : g_slots) {
        if (slot.begin.load() == reinterpret_cast<uintptr_t>(begin)) {
            slot.begin.store(0, std::memory_order_release);
            slot.end.store(0, std::memory_order_release);
        }
    }
}

} // namespace vgpu::sigbus
