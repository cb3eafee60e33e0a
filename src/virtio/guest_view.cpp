#include "virtio/guest_view.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <new>

#include "base/checked.h"
#include "base/sigbus.h"
#include "virtio/guest_memory.h"

namespace vgpu::virtio {

const char* GuestView::kind_name(Kind kind)
{
    switch (kind) {
    case Kind::Span:
        return "span";
    case Kind::Mapped:
        return "mapped";
    case Kind::Gathered:
        return "gathered";
    }
    return "?";
}

namespace {
uint64_t page_size() { return uint64_t(::sysconf(_SC_PAGESIZE)); }
uint64_t round_up(uint64_t value, uint64_t page) { return (value + page - 1) / page * page; }
} // namespace

Result<std::vector<GuestRun>> guest_runs(
    const GuestMemory& memory, std::span<const GuestRange> ranges, uint64_t size)
{
    std::vector<GuestRun> runs;
    uint64_t offset = 0;
    for (const auto& range : ranges) {
        if (offset == size)
            break;
        uint64_t length = std::min(range.length, size - offset);
        if (length == 0)
            continue;
        if (!checked_add(range.gpa, length))
            return Error::format("guest range {:#x}+{:#x} wraps", range.gpa, length);
        if (!runs.empty() && runs.back().gpa + runs.back().length == range.gpa)
            runs.back().length += length;
        else
            runs.push_back(GuestRun { range.gpa, length, offset });
        offset += length;
    }
    if (offset < size)
        return Error::format("the ranges cover {} of the view's {} bytes", offset, size);
    std::vector<GuestRun> split;
    for (auto run : runs) {
        while (run.length) {
            auto first = TRY(memory.place(run.gpa, 1));
            uint64_t piece = std::min(run.length, first.region_end - run.gpa);
            TRY(memory.place(run.gpa, piece)); // checked, also for the gathered kind
            split.push_back(GuestRun { run.gpa, piece, run.offset });
            run.gpa += piece;
            run.offset += piece;
            run.length -= piece;
        }
    }
    return split;
}

Result<std::unique_ptr<GuestView>> GuestView::create(const GuestMemory& memory,
    std::span<const GuestRange> ranges, uint64_t size, size_t mapping_budget)
{
    if (size == 0)
        return Error::format("a view of 0 bytes");
    if (size > SIZE_MAX / 2)
        return Error::format("a view of {} bytes is too large", size);
    std::unique_ptr<GuestView> view(new GuestView());
    view->m_size = size_t(size);
    view->m_runs = TRY(guest_runs(memory, ranges, size));

    if (view->m_runs.size() == 1) {
        auto placed = TRY(memory.place(view->m_runs[0].gpa, size));
        view->m_kind = Kind::Span;
        view->m_region = std::move(placed.map);
        view->m_data = placed.host;
        return view;
    }
    if (view->try_map(memory, mapping_budget))
        return view;
    view->m_copy.reset(new (std::nothrow) std::byte[view->m_size]);
    if (!view->m_copy)
        return Error::format("no memory for a {}-byte copy of a scattered view", size);
    view->m_kind = Kind::Gathered;
    view->m_data = view->m_copy.get();
    TRY(view->gather(memory, 0, size));
    return view;
}

bool GuestView::try_map(const GuestMemory& memory, size_t mapping_budget)
{
    const uint64_t page = page_size();
    if (m_runs.size() > mapping_budget)
        return false;
    bool all_sealed = true;
    for (size_t i = 0; i < m_runs.size(); ++i) {
        const auto& run = m_runs[i];
        auto placed = memory.place(run.gpa, run.length);
        if (!placed)
            return false;
        bool last = i + 1 == m_runs.size();
        if (run.gpa % page || placed->fd_offset % page || (!last && run.length % page))
            return false;
        all_sealed &= placed->sealed;
    }
    size_t reserved = size_t(round_up(m_size, page));
    void* base = ::mmap(
        nullptr, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return false;
    m_reserved = static_cast<std::byte*>(base);
    m_reserved_size = reserved;
    for (const auto& run : m_runs) {
        auto placed = memory.place(run.gpa, run.length);
        void* at = ::mmap(m_reserved + run.offset, size_t(round_up(run.length, page)), PROT_READ,
            MAP_SHARED | MAP_FIXED, placed->fd, off_t(placed->fd_offset));
        if (at == MAP_FAILED) {
            unmap();
            return false;
        }
    }
    // A peer that can shrink the file must not kill us with a SIGBUS on the lost pages.
    if (!all_sealed) {
        if (!sigbus::protect(m_reserved, m_reserved_size)) {
            unmap();
            return false;
        }
        m_protected = true;
    }
    m_kind = Kind::Mapped;
    m_data = m_reserved;
    m_mappings = m_runs.size();
    return true;
}

void GuestView::unmap()
{
    if (!m_reserved)
        return;
    if (m_protected)
        sigbus::unprotect(m_reserved);
    ::munmap(m_reserved, m_reserved_size);
    m_reserved = nullptr;
    m_reserved_size = 0;
    m_protected = false;
    m_mappings = 0;
}

GuestView::~GuestView() { unmap(); }

Result<uint64_t> GuestView::gather(const GuestMemory& memory, uint64_t offset, uint64_t length)
{
    if (m_kind != Kind::Gathered || offset >= m_size)
        return uint64_t(0);
    uint64_t end = std::min<uint64_t>(m_size, offset + std::min<uint64_t>(length, m_size));
    uint64_t copied = 0;
    for (const auto& run : m_runs) {
        uint64_t begin = std::max(offset, run.offset);
        uint64_t stop = std::min(end, run.offset + run.length);
        if (begin >= stop)
            continue;
        TRY(memory.read(
            run.gpa + (begin - run.offset), std::span(m_copy.get() + begin, size_t(stop - begin))));
        copied += stop - begin;
    }
    return copied;
}

} // namespace vgpu::virtio
