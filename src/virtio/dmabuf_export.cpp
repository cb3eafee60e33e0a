#include "virtio/dmabuf_export.h"

#include <fcntl.h>
#include <linux/udmabuf.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "virtio/guest_memory.h"

namespace vgpu::virtio {

namespace {

uint64_t read_parameter(const char* name, uint64_t fallback)
{
    std::ifstream in(std::string("/sys/module/udmabuf/parameters/") + name);
    uint64_t value = 0;
    return in >> value && value > 0 ? value : fallback;
}

class UdmabufExporter final : public DmabufExporter {
public:
    UdmabufExporter(Fd device, UdmabufLimits limits)
        : m_device(std::move(device))
        , m_limits(limits)
    {
    }
    const char* name() const override { return "udmabuf"; }

    Result<Fd> export_ranges(
        const GuestMemory& memory, std::span<const GuestRange> ranges, uint64_t size) override
    {
        const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
        if (size % page)
            return Error::format("udmabuf: a size of {} bytes is not whole pages", size);
        if (size > m_limits.size_limit_mb << 20)
            return Error::format(
                "udmabuf: {} bytes exceed size_limit_mb {}", size, m_limits.size_limit_mb);
        auto runs = TRY(guest_runs(memory, ranges, size));
        if (runs.size() > m_limits.list_limit)
            return Error::format(
                "udmabuf: {} runs exceed list_limit {}", runs.size(), m_limits.list_limit);
        std::vector<std::byte> request(
            sizeof(udmabuf_create_list) + runs.size() * sizeof(udmabuf_create_item));
        auto* list = reinterpret_cast<udmabuf_create_list*>(request.data());
        list->flags = UDMABUF_FLAGS_CLOEXEC;
        list->count = uint32_t(runs.size());
        for (size_t i = 0; i < runs.size(); ++i) {
            auto placed = TRY(memory.place(runs[i].gpa, runs[i].length));
            if (placed.fd_offset % page || runs[i].length % page)
                return Error::format("udmabuf: guest range {:#x}+{:#x} is not page-aligned",
                    runs[i].gpa, runs[i].length);
            if (!placed.sealed)
                return Error::format("udmabuf: the memfd is not sealed against shrinking");
            list->list[i] = udmabuf_create_item { uint32_t(placed.fd), 0, placed.fd_offset,
                runs[i].length };
        }
        int fd = ::ioctl(m_device.get(), UDMABUF_CREATE_LIST, list);
        if (fd < 0)
            return Error::from_errno("UDMABUF_CREATE_LIST");
        return Fd(fd);
    }

private:
    Fd m_device;
    UdmabufLimits m_limits;
};

class MemfdStandinExporter final : public DmabufExporter {
public:
    const char* name() const override { return "memfd-test"; }
    Result<Fd> export_ranges(
        const GuestMemory& memory, std::span<const GuestRange> ranges, uint64_t size) override
    {
        auto runs = TRY(guest_runs(memory, ranges, size));
        Fd fd(::memfd_create("vgpu-dmabuf-standin", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        if (!fd)
            return Error::from_errno("memfd_create");
        if (::ftruncate(fd.get(), off_t(size)) < 0)
            return Error::from_errno("ftruncate");
        for (const auto& run : runs) {
            auto bytes = TRY(memory.translate_gpa(run.gpa, run.length));
            if (::pwrite(fd.get(), bytes.data(), bytes.size(), off_t(run.offset))
                != ssize_t(bytes.size()))
                return Error::from_errno("pwrite");
        }
        // Read-only for whoever gets it, as a dmabuf of guest pages is to QEMU.
        if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0)
            return Error::from_errno("F_ADD_SEALS");
        return fd;
    }
};

} // namespace

UdmabufLimits read_udmabuf_limits()
{
    UdmabufLimits defaults;
    return UdmabufLimits { read_parameter("list_limit", defaults.list_limit),
        read_parameter("size_limit_mb", defaults.size_limit_mb) };
}

Result<std::unique_ptr<DmabufExporter>> make_udmabuf_exporter()
{
    Fd device(::open("/dev/udmabuf", O_RDWR | O_CLOEXEC));
    if (!device)
        return Error::from_errno("/dev/udmabuf");
    return std::unique_ptr<DmabufExporter>(
        std::make_unique<UdmabufExporter>(std::move(device), read_udmabuf_limits()));
}

std::unique_ptr<DmabufExporter> make_memfd_standin_exporter()
{
    return std::make_unique<MemfdStandinExporter>();
}

} // namespace vgpu::virtio
