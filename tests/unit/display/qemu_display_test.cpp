// QemuDisplay on a socketpair: the test plays QEMU on the other end, reading and answering by
// hand between turns of the device loop, so that the order of events within a loop turn is
// exactly the one a test wants (a close and a reset in the same turn, a QEMU that stops reading).
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "display/qemu/qemu_display.h"
#include "display/qemu/update_message.h"

namespace vgpu::display::qemu {
namespace {

using namespace std::chrono_literals;

struct PeerMessage {
    GpuHeader header {};
    std::vector<std::byte> payload;
};

#define ASSERT_TRUE_OR(x)                                                                          \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            ADD_FAILURE() << #x;                                                                   \
            return {};                                                                             \
        }                                                                                          \
    } while (0)

// QEMU's end: reads whole messages when asked, answers when told to.
class Peer {
public:
    explicit Peer(Fd socket)
        : m_socket(std::move(socket))
    {
    }
    // The next whole message, if one arrives within `timeout`.
    std::optional<PeerMessage> read(std::chrono::milliseconds timeout = 1000ms)
    {
        PeerMessage message;
        if (!read_exact(reinterpret_cast<std::byte*>(&message.header), sizeof(GpuHeader), timeout))
            return std::nullopt;
        message.payload.resize(message.header.size);
        if (message.header.size
            && !read_exact(message.payload.data(), message.header.size, timeout))
            return std::nullopt;
        return message;
    }
    void reply(GpuRequest request, std::span<const std::byte> payload)
    {
        GpuHeader header { uint32_t(request), GPU_FLAG_REPLY, uint32_t(payload.size()) };
        ASSERT_EQ(
            ::send(m_socket.get(), &header, sizeof(header), MSG_NOSIGNAL), ssize_t(sizeof(header)));
        if (!payload.empty()) {
            ASSERT_EQ(::send(m_socket.get(), payload.data(), payload.size(), MSG_NOSIGNAL),
                ssize_t(payload.size()));
        }
    }
    void close() { m_socket.reset(); }
    int fd() const { return m_socket.get(); }

private:
    bool read_exact(std::byte* out, size_t size, std::chrono::milliseconds timeout)
    {
        size_t done = 0;
        while (done < size) {
            pollfd p { m_socket.get(), POLLIN, 0 };
            if (::poll(&p, 1, int(timeout.count())) <= 0)
                return false;
            ssize_t n = ::recv(m_socket.get(), out + done, size - done, 0);
            if (n <= 0)
                return false;
            done += size_t(n);
        }
        return true;
    }
    Fd m_socket;
};

class QemuDisplayTest : public ::testing::Test {
protected:
    void SetUp() override { make(PacingOptions {}); }
    void make(PacingOptions pacing)
    {
        display.reset();
        loop = std::move(*EventLoop::create());
        int pair[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
        peer = std::make_unique<Peer>(Fd(pair[1]));
        ours = Fd(::dup(pair[0]));
        auto created = QemuDisplay::create(*loop, Fd(pair[0]), pacing);
        ASSERT_TRUE(created) << created.error().message;
        display = created.release_value();
    }
    // GET_PROTOCOL_FEATURES answered with EDID, as QEMU 10 does (it also offers DMABUF2).
    void handshake()
    {
        auto request = peer->read();
        ASSERT_TRUE(request);
        ASSERT_EQ(request->header.request, uint32_t(GpuRequest::GetProtocolFeatures));
        uint64_t features = (1u << GPU_PF_EDID) | (1u << GPU_PF_DMABUF2);
        peer->reply(GpuRequest::GetProtocolFeatures, std::as_bytes(std::span(&features, 1)));
        for (int i = 0; i < 100 && !display->protocol_features(); ++i)
            ASSERT_TRUE(loop->run_once(10ms));
        ASSERT_TRUE(display->protocol_features());
        auto set = peer->read();
        ASSERT_TRUE(set);
        ASSERT_EQ(set->header.request, uint32_t(GpuRequest::SetProtocolFeatures));
    }
    void run_for(std::chrono::milliseconds duration)
    {
        auto end = std::chrono::steady_clock::now() + duration;
        while (std::chrono::steady_clock::now() < end)
            ASSERT_TRUE(loop->run_once(5ms));
    }

    // An output showing a whole W x H resource (XRGB8888).
    Output make_output(uint32_t index, uint32_t width, uint32_t height)
    {
        auto format = *virtio_gpu::format_info(uint32_t(virtio_gpu::Format::B8G8R8X8Unorm));
        auto pixels = virtio_gpu::PixelStorage::allocate(width, height, width * 4, format);
        for (size_t i = 0; i < pixels->size(); ++i)
            pixels->data()[i] = std::byte(uint8_t(i * 7 + 1));
        Output output;
        output.index = index;
        output.source = virtio_gpu::ScanoutSource { virtio_gpu::ResourceId(1), format, width,
            height, width * 4, Rect { 0, 0, width, height }, pixels, nullptr, 0, nullptr };
        return output;
    }

    // A send buffer that holds about one small message: QEMU stops reading at once.
    int peer_fd() const { return peer->fd(); }
    void shrink_send_buffer()
    {
        int size = 4096;
        ASSERT_EQ(::setsockopt(ours.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
    }
    // Reads every message QEMU has been sent, running the loop in between (the display sends
    // more as its socket drains), until nothing comes for a while.
    std::vector<PeerMessage> drain_peer()
    {
        std::vector<std::byte> bytes;
        auto quiet_since = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - quiet_since < 200ms) {
            ASSERT_TRUE_OR(loop->run_once(2ms));
            std::byte chunk[65536];
            ssize_t n;
            while ((n = ::recv(peer->fd(), chunk, sizeof(chunk), MSG_DONTWAIT)) > 0) {
                bytes.insert(bytes.end(), chunk, chunk + n);
                quiet_since = std::chrono::steady_clock::now();
            }
        }
        std::vector<PeerMessage> messages;
        size_t at = 0;
        while (bytes.size() - at >= sizeof(GpuHeader)) {
            PeerMessage m;
            std::memcpy(&m.header, bytes.data() + at, sizeof(GpuHeader));
            at += sizeof(GpuHeader);
            ASSERT_TRUE_OR(bytes.size() - at >= m.header.size);
            m.payload.assign(bytes.begin() + long(at), bytes.begin() + long(at + m.header.size));
            at += m.header.size;
            messages.push_back(std::move(m));
        }
        EXPECT_EQ(at, bytes.size()) << "a message was cut off";
        return messages;
    }

    std::unique_ptr<EventLoop> loop;
    std::unique_ptr<Peer> peer;
    Fd ours; // a second descriptor of the display's end
    std::unique_ptr<QemuDisplay> display;
};

TEST(UpdateMessage, PayloadOf4GiBOrMore_IsRefused)
{
    // The UPDATE header's size is 32 bits: a 65536 x 16384 rectangle (4 GiB of pixels) does not
    // fit and must never go out with a truncated size. Nothing is read from the pixels here.
    auto format = *virtio_gpu::format_info(uint32_t(virtio_gpu::Format::B8G8R8X8Unorm));
    virtio_gpu::ScanoutSource source { virtio_gpu::ResourceId(1), format, 65536, 16385, 65536 * 4,
        Rect { 0, 0, 65536, 16385 }, virtio_gpu::PixelStorage::allocate(1, 1, 4, format), nullptr,
        0, nullptr };
    EXPECT_FALSE(UpdateMessage::create(0, source, Rect { 0, 0, 65536, 16384 }));
    auto fits = UpdateMessage::create(0, source, Rect { 0, 0, 65536, 16383 });
    ASSERT_TRUE(fits);
    GpuHeader header;
    auto head = (*fits)->next();
    ASSERT_GE(head.size(), sizeof(header));
    std::memcpy(&header, head.data(), sizeof(header));
    EXPECT_EQ(uint64_t(header.size), sizeof(GpuUpdate) + uint64_t(65536) * 16383 * 4);
}

namespace {
// Takes every byte a message has left, at most `limit` of them.
std::vector<std::byte> drain(OutgoingMessage& message, size_t limit = SIZE_MAX)
{
    std::vector<std::byte> out;
    while (out.size() < limit) {
        auto piece = message.next();
        if (piece.empty())
            break;
        size_t n = std::min(piece.size(), limit - out.size());
        out.insert(out.end(), piece.begin(), piece.begin() + std::ptrdiff_t(n));
        message.advance(n);
    }
    return out;
}

// An UPDATE of guest memory (a blob's framebuffer) told to let go part way: what it still sends
// is the frame as it was, whatever the guest writes afterwards; it stops being a reader then, and
// also once it has read its last row.
void check_let_go(uint32_t format_code, uint32_t stride_extra)
{
    constexpr uint32_t width = 300, height = 200; // rows of 1200 bytes: many 64 KiB chunks
    const uint32_t stride = width * 4 + stride_extra;
    auto format = *virtio_gpu::format_info(format_code);
    auto memory = std::make_shared<std::vector<std::byte>>(size_t(stride) * height);
    for (size_t i = 0; i < memory->size(); ++i)
        (*memory)[i] = std::byte(uint8_t(i * 13 + i / 977));
    auto storage = virtio_gpu::PixelStorage::wrap(
        memory, memory->data(), width, height, stride, format);
    ASSERT_TRUE(storage->guest_memory());
    virtio_gpu::ScanoutSource source { virtio_gpu::ResourceId(1), format, width, height, stride,
        Rect { 0, 0, width, height }, storage, nullptr, 0, nullptr };

    // The whole message from an untouched copy, for comparison.
    auto reference_message = UpdateMessage::create(0, source, Rect { 0, 0, width, height });
    ASSERT_TRUE(reference_message);
    auto reference = drain(**reference_message);
    EXPECT_EQ(storage->readers(), 0u) << "a message that read its last row is no reader";

    auto message = UpdateMessage::create(0, source, Rect { 0, 0, width, height });
    ASSERT_TRUE(message);
    EXPECT_EQ(storage->readers(), 1u);
    bool unread = false;
    storage->when_unread([&] { unread = true; });
    auto first = drain(**message, 100000);
    EXPECT_FALSE(unread);
    storage->make_readers_let_go();
    EXPECT_TRUE(unread);
    EXPECT_EQ(storage->readers(), 0u);
    std::fill(memory->begin(), memory->end(), std::byte(0x77)); // the guest reuses its pages
    auto rest = drain(**message);
    first.insert(first.end(), rest.begin(), rest.end());
    EXPECT_EQ(first.size(), reference.size());
    EXPECT_TRUE(first == reference) << "the rest of the UPDATE is not the frame it began with";
}
} // namespace

TEST(UpdateMessage, GuestMemoryInPlace_LetGoPartWay_SendsTheFrameAsItWas)
{
    check_let_go(uint32_t(virtio_gpu::Format::B8G8R8X8Unorm), 0); // straight from the pixels
}

TEST(UpdateMessage, GuestMemoryConverted_LetGoPartWay_SendsTheFrameAsItWas)
{
    check_let_go(uint32_t(virtio_gpu::Format::R8G8B8X8Unorm), 64); // converted in chunks
}

TEST_F(QemuDisplayTest, DamageLargerThanTheUpdateLimit_GoesOutAsBandsOfRows_EachSizedRight)
{
    PacingOptions pacing;
    pacing.max_update_bytes = 64 << 10;
    make(pacing);
    handshake();
    auto output = make_output(0, 256, 200); // 200 KiB of pixels
    display->output_changed(output);
    display->output_damaged(output, output.full());
    run_for(50ms);
    auto scanout = peer->read();
    ASSERT_TRUE(scanout);
    EXPECT_EQ(scanout->header.request, uint32_t(GpuRequest::Scanout));
    uint32_t next_row = 0;
    while (next_row < 200) {
        auto update = peer->read();
        ASSERT_TRUE(update) << "rows from " << next_row << " missing";
        ASSERT_EQ(update->header.request, uint32_t(GpuRequest::Update));
        GpuUpdate u;
        std::memcpy(&u, update->payload.data(), sizeof(u));
        EXPECT_EQ(u.x, 0u);
        EXPECT_EQ(u.y, next_row);
        EXPECT_EQ(u.width, 256u);
        EXPECT_EQ(update->header.size, sizeof(GpuUpdate) + size_t(u.width) * u.height * 4);
        EXPECT_LE(size_t(u.width) * u.height * 4, pacing.max_update_bytes);
        // The band's pixels are the resource's rows.
        EXPECT_EQ(std::memcmp(update->payload.data() + sizeof(u), output.source->pixel(0, u.y),
                      size_t(u.width) * u.height * 4),
            0);
        next_row += u.height;
        ASSERT_GT(u.height, 0u);
    }
    EXPECT_EQ(next_row, 200u);
}

TEST_F(
    QemuDisplayTest, SocketClosesWhileAQueryWaits_ThenTheSinkIsDestroyedInTheSameTurn_AnsweredOnce)
{
    handshake();
    int answers = 0;
    bool answered_nothing = false;
    display->query_display_info([&](std::optional<virtio_gpu::RespDisplayInfo> info) {
        ++answers;
        answered_nothing = !info;
    });
    auto request = peer->read();
    ASSERT_TRUE(request);
    EXPECT_EQ(request->header.request, uint32_t(GpuRequest::GetDisplayInfo));
    // QEMU goes away without answering: the loop turn that sees it fails the query (posted)...
    peer->close();
    for (int i = 0; i < 100 && display->open(); ++i)
        ASSERT_TRUE(loop->run_once(10ms));
    ASSERT_FALSE(display->open());
    // ...and before the posted task runs, the sink goes too (GPU_SET_SOCKET, RESET_DEVICE,
    // SET_STATUS 0 or a disconnect in the same turn).
    display.reset();
    run_for(50ms);
    EXPECT_EQ(answers, 1);
    EXPECT_TRUE(answered_nothing);
}

TEST_F(QemuDisplayTest, DestroyedWhileAQueryWaits_AnsweredOnceWithNothingFromTheLoop)
{
    handshake();
    int answers = 0;
    display->query_edid(0, [&](std::optional<virtio_gpu::RespEdid> edid) {
        ++answers;
        EXPECT_FALSE(edid);
    });
    display.reset();
    EXPECT_EQ(answers, 0) << "answered from inside the destructor";
    run_for(50ms);
    EXPECT_EQ(answers, 1);
}

TEST_F(QemuDisplayTest, QueryAnswered_ThenTheSocketCloses_NotAnsweredAgain)
{
    handshake();
    int answers = 0;
    display->query_display_info([&](std::optional<virtio_gpu::RespDisplayInfo> info) {
        ++answers;
        EXPECT_TRUE(info);
    });
    auto request = peer->read();
    ASSERT_TRUE(request);
    virtio_gpu::RespDisplayInfo info {};
    info.pmodes[0].enabled = 1;
    peer->reply(GpuRequest::GetDisplayInfo, std::as_bytes(std::span(&info, 1)));
    for (int i = 0; i < 100 && answers == 0; ++i)
        ASSERT_TRUE(loop->run_once(10ms));
    peer->close();
    run_for(50ms);
    display.reset();
    run_for(50ms);
    EXPECT_EQ(answers, 1);
}

CursorState cursor_with(uint32_t seed, uint32_t x, uint32_t y)
{
    CursorState cursor;
    cursor.image = virtio_gpu::CursorImage { seed % 64, 0, std::vector<uint32_t>(64 * 64, seed) };
    cursor.x = x;
    cursor.y = y;
    return cursor;
}

TEST_F(QemuDisplayTest, QemuStopsReading_CursorAndScanoutChangesAreCoalesced_TheLatestArrives)
{
    handshake();
    shrink_send_buffer();
    auto big = make_output(0, 64, 48);
    auto small = make_output(0, 32, 16);
    // QEMU's main loop is busy: 10000 cursor images (16 KiB each) and 1000 mode changes.
    for (uint32_t i = 1; i <= 10000; ++i) {
        display->cursor_changed(0, cursor_with(i, i % 100, i % 50), false);
        if (i % 10 == 0)
            display->output_changed(i % 20 ? big : small);
        display->cursor_changed(0, cursor_with(i, i % 97, i % 31), true);
    }
    EXPECT_GT(display->stats().coalesced, 9000u);
    // QEMU reads again: a few messages, ending with the latest state.
    auto messages = drain_peer();
    size_t cursor_updates = 0;
    std::optional<PeerMessage> last_cursor, last_scanout;
    for (auto& m : messages) {
        if (m.header.request == uint32_t(GpuRequest::CursorUpdate)) {
            ++cursor_updates;
            last_cursor = m;
        }
        if (m.header.request == uint32_t(GpuRequest::CursorPos)
            || m.header.request == uint32_t(GpuRequest::CursorUpdate))
            last_cursor = m;
        if (m.header.request == uint32_t(GpuRequest::Scanout))
            last_scanout = m;
    }
    EXPECT_LT(messages.size(), 50u) << "QEMU gets a backlog of stale states";
    EXPECT_LE(cursor_updates, 5u);
    ASSERT_TRUE(last_cursor);
    GpuCursorPos pos;
    std::memcpy(&pos, last_cursor->payload.data(), sizeof(pos));
    EXPECT_EQ(pos.x, 10000u % 97);
    EXPECT_EQ(pos.y, 10000u % 31);
    // The image QEMU ends up with is the latest one.
    std::optional<PeerMessage> last_image;
    for (auto& m : messages)
        if (m.header.request == uint32_t(GpuRequest::CursorUpdate))
            last_image = m;
    ASSERT_TRUE(last_image);
    GpuCursorUpdate update;
    ASSERT_EQ(last_image->payload.size(), sizeof(update));
    std::memcpy(&update, last_image->payload.data(), sizeof(update));
    EXPECT_EQ(update.data[0], 10000u);
    ASSERT_TRUE(last_scanout);
    GpuScanout scanout;
    std::memcpy(&scanout, last_scanout->payload.data(), sizeof(scanout));
    EXPECT_EQ(scanout.width, 32u); // 10000 % 20 == 0: the last change was to `small`
}

TEST_F(QemuDisplayTest, QemuFloodsTheSocket_TheChannelClosesWithoutReadingItAll)
{
    ours.reset(); // once the display closes its end, the flood's sends must fail
    handshake();
    int answers = 0;
    display->query_edid(0, [&](std::optional<virtio_gpu::RespEdid>) { ++answers; });
    ASSERT_TRUE(peer->read());
    // A reply header, then bytes that never stop: they must not pile up in our memory, and the
    // loop must not read them for ever.
    std::atomic<bool> stop { false };
    std::atomic<uint64_t> written { 0 };
    int flood_fd = ::dup(peer_fd());
    std::thread flood([&] {
        std::vector<std::byte> junk(65536, std::byte { 0x42 });
        GpuHeader header { uint32_t(GpuRequest::GetEdid), GPU_FLAG_REPLY,
            sizeof(virtio_gpu::RespEdid) };
        std::memcpy(junk.data(), &header, sizeof(header));
        while (!stop && written < (uint64_t(256) << 20)) {
            ssize_t n = ::send(flood_fd, junk.data(), junk.size(), MSG_NOSIGNAL);
            if (n <= 0)
                break;
            written += uint64_t(n);
        }
        ::close(flood_fd);
    });
    for (int i = 0; i < 200 && display->open(); ++i)
        ASSERT_TRUE(loop->run_once(10ms));
    bool closed = !display->open();
    stop = true;
    flood.join();
    EXPECT_TRUE(closed);
    EXPECT_LT(written.load(), uint64_t(256) << 20) << "the whole flood was read";
    run_for(20ms);
    EXPECT_EQ(answers, 1);
}

} // namespace
} // namespace vgpu::display::qemu
