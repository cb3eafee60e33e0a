// QemuDisplay on a socketpair: the test plays QEMU on the other end, reading and answering by
// hand between turns of the device loop, so that the order of events within a loop turn is
// exactly the one a test wants (a close and a reset in the same turn, a QEMU that stops reading).
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <optional>
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
            height, width * 4, Rect { 0, 0, width, height }, pixels };
        return output;
    }

    std::unique_ptr<EventLoop> loop;
    std::unique_ptr<Peer> peer;
    std::unique_ptr<QemuDisplay> display;
};

TEST(UpdateMessage, PayloadOf4GiBOrMore_IsRefused)
{
    // The UPDATE header's size is 32 bits: a 65536 x 16384 rectangle (4 GiB of pixels) does not
    // fit and must never go out with a truncated size. Nothing is read from the pixels here.
    auto format = *virtio_gpu::format_info(uint32_t(virtio_gpu::Format::B8G8R8X8Unorm));
    virtio_gpu::ScanoutSource source { virtio_gpu::ResourceId(1), format, 65536, 16385, 65536 * 4,
        Rect { 0, 0, 65536, 16385 }, virtio_gpu::PixelStorage::allocate(1, 1, 4, format) };
    EXPECT_FALSE(UpdateMessage::create(0, source, Rect { 0, 0, 65536, 16384 }));
    auto fits = UpdateMessage::create(0, source, Rect { 0, 0, 65536, 16383 });
    ASSERT_TRUE(fits);
    GpuHeader header;
    auto head = (*fits)->next();
    ASSERT_GE(head.size(), sizeof(header));
    std::memcpy(&header, head.data(), sizeof(header));
    EXPECT_EQ(uint64_t(header.size), sizeof(GpuUpdate) + uint64_t(65536) * 16383 * 4);
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

} // namespace
} // namespace vgpu::display::qemu
