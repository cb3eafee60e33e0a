// libFuzzer target for the virtqueue walker: SplitQueue (avail/used rings, EVENT_IDX, notify),
// walk_chain (direct and indirect descriptors) and Reader/Writer, on guest memory the input
// fills. The input format is in fuzz_virtqueue_input.h. Each input runs twice on fresh memory:
// once through an echo device written here (it checks the Reader/Writer contract) and once
// through virtio_gpu::Device::process_queue (the real device loop).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>

#include "base/fd.h"
#include "base/log.h"
#include "base/memory_map.h"
#include "fuzz_virtqueue_input.h"
#include "virtio/guest_memory.h"
#include "virtio/reader_writer.h"
#include "virtio/split_queue.h"
#include "virtio_gpu/device.h"

namespace {

using namespace vgpu;
using namespace vgpu::fuzz;

// Checks the walker's contract (a chain that pop() returned is readable and writable in full): a
// violation must show as a crash, in release builds too (so not assert()).
#define FUZZ_CHECK(expression)                                                                     \
    do {                                                                                           \
        if (!(expression)) {                                                                       \
            std::fprintf(stderr, "fuzz_virtqueue: check failed: %s (%s:%d)\n", #expression,        \
                __FILE__, __LINE__);                                                               \
            std::abort();                                                                          \
        }                                                                                          \
    } while (0)

[[noreturn]] void setup_failed(const char* what)
{
    std::fprintf(stderr, "fuzz_virtqueue: setup failed: %s\n", what);
    std::abort();
}

// Guest memory and the call eventfd are made once: a memfd, two mmaps and an eventfd per input
// would cost more than the work under test. Each input starts from zeroed memory.
struct Guest {
    Fd memfd;
    MemoryMap image; // all of the memfd, where inputs are copied
    virtio::GuestMemory memory;
    Fd call;
};

void set_up(Guest& g)
{
    // Guest-caused warnings are rate-limited by wall-clock time, which would make runs
    // non-deterministic (and slow); errors still show.
    log::set_level(log::Level::Error);
    int fd = ::memfd_create("fuzz-guest-ram", MFD_CLOEXEC);
    if (fd < 0)
        setup_failed("memfd_create");
    g.memfd = Fd(fd);
    if (::ftruncate(fd, off_t(MEMFD_SIZE)) < 0)
        setup_failed("ftruncate");
    auto map = MemoryMap::map(fd, MEMFD_SIZE, 0, MemoryMap::Access::ReadWrite);
    if (!map)
        setup_failed("mmap");
    g.image = map.release_value();
    const virtio::RegionDescription regions[] = {
        { REGION0_GPA, REGION_SIZE, REGION0_VA, REGION0_FD_OFFSET },
        { REGION1_GPA, REGION_SIZE, REGION1_VA, REGION1_FD_OFFSET },
    };
    auto fd0 = g.memfd.dup();
    auto fd1 = g.memfd.dup();
    if (!fd0 || !fd1)
        setup_failed("dup");
    const Fd fds[] = { fd0.release_value(), fd1.release_value() };
    if (!g.memory.replace(regions, fds))
        setup_failed("GuestMemory::replace");
    auto call = make_eventfd();
    if (!call)
        setup_failed("eventfd");
    g.call = call.release_value();
}

Guest& guest()
{
    static Guest g;
    static const bool ready = (set_up(g), true);
    (void)ready;
    return g;
}

void load_image(Guest& g, std::span<const uint8_t> image)
{
    std::memset(g.image.data(), 0, g.image.size());
    std::memcpy(g.image.data(), image.data(), std::min<size_t>(image.size(), g.image.size()));
    (void)eventfd_drain(g.call.get());
}

// Configures and starts a queue the way the vhost backend does after SET_VRING_*. Returns false
// when the input's rings are not in guest memory (start() refuses them).
bool start_queue(virtio::SplitQueue& queue, const VirtqueueInput& input, Guest& g)
{
    // Every size we make is a power of two in range, so set_size cannot fail.
    FUZZ_CHECK(queue.set_size(queue_size_of(input.size_log2)).has_value());
    uint64_t desc = frontend_va(uint64_t(input.desc) * 2) & ~uint64_t(15);
    uint64_t avail = frontend_va(uint64_t(input.avail) * 2) & ~uint64_t(1);
    uint64_t used = frontend_va(uint64_t(input.used) * 2) & ~uint64_t(3);
    FUZZ_CHECK(queue.set_addresses(desc, avail, used).has_value());
    FUZZ_CHECK(queue.set_base(input.base).has_value());
    queue.set_indirect(input.flags & INPUT_F_INDIRECT);
    queue.set_event_idx(input.flags & INPUT_F_EVENT_IDX);
    if (input.flags & INPUT_F_CALL) {
        auto call = g.call.dup();
        if (!call)
            setup_failed("dup(call)");
        queue.set_call(call.release_value());
    }
    queue.set_enabled(true);
    return queue.start(g.memory).has_value();
}

// A device that echoes what it reads: reads the readable part in chunks (up to a limit, then
// skips the rest) and writes it back into the writable part. Returns the bytes written.
uint32_t echo(const virtio::DescriptorChain& chain, const virtio::GuestMemory& memory, size_t chunk)
{
    constexpr size_t read_limit = 4096;
    static std::array<std::byte, read_limit> buffer;
    virtio::Reader reader(memory, chain.readable);
    virtio::Writer writer(memory, chain.writable);
    FUZZ_CHECK(reader.remaining() == chain.readable_bytes);
    FUZZ_CHECK(writer.remaining() == chain.writable_bytes);

    size_t copied = 0;
    while (reader.remaining() > 0 && copied < read_limit) {
        size_t n = std::min({ chunk, reader.remaining(), read_limit - copied });
        FUZZ_CHECK(reader.read(std::span(buffer).subspan(copied, n)).has_value());
        copied += n;
    }
    FUZZ_CHECK(reader.skip(reader.remaining()).has_value());
    FUZZ_CHECK(reader.consumed() == chain.readable_bytes);
    std::byte one[1];
    FUZZ_CHECK(!reader.read(one).has_value());

    for (size_t done = 0; done < copied && writer.remaining() > 0;) {
        size_t n = std::min({ chunk, copied - done, writer.remaining() });
        FUZZ_CHECK(writer.write(std::span(buffer).subspan(done, n)).has_value());
        done += n;
    }
    if (writer.remaining() == 0)
        FUZZ_CHECK(!writer.write(one).has_value());
    return uint32_t(writer.written());
}

// The device loop as virtio_gpu::Device::process_queue runs it, with the echo device.
void run_echo(const VirtqueueInput& input, Guest& g)
{
    virtio::SplitQueue queue(0);
    if (!start_queue(queue, input, g))
        return;
    size_t chunk = size_t(input.chunk) + 1;
    do {
        while (auto chain = queue.pop(g.memory))
            queue.push(chain->head, echo(*chain, g.memory, chunk));
        queue.notify();
    } while (queue.arm_and_check());
    queue.stop();
}

void run_device(const VirtqueueInput& input, Guest& g)
{
    size_t index = (input.flags & INPUT_F_CURSOR) ? virtio_gpu::Device::CURSOR_QUEUE
                                                  : virtio_gpu::Device::CONTROL_QUEUE;
    virtio::SplitQueue queue { uint16_t(index) };
    if (!start_queue(queue, input, g))
        return;
    virtio_gpu::Device device(virtio_gpu::DeviceOptions {});
    device.process_queue(queue, g.memory);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < sizeof(VirtqueueInput))
        return 0;
    VirtqueueInput input;
    std::memcpy(&input, data, sizeof(input));
    auto image = std::span(data + sizeof(input), size - sizeof(input));
    Guest& g = guest();

    load_image(g, image);
    run_echo(input, g);
    load_image(g, image);
    run_device(input, g);
    return 0;
}
