// vgpu-view's model of a leased output, fed records as the backend sends them.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "export/codec.h"
#include "view/view_state.h"

namespace vgpu::view {
namespace {

template <ex::Body T>
ex::Message message(const T& body, std::vector<Fd> fds = {})
{
    auto packet = ex::encode(body, 0);
    auto m = ex::parse(packet, std::move(fds));
    EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().reason);
    return m ? std::move(m.value()) : ex::Message {};
}

// A BUFFER of a width x height XR24 memfd whose first byte is `mark`.
ex::Message buffer(uint32_t id, uint32_t width, uint32_t height, std::byte mark)
{
    size_t size = size_t(width) * height * 4;
    Fd fd(::memfd_create("view-test", MFD_CLOEXEC));
    EXPECT_EQ(::ftruncate(fd.get(), off_t(size)), 0);
    EXPECT_EQ(::pwrite(fd.get(), &mark, 1, 0), 1);
    std::vector<Fd> fds;
    fds.push_back(std::move(fd));
    return message(
        ex::Buffer { 1, id, ex::PLANE_REGION, 0x34325258, 0, width, height, width * 4, 0, 0, size },
        std::move(fds));
}

ex::Message flip(uint32_t buffer, uint64_t generation, std::vector<ex::Rect32> damage,
    ex::Rect32 source, uint32_t covers = 1)
{
    ex::Flip f {};
    f.lease = 1;
    f.buffer = buffer;
    f.generation = generation;
    f.covers = covers;
    f.rects = uint32_t(damage.size());
    f.source = source;
    for (size_t i = 0; i < damage.size(); ++i)
        f.damage[i] = damage[i];
    return message(f);
}

TEST(ViewState, FlipsGatherDamage_TheFirstIsWhole_AnotherBufferKeepsItsDamage_UploadsClip)
{
    ViewState state;
    auto m = message(ex::Mode { 1, 0, 1, 64, 32, 0 });
    ASSERT_EQ(state.apply(m).value(), ViewState::Change::NewMode);
    auto b1 = buffer(1, 64, 32, std::byte(0x11));
    auto b2 = buffer(2, 64, 32, std::byte(0x22));
    ASSERT_TRUE(state.apply(b1).has_value());
    ASSERT_TRUE(state.apply(b2).has_value());
    EXPECT_FALSE(state.take_upload().has_value()) << "nothing before a flip";

    // The first flip is all new, whatever its damage says.
    auto f1 = flip(1, 5, { { 0, 0, 8, 8 } }, { 0, 0, 64, 32 });
    ASSERT_EQ(state.apply(f1).value(), ViewState::Change::NewFrame);
    auto f2 = flip(1, 7, { { 10, 10, 100, 100 } }, { 0, 0, 64, 32 }, 2);
    ASSERT_TRUE(state.apply(f2).has_value());
    auto upload = state.take_upload();
    ASSERT_TRUE(upload.has_value());
    EXPECT_EQ(upload->buffer->data()[0], std::byte(0x11));
    ASSERT_EQ(upload->damage.size(), 2u);
    EXPECT_EQ(upload->damage[1].width, 54u) << "clipped to the mode";
    EXPECT_EQ(upload->damage[1].height, 22u);
    EXPECT_EQ(state.generation(), 7u);
    EXPECT_EQ(state.flips(), 2u);
    EXPECT_EQ(state.covered(), 3u);
    EXPECT_FALSE(state.take_upload().has_value()) << "taken once";

    // A flip to buffer 2 (a ring slot holding the whole picture): its damage, since the
    // previous flip, is all that changed (docs/export.md).
    auto f3 = flip(2, 8, { { 3, 4, 1, 1 } }, { 0, 0, 64, 32 });
    ASSERT_TRUE(state.apply(f3).has_value());
    upload = state.take_upload();
    ASSERT_TRUE(upload.has_value());
    EXPECT_EQ(upload->buffer->data()[0], std::byte(0x22));
    ASSERT_EQ(upload->damage.size(), 1u);
    EXPECT_EQ(upload->damage[0].x, 3u);
    EXPECT_EQ(upload->damage[0].width, 1u);
    EXPECT_EQ(upload->damage[0].height, 1u);

    auto gone = message(ex::BufferGone { 1, 1 });
    ASSERT_TRUE(state.apply(gone).has_value());
    EXPECT_EQ(state.buffers(), 1u);
    auto stale = flip(1, 9, { { 0, 0, 1, 1 } }, { 0, 0, 64, 32 });
    auto refused = state.apply(stale);
    ASSERT_FALSE(refused.has_value());
    EXPECT_NE(refused.error().message.find("never sent"), std::string::npos);
    auto outside = flip(2, 9, { { 0, 0, 1, 1 } }, { 32, 0, 64, 32 });
    EXPECT_FALSE(state.apply(outside).has_value()) << "a source outside its buffer";

    auto off = message(ex::Mode { 1, 0, 0, 0, 0, 0 });
    ASSERT_TRUE(state.apply(off).has_value());
    EXPECT_FALSE(state.enabled());
    EXPECT_FALSE(state.take_upload().has_value());
}

TEST(ViewState, Cursor_NamesItsBuffer_HiddenAndGoneClearIt_RevokedSaysWhy)
{
    ViewState state;
    auto image = buffer(3, 64, 64, std::byte(0x33));
    ASSERT_TRUE(state.apply(image).has_value());
    auto shown = message(ex::Cursor { 1, 3, uint32_t(-5), 20, 1, 2, 0, 0 });
    ASSERT_EQ(state.apply(shown).value(), ViewState::Change::NewCursor);
    ASSERT_NE(state.cursor().image, nullptr);
    EXPECT_EQ(state.cursor().x, -5) << "partly off the left edge";
    EXPECT_EQ(state.cursor().image_id, 3u);
    auto hidden = message(ex::Cursor { 1, 0, 0, 0, 0, 0, 0, 0 });
    ASSERT_TRUE(state.apply(hidden).has_value());
    EXPECT_EQ(state.cursor().image, nullptr);
    auto unknown = message(ex::Cursor { 1, 9, 0, 0, 0, 0, 0, 0 });
    EXPECT_FALSE(state.apply(unknown).has_value());
    auto revoked = message(ex::Revoked { 1, uint32_t(ex::RevokeReason::Control) });
    ASSERT_EQ(state.apply(revoked).value(), ViewState::Change::LeaseRevoked);
    EXPECT_EQ(state.revoked_reason(), "revoked reason=control");
    // XR24: x:R:G:B from the top byte; RA24: R:G:B:A.
    EXPECT_EQ(channel_masks(0x34325258), (ChannelMasks { 0xff0000, 0xff00, 0xff, 0 }));
    EXPECT_EQ(channel_masks(0x34324152), (ChannelMasks { 0xff000000, 0xff0000, 0xff00, 0xff }));
    EXPECT_EQ(channel_masks(0x56595559), std::nullopt) << "YUYV";
}

} // namespace
} // namespace vgpu::view
