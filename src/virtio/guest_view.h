// A linear, read-only view of guest memory that is scattered over guest-physical ranges (a blob
// resource's pages), built once and read in place by whoever shows it. Three kinds:
//   - Span: the ranges are one contiguous piece of one region: a pointer into the region's
//     mapping, which the view keeps alive (a memory-table change does not unmap it under us);
//   - Mapped: the pieces of the region fds mapped side by side into one reserved address range,
//     one mapping per contiguous run (never a page at a time, never per frame);
//   - Gathered: a host copy, refilled from guest memory by gather() (at each flush), for ranges
//     that cannot be mapped: not page-aligned, a region offset that is not page-aligned, more
//     runs than the mapping budget allows, or an unsealed fd we cannot protect against truncation.
// The view holds its own mappings: it stays valid after the memory table changes (it then shows
// what the old table's memory holds; the device rebuilds its views from the new table).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/memory_map.h"
#include "base/result.h"

namespace vgpu::virtio {

class GuestMemory;

struct GuestRange {
    uint64_t gpa = 0;
    uint64_t length = 0;
};

// A piece of a linear layout of guest ranges: `length` bytes at `gpa`, at `offset` in the layout,
// inside one region.
struct GuestRun {
    uint64_t gpa;
    uint64_t length;
    uint64_t offset;
};

// The first `size` bytes of `ranges` end to end, merged where a range continues the previous
// and split where a region ends; fails when they do not cover `size` or leave guest memory.
Result<std::vector<GuestRun>> guest_runs(
    const GuestMemory& memory, std::span<const GuestRange> ranges, uint64_t size);

class GuestView {
public:
    enum class Kind {
        Span,
        Mapped,
        Gathered,
    };
    static const char* kind_name(Kind kind);

    // The first `size` bytes of `ranges` laid end to end (the ranges must cover them, each must
    // lie in guest memory). A Mapped view needs one mapping per run: with more runs than
    // `mapping_budget` it is Gathered instead. A Gathered view allocates `size` bytes (the caller
    // accounts them: host_bytes()); ERR if that allocation fails.
    static Result<std::unique_ptr<GuestView>> create(const GuestMemory& memory,
        std::span<const GuestRange> ranges, uint64_t size, size_t mapping_budget);
    ~GuestView();
    GuestView(const GuestView&) = delete;
    GuestView& operator=(const GuestView&) = delete;

    Kind kind() const { return m_kind; }
    const std::byte* data() const { return m_data; }
    size_t size() const { return m_size; }
    size_t mappings() const { return m_mappings; } // what it took from the budget
    size_t runs() const { return m_runs.size(); }
    uint64_t host_bytes() const { return m_kind == Kind::Gathered ? m_size : 0; }

    // A Gathered view copies [offset, offset + length) of the ranges from guest memory (clipped
    // to the view); the other kinds are the guest memory already and do nothing. Returns the
    // bytes copied.
    Result<uint64_t> gather(const GuestMemory& memory, uint64_t offset, uint64_t length);

private:
    GuestView() = default;
    bool try_map(const GuestMemory& memory, size_t mapping_budget);
    void unmap();
    using Run = GuestRun;

    Kind m_kind = Kind::Gathered;
    const std::byte* m_data = nullptr;
    size_t m_size = 0;
    std::vector<Run> m_runs;
    std::shared_ptr<const MemoryMap> m_region; // Span: the region's mapping
    std::byte* m_reserved = nullptr; // Mapped: the reserved range
    size_t m_reserved_size = 0;
    bool m_protected = false;
    size_t m_mappings = 0;
    std::unique_ptr<std::byte[]> m_copy; // Gathered
};

} // namespace vgpu::virtio
