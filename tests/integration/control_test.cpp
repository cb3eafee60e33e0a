// The JSON control socket (docs/control.md) through the real backend process: greeting and
// queries, screendumps decoded pixel for pixel, per-flip CRC capture checked against a CRC-32C
// computed here bit by bit, events, several clients at once, hostile input, and output hotplug
// as the guest sees it (config space, CONFIG_CHANGE_MSG, display info). Every test ends with the
// backend alive.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/crc32c.h"
#include "display/capture/image.h"
#include "display/qemu/wire.h"
#include "harness/control_client.h"
#include "harness/gpu_driver.h"
#include "integration/common.h"
#include "virtio_gpu/resource_table.h"

namespace vgpu::integration {

using harness::BackendProcess;
using harness::ControlClient;
using harness::GpuDriver;
using harness::QemuSession;
using json = nlohmann::json;
using virtio_gpu::CtrlType;
using virtio_gpu::Rect;
using namespace std::chrono_literals;

namespace {

constexpr uint32_t XRGB = uint32_t(virtio_gpu::Format::B8G8R8X8Unorm);
constexpr uint32_t ARGB = uint32_t(virtio_gpu::Format::B8G8R8A8Unorm);
constexpr uint32_t OK = uint32_t(CtrlType::OkNodata);

// CRC-32C bit by bit (reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF):
// a reference that shares nothing with the table and SSE4.2 code under test.
uint32_t reference_crc32c(std::span<const uint8_t> bytes)
{
    uint32_t crc = 0xFFFFFFFF;
    for (uint8_t byte : bytes) {
        crc ^= byte;
        for (int bit = 0; bit < 8; ++bit)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

std::string drm_line(uint64_t frame, uint32_t crc)
{
    char text[32];
    std::snprintf(text, sizeof(text), "0x%08x 0x%08x", uint32_t(frame), crc);
    return text;
}

// A picture in the memory layout of B8G8R8X8 and B8G8R8A8 resources: 4 bytes per pixel, B, G,
// R, then padding or alpha.
struct Picture {
    uint32_t width = 0;
    uint32_t height = 0;
    std::vector<std::byte> bytes;

    Rect full() const { return Rect { 0, 0, width, height }; }
    uint8_t channel(uint32_t x, uint32_t y, uint32_t c) const
    {
        return uint8_t(bytes[(size_t(y) * width + x) * 4 + c]);
    }
    // 0x00RRGGBB, as screendumps and CRC capture see the pixel.
    uint32_t canonical(uint32_t x, uint32_t y) const
    {
        return (uint32_t(channel(x, y, 2)) << 16) | (uint32_t(channel(x, y, 1)) << 8)
            | channel(x, y, 0);
    }
    std::vector<uint32_t> canonical_rect(Rect r) const
    {
        std::vector<uint32_t> out;
        for (uint32_t y = r.y; y < r.y + r.height; ++y)
            for (uint32_t x = r.x; x < r.x + r.width; ++x)
                out.push_back(canonical(x, y));
        return out;
    }
    // The capture CRC from first principles: row by row, each pixel as the bytes B, G, R, 0.
    uint32_t crc(Rect r) const
    {
        std::vector<uint8_t> stream;
        for (uint32_t y = r.y; y < r.y + r.height; ++y) {
            for (uint32_t x = r.x; x < r.x + r.width; ++x) {
                stream.push_back(channel(x, y, 0));
                stream.push_back(channel(x, y, 1));
                stream.push_back(channel(x, y, 2));
                stream.push_back(0);
            }
        }
        return reference_crc32c(stream);
    }
    void set_fourth_bytes(const std::function<uint8_t(size_t pixel)>& value)
    {
        for (size_t i = 0; i < bytes.size() / 4; ++i)
            bytes[i * 4 + 3] = std::byte(value(i));
    }
};

// Colour bytes that differ with `seed`; the padding byte is 0.
Picture make_picture(uint32_t width, uint32_t height, uint32_t seed)
{
    Picture p { width, height, std::vector<std::byte>(size_t(width) * height * 4) };
    for (size_t i = 0; i < p.bytes.size(); ++i)
        p.bytes[i] = i % 4 == 3 ? std::byte(0)
                                : std::byte(uint8_t((i * 29 + (i >> 8) * 11 + seed * 101) & 0xff));
    return p;
}

std::vector<std::byte> base64_decode(const std::string& text)
{
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z')
            return c - 'A';
        if (c >= 'a' && c <= 'z')
            return c - 'a' + 26;
        if (c >= '0' && c <= '9')
            return c - '0' + 52;
        if (c == '+')
            return 62;
        if (c == '/')
            return 63;
        return -1;
    };
    EXPECT_EQ(text.size() % 4, 0u) << "base64 without padding";
    std::vector<std::byte> out;
    uint32_t buffer = 0;
    int bits = 0;
    for (char c : text) {
        if (c == '=')
            break;
        int v = value(c);
        if (v < 0) {
            ADD_FAILURE() << "not base64: " << int(c);
            return {};
        }
        buffer = (buffer << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(std::byte(uint8_t((buffer >> bits) & 0xff)));
        }
    }
    return out;
}

struct Decoded {
    uint32_t width = 0;
    uint32_t height = 0;
    std::vector<uint32_t> pixels; // 0x00RRGGBB
};

// Binary PPM (P6, maxval 255), parsed here rather than with the code under test.
std::optional<Decoded> decode_ppm(std::span<const std::byte> data)
{
    size_t pos = 0;
    auto at = [&](size_t i) { return char(data[i]); };
    if (data.size() < 2 || at(0) != 'P' || at(1) != '6')
        return std::nullopt;
    pos = 2;
    auto number = [&]() -> std::optional<uint32_t> {
        while (pos < data.size()
            && (at(pos) == ' ' || at(pos) == '\n' || at(pos) == '\t' || at(pos) == '\r'))
            ++pos;
        uint32_t v = 0;
        size_t start = pos;
        while (pos < data.size() && at(pos) >= '0' && at(pos) <= '9')
            v = v * 10 + uint32_t(at(pos++) - '0');
        if (pos == start)
            return std::nullopt;
        return v;
    };
    auto width = number(), height = number(), maxval = number();
    if (!width || !height || maxval != 255u || pos >= data.size())
        return std::nullopt;
    ++pos; // exactly one whitespace byte before the raster
    if (data.size() - pos != size_t(*width) * *height * 3)
        return std::nullopt;
    Decoded out { *width, *height, {} };
    for (size_t i = pos; i < data.size(); i += 3)
        out.pixels.push_back((uint32_t(uint8_t(data[i])) << 16)
            | (uint32_t(uint8_t(data[i + 1])) << 8) | uint8_t(data[i + 2]));
    return out;
}

std::vector<std::byte> read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(chars.size());
    if (!chars.empty())
        std::memcpy(out.data(), chars.data(), chars.size());
    return out;
}

void write_file(const std::string& path, std::span<const std::byte> bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

bool file_exists(const std::string& path)
{
    struct stat st { };
    return ::stat(path.c_str(), &st) == 0;
}

// An error reply of `error_class` (the connection it came on is checked by the caller).
void expect_error(const std::optional<json>& reply, const std::string& error_class)
{
    ASSERT_TRUE(reply.has_value()) << "no reply";
    ASSERT_TRUE(reply->contains("error")) << reply->dump();
    EXPECT_FALSE(reply->contains("return")) << reply->dump();
    EXPECT_EQ((*reply)["error"]["class"], error_class) << reply->dump();
    EXPECT_TRUE((*reply)["error"]["desc"].is_string()
        && !(*reply)["error"]["desc"].get<std::string>().empty())
        << reply->dump();
}

class ControlTestBase : public ::testing::Test {
protected:
    // The backend with a control socket in a fresh directory, a QEMU-like session and one
    // control client.
    void start(std::vector<std::string> args = {}, bool display_socket = false)
    {
        dir = harness::make_temp_dir();
        control_path = dir + "/control.sock";
        args.insert(args.begin(), { "--control", control_path });
        backend = std::make_unique<BackendProcess>(BackendProcess::listen(args));
        harness::SessionOptions options;
        options.with_display_socket = display_socket;
        session = std::make_unique<QemuSession>(backend->socket_path(), options);
        session->start();
        gpu = std::make_unique<GpuDriver>(*session);
        control = connect();
    }
    void TearDown() override
    {
        if (backend) {
            EXPECT_TRUE(backend->alive()) << backend->log();
        }
    }
    std::unique_ptr<ControlClient> connect()
    {
        return std::make_unique<ControlClient>(ControlClient::connect(control_path));
    }

    // A resource holding `picture` in its backing and (transferred) in the resource.
    uint64_t create(uint32_t id, const Picture& picture, uint32_t format = XRGB)
    {
        uint64_t gpa = gpu->create_with_backing(
            id, picture.width, picture.height, format, picture.bytes);
        EXPECT_EQ(gpu->transfer(id, picture.full()).type, OK);
        return gpa;
    }
    // New pixels into the backing, then TRANSFER_TO_HOST_2D of `r` (the whole picture by
    // default) with the offset the Linux driver computes.
    void upload(
        uint32_t id, uint64_t gpa, const Picture& picture, std::optional<Rect> r = std::nullopt)
    {
        session->ram().write(gpa, picture.bytes);
        Rect rect = r.value_or(picture.full());
        uint64_t offset = uint64_t(rect.y) * picture.width * 4 + uint64_t(rect.x) * 4;
        ASSERT_EQ(gpu->transfer(id, rect, offset).type, OK);
    }
    // A page flip: TRANSFER, SET_SCANOUT, RESOURCE_FLUSH.
    void page_flip(uint32_t id, uint64_t gpa, const Picture& picture, Rect scanout)
    {
        upload(id, gpa, picture);
        ASSERT_EQ(gpu->set_scanout(0, id, scanout).type, OK);
        ASSERT_EQ(gpu->flush(id, picture.full()).type, OK);
    }
    json output(uint32_t index = 0) { return control->call("query-outputs").at(index); }
    json crc_read(uint32_t index = 0) { return control->call("crc-read", { { "output", index } }); }

    std::string dir;
    std::string control_path;
    std::unique_ptr<BackendProcess> backend;
    std::unique_ptr<QemuSession> session;
    std::unique_ptr<GpuDriver> gpu;
    std::unique_ptr<ControlClient> control;
};

} // namespace

// ---- greeting and queries ---------------------------------------------------------------------

class ControlSocket : public ControlTestBase { };

TEST_F(ControlSocket, Greeting_IsTheDocumentedQmpObject)
{
    start();
    auto expected = json::parse(
        R"({"QMP": {"version": {"vgpu-display": {"major": 0, "minor": 1, "micro": 0},
        "package": "vgpu-display 0.1.0"}, "capabilities": ["events"]}})");

    EXPECT_EQ(control->greeting(), expected);
    EXPECT_EQ(connect()->greeting(), expected);
}

TEST_F(ControlSocket, VersionCapabilitiesAndQmpCapabilities_AreExact)
{
    start();

    EXPECT_EQ(control->call("qmp_capabilities"), json::object());
    EXPECT_EQ(control->call("query-version"),
        json::parse(R"({"major": 0, "minor": 1, "micro": 0, "package": "vgpu-display 0.1.0"})"));
    auto caps = control->call("query-capabilities");
    EXPECT_EQ(caps["type"], "gpu");
    const std::set<std::string> commands { "qmp_capabilities", "query-version",
        "query-capabilities", "query-outputs", "query-resources", "query-stats", "screendump",
        "crc-start", "crc-read", "crc-stop", "subscribe", "output-add", "output-remove",
        "output-resize", "lease-list", "lease-revoke" };
    EXPECT_EQ(caps["commands"].get<std::set<std::string>>(), commands);
    EXPECT_EQ(caps["commands"].size(), commands.size()) << "a command is listed twice";
    EXPECT_EQ(caps["events"].get<std::set<std::string>>(),
        (std::set<std::string> { "FLIP", "MODE_CHANGE", "CRC" }));
    EXPECT_EQ(caps["events"].size(), 3u);
    EXPECT_EQ(caps["crc"],
        json::parse(
            R"({"algorithm": "crc32c", "layout": "0x00RRGGBB little-endian", "ring": 128})"));
    EXPECT_EQ(caps["screendump-formats"], json::parse(R"(["png", "ppm"])"));
    // Every listed command exists (without arguments some fail, but none is unknown).
    for (const auto& name : commands) {
        auto reply = control->execute(name);
        ASSERT_TRUE(reply.has_value()) << name;
        if (reply->contains("error")) {
            EXPECT_NE((*reply)["error"]["class"], "CommandNotFound") << name;
        }
    }
}

TEST_F(ControlSocket, Queries_ReflectWhatTheGuestDid)
{
    start();
    auto fresh = output();
    EXPECT_EQ(fresh["output"], 0);
    EXPECT_EQ(fresh["enabled"], false);
    EXPECT_EQ(fresh["width"], 0);
    EXPECT_EQ(fresh["height"], 0);
    EXPECT_TRUE(fresh["resource"].is_null());
    EXPECT_TRUE(fresh["format"].is_null());
    EXPECT_EQ(fresh["frames"], 0);
    EXPECT_EQ(fresh["flips"], 0);
    EXPECT_EQ(fresh["crc-capture"], false);
    EXPECT_EQ(control->call("query-outputs").size(), 1u);
    auto resources = control->call("query-resources");
    EXPECT_EQ(resources["count"], 0);
    EXPECT_EQ(resources["bytes"], 0);
    EXPECT_EQ(resources["max-bytes"], 268435456);
    EXPECT_EQ(resources["max-count"], 16384); // 256 MiB / 16 KiB
    EXPECT_EQ(resources["backing-entries"], 0);
    auto stats = control->call("query-stats");
    EXPECT_EQ(stats["flushes"], 0);
    EXPECT_EQ(stats["transfers"], 0);
    EXPECT_EQ(stats["bytes-copied"], 0);
    EXPECT_EQ(stats["flip-latency-us"]["count"], 0);

    Picture big = make_picture(64, 48, 1);
    Picture small = make_picture(32, 16, 2);
    create(1, big);
    create(2, small);
    ASSERT_EQ(gpu->set_scanout(0, 1, big.full()).type, OK);
    ASSERT_EQ(gpu->flush(1, big.full()).type, OK);
    ASSERT_EQ(gpu->flush(1, Rect { 60, 44, 4, 4 }).type, OK); // partial damage still reaches it
    ASSERT_EQ(gpu->flush(2, small.full()).type, OK); // resource 2 is on no scanout

    auto shown = output();
    EXPECT_EQ(shown["enabled"], true);
    EXPECT_EQ(shown["width"], 64);
    EXPECT_EQ(shown["height"], 48);
    EXPECT_EQ(shown["resource"], 1);
    EXPECT_EQ(shown["format"], "B8G8R8X8");
    EXPECT_EQ(shown["frames"], 2);
    EXPECT_EQ(shown["flips"], 1);
    resources = control->call("query-resources");
    EXPECT_EQ(resources["count"], 2);
    // Pixels (64x48 and 32x16: 14336 bytes), their CRC caches and bookkeeping, one backing
    // entry each.
    EXPECT_EQ(resources["bytes"],
        virtio_gpu::PixelStorage::host_cost(64, 48, 256)
            + virtio_gpu::PixelStorage::host_cost(32, 16, 128)
            + 2 * virtio_gpu::ResourceTable::resource_overhead
            + 2 * virtio_gpu::ResourceTable::backing_entry_cost);
    EXPECT_EQ(resources["backing-entries"], 2);
    stats = control->call("query-stats");
    EXPECT_EQ(stats["flushes"], 3);
    EXPECT_EQ(stats["transfers"], 2);
    EXPECT_EQ(stats["bytes-copied"], 64 * 48 * 4 + 32 * 16 * 4);
    EXPECT_EQ(stats["flips"], 1);
    EXPECT_EQ(stats["display"]["visible-changes"], 2);
    EXPECT_FALSE(stats["display"].contains("qemu")) << "no display socket in this session";
    const auto& latency = stats["flip-latency-us"];
    EXPECT_EQ(latency["count"], 3);
    ASSERT_EQ(latency["buckets"].size(), 18u);
    uint64_t in_buckets = 0;
    for (size_t i = 0; i < latency["buckets"].size(); ++i) {
        const auto& bucket = latency["buckets"][i];
        if (i + 1 < latency["buckets"].size()) {
            EXPECT_EQ(bucket["le"], uint64_t(1) << i);
        } else {
            EXPECT_EQ(bucket["le"], "inf");
        }
        in_buckets += bucket["count"].get<uint64_t>();
    }
    EXPECT_EQ(in_buckets, 3u);

    // A smaller rectangle of the resource: the mode follows it, damage outside it reaches nothing.
    ASSERT_EQ(gpu->set_scanout(0, 1, Rect { 16, 8, 32, 24 }).type, OK);
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, 8, 8 }).type, OK);
    ASSERT_EQ(gpu->flush(1, Rect { 16, 8, 1, 1 }).type, OK);
    shown = output();
    EXPECT_EQ(shown["width"], 32);
    EXPECT_EQ(shown["height"], 24);
    EXPECT_EQ(shown["frames"], 3);
    EXPECT_EQ(shown["flips"], 2);
    stats = control->call("query-stats");
    EXPECT_EQ(stats["flushes"], 5);
    EXPECT_EQ(stats["flip-latency-us"]["count"], 5);

    // Unref of the shown resource disables the output and gives its memory back.
    ASSERT_EQ(gpu->unref(1).type, OK);
    shown = output();
    EXPECT_EQ(shown["enabled"], false);
    EXPECT_EQ(shown["width"], 0);
    EXPECT_TRUE(shown["resource"].is_null());
    EXPECT_EQ(shown["frames"], 3);
    resources = control->call("query-resources");
    EXPECT_EQ(resources["count"], 1);
    EXPECT_EQ(resources["bytes"],
        virtio_gpu::PixelStorage::host_cost(32, 16, 128)
            + virtio_gpu::ResourceTable::resource_overhead
            + virtio_gpu::ResourceTable::backing_entry_cost);
}

// ---- screendump -------------------------------------------------------------------------------

TEST_F(ControlSocket, ScreendumpInline_PpmAndPngDecodeToTheFramePixelForPixel)
{
    start();
    Picture p = make_picture(64, 48, 3);
    p.set_fourth_bytes([](size_t i) { return uint8_t(i * 37 + 5); }); // padding is not a colour
    create(1, p);
    const Rect rect { 5, 3, 40, 30 };
    ASSERT_EQ(gpu->set_scanout(0, 1, rect).type, OK);
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    auto expected = p.canonical_rect(rect);

    auto ppm = control->call("screendump", { { "output", 0 }, { "format", "ppm" } });
    EXPECT_EQ(ppm["width"], 40);
    EXPECT_EQ(ppm["height"], 30);
    EXPECT_EQ(ppm["format"], "ppm");
    EXPECT_FALSE(ppm.contains("filename"));
    auto decoded = decode_ppm(base64_decode(ppm["data"].get<std::string>()));
    ASSERT_TRUE(decoded.has_value()) << "not a P6 PPM";
    EXPECT_EQ(decoded->width, 40u);
    EXPECT_EQ(decoded->height, 30u);
    EXPECT_TRUE(decoded->pixels == expected) << "the PPM is not the frame";

    auto png = control->call("screendump", { { "output", 0 } }); // PNG by default
    EXPECT_EQ(png["width"], 40);
    EXPECT_EQ(png["height"], 30);
    EXPECT_EQ(png["format"], "png");
    auto bytes = base64_decode(png["data"].get<std::string>());
    ASSERT_GE(bytes.size(), 8u);
    EXPECT_EQ(std::memcmp(bytes.data(), "\x89PNG\r\n\x1a\n", 8), 0) << "no PNG signature";
    write_file(dir + "/inline.png", bytes);
    auto image = display::capture::read_image(dir + "/inline.png");
    ASSERT_TRUE(image.has_value()) << image.error().message;
    EXPECT_EQ(image->width, 40u);
    EXPECT_EQ(image->height, 30u);
    EXPECT_TRUE(image->pixels == expected) << "the PNG is not the frame";
    EXPECT_EQ(display::capture::image_crc(*image), p.crc(rect));
}

TEST_F(ControlSocket, ScreendumpToFile_WritesPngAndPpmByExtensionOrFormat)
{
    start();
    Picture p = make_picture(48, 32, 4);
    create(1, p);
    ASSERT_EQ(gpu->set_scanout(0, 1, p.full()).type, OK);
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    auto expected = p.canonical_rect(p.full());

    struct Case {
        std::string name;
        std::optional<std::string> format;
        std::string written;
    };
    const Case cases[] = {
        { "shot.png", std::nullopt, "png" }, { "shot.ppm", std::nullopt, "ppm" },
        { "SHOT.PPM", std::nullopt, "ppm" }, { "noextension", std::nullopt, "png" },
        { "shot.img", "ppm", "ppm" }, // an explicit format wins over the extension
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        std::string path = dir + "/" + c.name;
        json arguments = { { "output", 0 }, { "filename", path } };
        if (c.format)
            arguments["format"] = *c.format;
        auto reply = control->call("screendump", arguments);
        EXPECT_EQ(reply,
            (json { { "filename", path }, { "width", 48 }, { "height", 32 },
                { "format", c.written } }));
        EXPECT_FALSE(file_exists(path + ".tmp"));
        auto file = read_file(path);
        if (c.written == "ppm") {
            auto decoded = decode_ppm(file);
            ASSERT_TRUE(decoded.has_value()) << "not a P6 PPM";
            EXPECT_TRUE(decoded->pixels == expected);
        } else {
            ASSERT_GE(file.size(), 8u);
            EXPECT_EQ(std::memcmp(file.data(), "\x89PNG", 4), 0);
        }
        auto image = display::capture::read_image(path);
        ASSERT_TRUE(image.has_value()) << image.error().message;
        EXPECT_TRUE(image->pixels == expected);
    }
}

TEST_F(ControlSocket, ScreendumpErrors_FormatDisabledOutputRangeAndUnwritablePath)
{
    start();
    // Nothing on the output yet.
    expect_error(control->execute("screendump", { { "output", 0 } }), "DeviceNotActive");
    Picture p = make_picture(32, 32, 5);
    create(1, p);
    ASSERT_EQ(gpu->set_scanout(0, 1, p.full()).type, OK);

    expect_error(
        control->execute("screendump", { { "output", 0 }, { "filename", dir + "/shot.bmp" } }),
        "InvalidParameter");
    EXPECT_FALSE(file_exists(dir + "/shot.bmp"));
    expect_error(control->execute("screendump", { { "output", 0 }, { "format", "jpeg" } }),
        "InvalidParameter");
    expect_error(
        control->execute("screendump", { { "output", 1 } }), "InvalidParameter"); // one output
    expect_error(control->execute(
                     "screendump", { { "output", 0 }, { "filename", dir + "/no/such/dir/x.png" } }),
        "GenericError");
    // Disabled again (SET_SCANOUT with resource 0).
    ASSERT_EQ(gpu->set_scanout(0, 0, Rect {}).type, OK);
    expect_error(control->execute("screendump", { { "output", 0 } }), "DeviceNotActive");
    // The connection still works.
    EXPECT_EQ(control->call("query-version")["major"], 0);
}

// ---- several clients --------------------------------------------------------------------------

TEST_F(ControlSocket, WithQemusDisplay_OutputsBeyondOurOwnAreNamedByTheirScanout)
{
    // One output of ours, but QEMU's display owns up to 16 scanouts: the guest shows a frame on
    // scanout 3, and every command that names an output reaches it.
    start({}, true);
    Picture picture = make_picture(64, 48, 3);
    create(1, picture);
    ASSERT_EQ(gpu->set_scanout(3, 1, picture.full()).type, OK);
    ASSERT_EQ(gpu->flush(1, picture.full()).type, OK);

    auto outputs = control->call("query-outputs");
    json third;
    for (const auto& o : outputs)
        if (o["output"] == 3)
            third = o;
    ASSERT_TRUE(third.is_object()) << outputs.dump();
    EXPECT_EQ(third["enabled"], true);
    EXPECT_EQ(third["width"], 64);
    auto dump = control->call("screendump", { { "output", 3 }, { "format", "ppm" } });
    auto decoded = decode_ppm(base64_decode(dump["data"]));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(decoded->pixels, picture.canonical_rect(picture.full()));
    EXPECT_TRUE(control->call("crc-start", { { "output", 3 } }).is_object());
    ASSERT_EQ(gpu->flush(1, picture.full()).type, OK);
    auto crc = control->call("crc-read", { { "output", 3 } });
    ASSERT_EQ(crc["entries"].size(), 1u) << crc.dump();
    EXPECT_EQ(crc["entries"][0]["crc"], picture.crc(picture.full()));
    // A disabled scanout is a state, not a bad argument; 16 is out of range.
    expect_error(control->execute("screendump", { { "output", 5 } }), "DeviceNotActive");
    expect_error(control->execute("screendump", { { "output", 16 } }), "InvalidParameter");
}

TEST_F(ControlSocket, TwoClientsInterleaving_EachGetsItsOwnRepliesWithItsIds)
{
    start();
    auto a = connect();
    auto b = connect();

    a->send_raw(R"({"execute": "query-version", "id": "a1"})"
                "\n");
    b->send_raw(R"({"execute": "query-outputs", "id": "b1"})"
                "\n");
    a->send_raw(R"({"execute": "no-such-command", "id": {"n": 2}})"
                "\n"
                R"({"execute": "query-resources", "id": 3})"
                "\n");
    b->send_raw(R"({"execute": "query-version", "id": [4]})"
                "\n"
                R"({"execute": "screendump", "arguments": {"output": 0}, "id": 5.5})"
                "\n");
    a->send_raw(R"({"execute": "qmp_capabilities"})"
                "\n");

    auto a1 = a->read_message(), a2 = a->read_message(), a3 = a->read_message(),
         a4 = a->read_message();
    auto b1 = b->read_message(), b2 = b->read_message(), b3 = b->read_message();
    ASSERT_TRUE(a1 && a2 && a3 && a4 && b1 && b2 && b3);
    EXPECT_EQ((*a1)["id"], "a1");
    EXPECT_EQ((*a1)["return"]["package"], "vgpu-display 0.1.0");
    EXPECT_EQ((*a2)["id"], json::parse(R"({"n": 2})"));
    EXPECT_EQ((*a2)["error"]["class"], "CommandNotFound");
    EXPECT_EQ((*a3)["id"], 3);
    EXPECT_EQ((*a3)["return"]["count"], 0);
    EXPECT_EQ(*a4, json::parse(R"({"return": {}})")) << "no id given, none echoed";
    EXPECT_EQ((*b1)["id"], "b1");
    EXPECT_EQ((*b1)["return"].size(), 1u);
    EXPECT_EQ((*b2)["id"], json::parse("[4]"));
    EXPECT_EQ((*b2)["return"]["minor"], 1);
    EXPECT_EQ((*b3)["id"], 5.5);
    EXPECT_EQ((*b3)["error"]["class"], "DeviceNotActive");
    EXPECT_FALSE(a->read_message(50ms).has_value());
    EXPECT_FALSE(b->read_message(50ms).has_value());

    // Many pipelined requests from both, sent alternately before either reads.
    constexpr int count = 100;
    for (int i = 0; i < count; ++i) {
        a->send_raw(json { { "execute", i % 2 ? "query-version" : "query-stats" },
                        { "id", "a" + std::to_string(i) } }
                        .dump()
            + "\n");
        b->send_raw(
            json { { "execute", i % 2 ? "query-resources" : "query-outputs" }, { "id", i } }.dump()
            + "\n");
    }
    for (int i = 0; i < count; ++i) {
        auto ra = a->read_message();
        auto rb = b->read_message();
        ASSERT_TRUE(ra && rb);
        EXPECT_EQ((*ra)["id"], "a" + std::to_string(i));
        EXPECT_EQ((*ra)["return"].contains("package"), i % 2 == 1);
        EXPECT_EQ((*rb)["id"], i);
        EXPECT_EQ((*rb)["return"].is_array(), i % 2 == 0);
    }
    EXPECT_EQ(control->call("query-stats")["control"]["clients"], 3);
}

// ---- CRC capture --------------------------------------------------------------------------------

class ControlCrc : public ControlTestBase { };

TEST_F(ControlCrc, ReferenceCrc32c_IsTheStandardOne)
{
    const char* check = "123456789";
    EXPECT_EQ(reference_crc32c(std::span(reinterpret_cast<const uint8_t*>(check), 9)), 0xE3069283u);
}

TEST_F(ControlCrc, PageFlipsAndDirtyfbs_OneEntryEachWithTheFramesCrc32c)
{
    start();
    uint64_t gpa[3] {};
    gpa[1] = create(1, make_picture(64, 48, 10));
    gpa[2] = create(2, make_picture(64, 48, 11));
    ASSERT_EQ(gpu->set_scanout(0, 1, Rect { 0, 0, 64, 48 }).type, OK);
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, 64, 48 }).type, OK); // frame 1, before capture
    EXPECT_EQ(control->call("crc-start", { { "output", 0 } }), json::object());
    EXPECT_EQ(output()["crc-capture"], true);

    std::vector<uint32_t> expected;
    // Page flips: TRANSFER, SET_SCANOUT, RESOURCE_FLUSH, alternating two framebuffers.
    for (uint32_t i = 0; i < 3; ++i) {
        uint32_t id = 1 + (i + 1) % 2;
        Picture p = make_picture(64, 48, 100 + i);
        page_flip(id, gpa[id], p, p.full());
        expected.push_back(p.crc(p.full()));
    }
    // DIRTYFB: TRANSFER and RESOURCE_FLUSH of the framebuffer on screen (resource 2).
    for (uint32_t i = 0; i < 2; ++i) {
        Picture p = make_picture(64, 48, 200 + i);
        upload(2, gpa[2], p);
        ASSERT_EQ(gpu->flush(2, p.full()).type, OK);
        expected.push_back(p.crc(p.full()));
    }

    auto read = crc_read();
    ASSERT_EQ(read["entries"].size(), 5u);
    EXPECT_EQ(read["overflow"], 0);
    std::string lines;
    for (size_t i = 0; i < 5; ++i) {
        const auto& entry = read["entries"][i];
        uint64_t frame = 2 + i; // the frame counter was 1 when capture started
        EXPECT_EQ(entry["frame"], frame) << i;
        EXPECT_EQ(entry["crc"], expected[i]) << i;
        EXPECT_EQ(entry["line"], drm_line(frame, expected[i])) << i;
        lines += drm_line(frame, expected[i]) + "\n";
    }
    EXPECT_EQ(read["lines"], lines);
    EXPECT_EQ(std::set<uint32_t>(expected.begin(), expected.end()).size(), 5u)
        << "the pictures should differ";
    // Read again: the ring was drained.
    EXPECT_EQ(crc_read(), json::parse(R"({"entries": [], "lines": "", "overflow": 0})"));
    EXPECT_EQ(control->call("query-stats")["crc-entries"], 5);
}

TEST_F(ControlCrc, FrameOverwrittenRightAfterItsFlush_EachEntryIsTheFrameItsFlushShowed)
{
    // The CRC of a 1080p flush is computed on a worker after the flush is answered; here the
    // next transfer into the same framebuffer follows in the same kick, so the backend meets it
    // at once. The backing holds two pictures one after the other and each TRANSFER's offset
    // picks one (some only a rectangle that cuts through CRC tiles). Every entry must still be
    // the CRC of what its flush showed.
    start();
    constexpr uint32_t w = 1920, h = 1080, pictures_in_backing = 2, frames = 12;
    const size_t frame_bytes = size_t(w) * h * 4;
    auto& ram = session->ram();
    uint64_t backing = ram.alloc(frame_bytes * pictures_in_backing, 4096);
    std::vector<Picture> pictures;
    for (uint32_t i = 0; i < pictures_in_backing; ++i) {
        pictures.push_back(make_picture(w, h, 400 + i));
        ram.write(backing + i * frame_bytes, pictures.back().bytes);
    }
    ASSERT_EQ(gpu->create_2d(1, w, h).type, OK);
    const virtio_gpu::MemEntry entry { backing, uint32_t(frame_bytes * pictures_in_backing), 0 };
    ASSERT_EQ(gpu->attach_backing(1, std::span(&entry, 1)).type, OK);
    ASSERT_EQ(gpu->set_scanout(0, 1, Rect { 0, 0, w, h }).type, OK);
    EXPECT_EQ(control->call("crc-start", { { "output", 0 } }), json::object());

    std::vector<uint32_t> expected;
    Picture shown { w, h, std::vector<std::byte>(frame_bytes) }; // a new resource is black
    auto& queue = session->control();
    std::vector<uint64_t> responses;
    auto put = [&](const auto& command) {
        uint64_t request = ram.alloc(sizeof(command)),
                 response = ram.alloc(sizeof(virtio_gpu::CtrlHdr));
        ram.put(request, command);
        responses.push_back(response);
        queue.add({ { request, uint32_t(sizeof(command)), false },
            { response, uint32_t(sizeof(virtio_gpu::CtrlHdr)), true } });
    };
    for (uint32_t i = 0; i < frames; ++i) {
        Rect r = i % 3 == 2 ? Rect { 100, 50, 700, 300 } : Rect { 0, 0, w, h };
        const Picture& picture = pictures[i % pictures_in_backing];
        virtio_gpu::TransferToHost2d t {};
        t.hdr.type = uint32_t(CtrlType::TransferToHost2d);
        t.r = r;
        t.offset = (i % pictures_in_backing) * frame_bytes + (uint64_t(r.y) * w + r.x) * 4;
        t.resource_id = 1;
        put(t);
        virtio_gpu::ResourceFlush f {};
        f.hdr.type = uint32_t(CtrlType::ResourceFlush);
        f.r = r;
        f.resource_id = 1;
        put(f);
        for (uint32_t y = r.y; y < r.y + r.height; ++y)
            std::memcpy(shown.bytes.data() + (size_t(y) * w + r.x) * 4,
                picture.bytes.data() + (size_t(y) * w + r.x) * 4, size_t(r.width) * 4);
        // The CRC function itself is checked against the bitwise reference in the tests above.
        expected.push_back(crc::crc32c_xrgb(
            0, reinterpret_cast<const uint32_t*>(shown.bytes.data()), size_t(w) * h));
    }
    queue.notify_kick();
    for (size_t i = 0; i < responses.size(); ++i)
        ASSERT_TRUE(queue.wait_used().has_value());
    for (uint64_t response : responses)
        ASSERT_EQ(ram.get<virtio_gpu::CtrlHdr>(response).type, OK);

    auto read = crc_read();

    ASSERT_EQ(read["entries"].size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i)
        EXPECT_EQ(read["entries"][i]["crc"], expected[i]) << i;
    for (size_t i = 1; i < expected.size(); ++i)
        EXPECT_NE(expected[i], expected[i - 1]) << "consecutive frames should differ";
    // The worker had the full frames at least (they cost too much to checksum at once).
    auto stats = control->call("query-stats");
    EXPECT_GE(stats["crc-jobs"].get<uint64_t>(), 8u);
    EXPECT_EQ(stats["crc-jobs"].get<uint64_t>() + stats["crc-inline-jobs"].get<uint64_t>(), frames);
}

TEST_F(ControlCrc, AlphaAndPadding_AreIgnored_ArgbAndXrgbGiveTheSameCrc)
{
    start();
    Picture zero = make_picture(64, 48, 7);
    Picture full = zero;
    full.set_fourth_bytes([](size_t) { return uint8_t(0xff); });
    Picture alpha = zero;
    alpha.set_fourth_bytes([](size_t i) { return uint8_t(i * 53 + 1); });
    create(1, zero, XRGB);
    create(2, full, XRGB);
    create(3, alpha, ARGB);
    control->call("crc-start", { { "output", 0 } });

    for (uint32_t id : { 1u, 2u, 3u }) {
        ASSERT_EQ(gpu->set_scanout(0, id, zero.full()).type, OK);
        ASSERT_EQ(gpu->flush(id, zero.full()).type, OK);
    }

    auto entries = crc_read()["entries"];
    ASSERT_EQ(entries.size(), 3u);
    for (const auto& entry : entries)
        EXPECT_EQ(entry["crc"], zero.crc(zero.full()));
    EXPECT_EQ(output()["format"], "B8G8R8A8");
}

TEST_F(ControlCrc, SubRectangleScanout_CrcOfJustThatRectangle)
{
    start();
    Picture p = make_picture(64, 48, 20);
    create(1, p);
    const Rect rect { 5, 3, 33, 17 };
    ASSERT_EQ(gpu->set_scanout(0, 1, rect).type, OK);
    control->call("crc-start", { { "output", 0 } });

    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    ASSERT_EQ(
        gpu->flush(1, Rect { 0, 0, 4, 3 }).type, OK); // outside the rectangle: not a visible change
    ASSERT_EQ(gpu->flush(1, Rect { 37, 19, 1, 1 }).type, OK); // its last pixel
    // A band of whole rows.
    const Rect band { 0, 20, 64, 16 };
    ASSERT_EQ(gpu->set_scanout(0, 1, band).type, OK);
    ASSERT_EQ(gpu->flush(1, band).type, OK);

    auto entries = crc_read()["entries"];
    ASSERT_EQ(entries.size(), 3u);
    EXPECT_EQ(entries[0]["crc"], p.crc(rect));
    EXPECT_EQ(entries[0]["frame"], 1);
    EXPECT_EQ(entries[1]["crc"], p.crc(rect));
    EXPECT_EQ(entries[1]["frame"], 2);
    EXPECT_EQ(entries[2]["crc"], p.crc(band));
    EXPECT_EQ(entries[2]["frame"], 3);
    EXPECT_NE(p.crc(rect), p.crc(p.full()));
}

TEST_F(ControlCrc, PartialTransferAndFlush_CrcOfTheWholeVisibleFrame)
{
    start();
    Picture p = make_picture(64, 48, 30);
    uint64_t gpa = create(1, p);
    ASSERT_EQ(gpu->set_scanout(0, 1, p.full()).type, OK);
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    control->call("crc-start", { { "output", 0 } });
    auto paint = [&](Rect r, uint8_t value) {
        for (uint32_t y = r.y; y < r.y + r.height; ++y)
            for (uint32_t x = r.x; x < r.x + r.width; ++x)
                for (uint32_t c = 0; c < 3; ++c)
                    p.bytes[(size_t(y) * p.width + x) * 4 + c] = std::byte(uint8_t(value + x + c));
    };
    std::vector<uint32_t> expected;

    // A block within rows (TRANSFER with x != 0), flushed with a small damage rectangle elsewhere.
    const Rect block { 40, 30, 8, 6 };
    paint(block, 0x40);
    upload(1, gpa, p, block);
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, 4, 4 }).type, OK);
    expected.push_back(p.crc(p.full()));
    // Whole rows.
    const Rect rows { 0, 10, 64, 5 };
    paint(rows, 0x90);
    upload(1, gpa, p, rows);
    ASSERT_EQ(gpu->flush(1, Rect { 10, 10, 1, 1 }).type, OK);
    expected.push_back(p.crc(p.full()));
    // One pixel of damage with nothing new: the same frame again.
    ASSERT_EQ(gpu->flush(1, Rect { 63, 47, 1, 1 }).type, OK);
    expected.push_back(p.crc(p.full()));

    auto entries = crc_read()["entries"];
    ASSERT_EQ(entries.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(entries[i]["frame"], 2 + i) << i;
        EXPECT_EQ(entries[i]["crc"], expected[i]) << i;
    }
    EXPECT_NE(expected[0], expected[1]);
}

TEST_F(ControlCrc, RingOverflow_130FlushesUnread_128EntriesAndOverflow2)
{
    start();
    Picture p = make_picture(32, 32, 40);
    create(1, p);
    ASSERT_EQ(gpu->set_scanout(0, 1, p.full()).type, OK);
    control->call("crc-start", { { "output", 0 } });
    const uint32_t crc = p.crc(p.full());

    for (int i = 0; i < 130; ++i)
        ASSERT_EQ(gpu->flush(1, p.full()).type, OK);

    auto read = crc_read();
    ASSERT_EQ(read["entries"].size(), 128u);
    EXPECT_EQ(read["overflow"], 2);
    std::string lines = "overflow 2\n";
    for (uint64_t i = 0; i < 128; ++i) {
        // The ring keeps the oldest entries; the two newest were lost.
        EXPECT_EQ(read["entries"][i]["frame"], i + 1);
        EXPECT_EQ(read["entries"][i]["crc"], crc);
        lines += drm_line(i + 1, crc) + "\n";
    }
    EXPECT_EQ(read["lines"], lines);
    EXPECT_EQ(read["lines"].get<std::string>().rfind("overflow 2\n", 0), 0u);

    // Reading made room and reset the count.
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    EXPECT_EQ(crc_read(),
        (json { { "entries",
                    json::array(
                        { { { "frame", 131 }, { "crc", crc }, { "line", drm_line(131, crc) } } }) },
            { "lines", drm_line(131, crc) + "\n" }, { "overflow", 0 } }));
    EXPECT_EQ(control->call("query-stats")["crc-entries"], 131);
}

TEST_F(ControlCrc, CrcStop_ReturnsTheRemainingEntriesAndStops)
{
    start();
    Picture p = make_picture(32, 32, 50);
    create(1, p);
    ASSERT_EQ(gpu->set_scanout(0, 1, p.full()).type, OK);
    const uint32_t crc = p.crc(p.full());
    expect_error(control->execute("crc-read", { { "output", 0 } }), "DeviceNotActive");
    expect_error(control->execute("crc-stop", { { "output", 0 } }), "DeviceNotActive");
    expect_error(control->execute("crc-start", { { "output", 1 } }), "InvalidParameter");
    control->call("crc-start", { { "output", 0 } });

    for (int i = 0; i < 3; ++i)
        ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    EXPECT_EQ(crc_read()["entries"].size(), 3u);
    for (int i = 0; i < 2; ++i)
        ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    auto stopped = control->call("crc-stop", { { "output", 0 } });

    ASSERT_EQ(stopped["entries"].size(), 2u);
    EXPECT_EQ(stopped["entries"][0]["frame"], 4);
    EXPECT_EQ(stopped["entries"][1]["frame"], 5);
    EXPECT_EQ(stopped["entries"][1]["crc"], crc);
    EXPECT_EQ(stopped["overflow"], 0);
    EXPECT_EQ(stopped["lines"], drm_line(4, crc) + "\n" + drm_line(5, crc) + "\n");
    expect_error(control->execute("crc-read", { { "output", 0 } }), "DeviceNotActive");
    expect_error(control->execute("crc-stop", { { "output", 0 } }), "DeviceNotActive");
    EXPECT_EQ(output()["crc-capture"], false);

    // Frame 6 comes while capture is off; started again, the ring begins empty.
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    control->call("crc-start", { { "output", 0 } });
    EXPECT_EQ(crc_read()["entries"].size(), 0u);
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    auto entries = crc_read()["entries"];
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0]["frame"], 7);
    // crc-start while on clears the ring.
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    control->call("crc-start", { { "output", 0 } });
    EXPECT_EQ(crc_read()["entries"].size(), 0u);
    EXPECT_EQ(control->call("query-stats")["crc-entries"], 7); // frames 1 to 5, 7 and 8
}

TEST_F(ControlCrc, QemuDisplayPacingUpdates_EveryFlipStillGetsItsEntry)
{
    start({}, /*display_socket=*/true);
    constexpr uint32_t width = 320, height = 200, flips = 20;
    uint64_t gpa[3] {};
    gpa[1] = create(1, make_picture(width, height, 0));
    gpa[2] = create(2, make_picture(width, height, 0));
    control->call("crc-start", { { "output", 0 } });

    std::vector<uint32_t> expected;
    for (uint32_t i = 0; i < flips; ++i) {
        Picture p = make_picture(width, height, 300 + i);
        page_flip(1 + i % 2, gpa[1 + i % 2], p, p.full());
        expected.push_back(p.crc(p.full()));
    }

    auto entries = crc_read()["entries"];
    ASSERT_EQ(entries.size(), size_t(flips));
    for (uint32_t i = 0; i < flips; ++i) {
        EXPECT_EQ(entries[i]["frame"], i + 1) << i;
        EXPECT_EQ(entries[i]["crc"], expected[i]) << i;
    }
    auto* peer = session->display();
    ASSERT_NE(peer, nullptr);
    EXPECT_LE(peer->count(uint32_t(display::qemu::GpuRequest::Update)), size_t(flips));
    EXPECT_TRUE(control->call("query-stats")["display"].contains("qemu"));
}

// ---- events -----------------------------------------------------------------------------------

class ControlEvents : public ControlTestBase { };

TEST_F(ControlEvents, FlipAndCrc_TheSubscriberGetsOneEachPerFlush_OthersGetNone)
{
    start();
    auto watcher = connect();
    auto other = connect();
    EXPECT_EQ(watcher->call("subscribe", { { "events", json::array({ "FLIP", "CRC" }) } }),
        json::parse(R"({"events": ["CRC", "FLIP"]})"));
    uint64_t gpa[3] {};
    gpa[1] = create(1, make_picture(64, 48, 60));
    gpa[2] = create(2, make_picture(64, 48, 61));
    ASSERT_EQ(gpu->set_scanout(0, 1, Rect { 0, 0, 64, 48 }).type, OK);
    control->call("crc-start", { { "output", 0 } });

    for (uint32_t i = 0; i < 4; ++i) {
        Picture p = make_picture(64, 48, 70 + i);
        page_flip(1 + i % 2, gpa[1 + i % 2], p, p.full());
    }
    auto entries = crc_read()["entries"];
    ASSERT_EQ(entries.size(), 4u);

    std::vector<json> flips, crcs;
    for (int i = 0; i < 8; ++i) {
        auto event = watcher->next_event();
        ASSERT_TRUE(event.has_value()) << "only " << i << " events";
        EXPECT_TRUE((*event)["timestamp"]["seconds"].is_number_integer());
        EXPECT_GE((*event)["timestamp"]["microseconds"], 0);
        EXPECT_LT((*event)["timestamp"]["microseconds"], 1000000);
        EXPECT_FALSE(event->contains("dropped"));
        ((*event)["event"] == "FLIP" ? flips : crcs).push_back((*event)["data"]);
    }
    ASSERT_EQ(flips.size(), 4u);
    ASSERT_EQ(crcs.size(), 4u);
    for (uint32_t i = 0; i < 4; ++i) {
        EXPECT_EQ(
            flips[i], (json { { "output", 0 }, { "frame", i + 1 }, { "resource", 1 + i % 2 } }))
            << i;
        json expected = entries[i];
        expected["output"] = 0;
        EXPECT_EQ(crcs[i], expected) << i;
    }
    EXPECT_FALSE(watcher->next_event(100ms).has_value());
    EXPECT_EQ(other->call("query-version")["major"], 0);
    EXPECT_FALSE(other->next_event(50ms).has_value());
    EXPECT_FALSE(control->next_event(50ms).has_value());

    // Subscribing to nothing stops them.
    EXPECT_EQ(watcher->call("subscribe", { { "events", json::array() } }),
        json::parse(R"({"events": []})"));
    ASSERT_EQ(gpu->flush(2, Rect { 0, 0, 64, 48 }).type, OK);
    EXPECT_FALSE(watcher->next_event(100ms).has_value());
}

TEST_F(ControlEvents, ModeChange_OnEnableResizeAndDisable)
{
    start();
    auto watcher = connect();
    watcher->call("subscribe", { { "events", json::array({ "MODE_CHANGE" }) } });
    create(1, make_picture(64, 48, 80));
    create(2, make_picture(64, 48, 81));
    auto mode = [](uint32_t width, uint32_t height, bool enabled) {
        return json { { "output", 0 }, { "width", width }, { "height", height },
            { "enabled", enabled } };
    };

    ASSERT_EQ(gpu->set_scanout(0, 1, Rect { 0, 0, 64, 48 }).type, OK); // enable
    ASSERT_EQ(gpu->flush(1, Rect { 0, 0, 64, 48 }).type, OK); // a FLIP, not subscribed
    ASSERT_EQ(gpu->set_scanout(0, 2, Rect { 0, 0, 64, 48 }).type, OK); // same mode: no event
    ASSERT_EQ(gpu->set_scanout(0, 2, Rect { 8, 8, 32, 16 }).type, OK); // resize
    ASSERT_EQ(gpu->set_scanout(0, 0, Rect {}).type, OK); // disable
    ASSERT_EQ(gpu->set_scanout(0, 1, Rect { 0, 0, 64, 48 }).type, OK); // enable
    ASSERT_EQ(gpu->unref(1).type, OK); // disables the output that showed it

    const json expected[] = { mode(64, 48, true), mode(32, 16, true), mode(0, 0, false),
        mode(64, 48, true), mode(0, 0, false) };
    for (const auto& e : expected) {
        auto event = watcher->next_event();
        ASSERT_TRUE(event.has_value()) << "missing " << e.dump();
        EXPECT_EQ((*event)["event"], "MODE_CHANGE");
        EXPECT_EQ((*event)["data"], e);
    }
    EXPECT_FALSE(watcher->next_event(100ms).has_value());
}

TEST_F(ControlEvents, SubscribeToUnknownEventsOrNotAList_InvalidParameterAndNothingChanges)
{
    start();
    expect_error(control->execute("subscribe", { { "events", json::array({ "FLIP", "VSYNC" }) } }),
        "InvalidParameter");
    expect_error(control->execute("subscribe", { { "events", json::array({ "flip" }) } }),
        "InvalidParameter");
    expect_error(control->execute("subscribe", { { "events", "FLIP" } }), "InvalidParameter");
    expect_error(
        control->execute("subscribe", { { "events", json::array({ 1 }) } }), "InvalidParameter");
    expect_error(control->execute("subscribe"), "InvalidParameter");

    // Not even FLIP (the failed requests subscribed to nothing).
    Picture p = make_picture(32, 32, 90);
    create(1, p);
    ASSERT_EQ(gpu->set_scanout(0, 1, p.full()).type, OK);
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    EXPECT_FALSE(control->next_event(100ms).has_value());
}

TEST_F(ControlEvents, ClientThatNeverReads_DoesNotStallTheDevice_ItsEventsAreDroppedAndCounted)
{
    start({ "--output", "1024x768" });
    constexpr uint32_t width = 1024, height = 768;
    const Rect full { 0, 0, width, height };
    gpu->create_with_backing(1, width, height, XRGB);
    ASSERT_EQ(gpu->set_scanout(0, 1, full).type, OK);
    auto slow = connect();
    slow->call("subscribe", { { "events", json::array({ "FLIP" }) } });
    // More than the 8 MiB queue limit in replies it does not read: four inline PPM screendumps
    // of about 3 MiB of base64 each.
    constexpr int dumps = 4;
    for (int i = 0; i < dumps; ++i)
        slow->send_raw(json { { "execute", "screendump" },
                           { "arguments", { { "output", 0 }, { "format", "ppm" } } }, { "id", i } }
                           .dump()
            + "\n");
    // Wait until the server has answered them (screendumps run off the loop, one at a time
    // per client, and the worker yields to everything else: under a sanitizer on a busy
    // machine that takes seconds), so that every FLIP below finds the queue full.
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (control->call("query-stats")["control"]["screendumps-offloaded"].get<uint64_t>()
        < uint64_t(dumps)) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline)
            << "the screendumps were not answered";
        std::this_thread::sleep_for(1ms);
    }

    constexpr uint32_t flips = 3000;
    for (uint32_t i = 0; i < flips; ++i)
        ASSERT_EQ(gpu->flush(1, full).type, OK) << i;

    // The device and the other client were served all along.
    auto stats = control->call("query-stats");
    EXPECT_EQ(stats["flushes"], flips);
    EXPECT_EQ(stats["control"]["events-dropped"], flips);
    EXPECT_EQ(stats["control"]["events-sent"], 0);
    EXPECT_EQ(stats["control"]["clients"], 2);
    EXPECT_EQ(output()["frames"], flips);
    // The slow client finally reads: all its replies are there, in order, and no events...
    const std::string header = "P6\n1024 768\n255\n";
    const size_t ppm_size = header.size() + size_t(width) * height * 3;
    for (int i = 0; i < dumps; ++i) {
        auto reply = slow->read_message();
        ASSERT_TRUE(reply.has_value()) << i;
        EXPECT_EQ((*reply)["id"], i);
        EXPECT_EQ((*reply)["return"]["width"], width);
        EXPECT_EQ((*reply)["return"]["data"].get<std::string>().size(), 4 * ((ppm_size + 2) / 3));
    }
    EXPECT_FALSE(slow->read_message(200ms).has_value());
    // ...until the next flip, whose event says how many it lost.
    ASSERT_EQ(gpu->flush(1, full).type, OK);
    auto event = slow->next_event();
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ((*event)["event"], "FLIP");
    EXPECT_EQ((*event)["data"]["frame"], flips + 1);
    EXPECT_EQ((*event)["dropped"], flips);
    EXPECT_EQ(slow->call("query-version")["minor"], 1);
}

// A flood of screendumps must not take the device loop: they are encoded and written off the
// loop, a few requests of a client are handled per loop turn, and a bounded number of
// snapshots is in flight (the rest is answered Busy).
TEST_F(ControlSocket, PipelinedScreendumpFlood_TheGuestAndOtherClientsAreServedMeanwhile)
{
    start();
    Picture picture = make_picture(320, 240, 9);
    create(1, picture);
    ASSERT_EQ(gpu->set_scanout(0, 1, picture.full()).type, OK);
    constexpr int dumps = 200;
    std::string file = dir + "/flood.png";
    std::vector<std::unique_ptr<ControlClient>> flooders;
    for (int c = 0; c < 3; ++c) {
        flooders.push_back(connect());
        std::string lines;
        for (int i = 0; i < dumps; ++i)
            lines += json { { "execute", "screendump" },
                { "arguments", { { "output", 0 }, { "filename", file } } },
                { "id",
                    i } }.dump()
                + "\n";
        flooders.back()->send_raw(lines);
    }
    // The guest's commands and another client's requests go on while the flood is answered.
    std::atomic<bool> flood_answered { false };
    std::thread reader([&] {
        for (auto& f : flooders)
            for (int i = 0; i < dumps; ++i) {
                auto reply = f->read_message(30s);
                ASSERT_TRUE(reply.has_value()) << i;
                ASSERT_EQ((*reply)["id"], i) << "replies out of order";
                if (reply->contains("error")) {
                    EXPECT_EQ((*reply)["error"]["class"], "Busy") << reply->dump();
                }
            }
        flood_answered = true;
    });
    // GET_DISPLAY_INFO round trips in buffers allocated once (the harness allocator does not
    // free, and there may be many).
    auto& ram = session->ram();
    uint64_t request = ram.alloc(64), response = ram.alloc(sizeof(virtio_gpu::RespDisplayInfo));
    ram.write(request, ctrl_header(CtrlType::GetDisplayInfo));
    int round_trips = 0, queries = 0;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!flood_answered && std::chrono::steady_clock::now() < deadline) {
        session->control().add({ { request, 24, false },
            { response, uint32_t(sizeof(virtio_gpu::RespDisplayInfo)), true } });
        session->control().notify_kick();
        ASSERT_TRUE(session->control().wait_used().has_value()) << "round trip " << round_trips;
        ++round_trips;
        if (round_trips % 50 == 0 && control->execute("query-version").has_value())
            ++queries;
    }
    reader.join();
    EXPECT_GE(round_trips, 100) << "the guest waited for the flood";
    EXPECT_GE(queries, 2) << "another client waited for the flood";
    auto stats = control->call("query-stats")["control"];
    EXPECT_GT(stats["screendumps-offloaded"].get<uint64_t>(), 0u) << stats.dump();
    EXPECT_GT(stats["screendumps-busy"].get<uint64_t>(), 0u)
        << "three clients at once never exceeded the two snapshots in flight";
    EXPECT_EQ(
        stats["screendumps-offloaded"].get<uint64_t>() + stats["screendumps-busy"].get<uint64_t>(),
        uint64_t(3 * dumps));
    // What was written is a whole PNG of the frame.
    auto png = display::capture::read_image(file);
    ASSERT_TRUE(png) << png.error().message;
    EXPECT_EQ(png->pixels, picture.canonical_rect(picture.full()));
}

// ---- malformed input --------------------------------------------------------------------------

class ControlMalformed : public ControlTestBase { };

TEST_F(ControlMalformed, EachBadMessage_GetsItsErrorClass_AndTheConnectionKeepsWorking)
{
    start();
    struct Case {
        std::string line;
        std::string error_class;
        json id;
    };
    const Case cases[] = {
        { "{bad json", "GenericError", nullptr },
        { "[1, 2, 3]", "GenericError", nullptr },
        { R"("just a string")", "GenericError", nullptr },
        { "{\"execute\": \"query-\xff\", \"id\": 1}", "GenericError", nullptr }, // not UTF-8
        { R"({"id": 5})", "GenericError", 5 },
        { R"({"execute": 5, "id": 6})", "GenericError", 6 },
        { R"({"execute": "no-such-command", "id": 7})", "CommandNotFound", 7 },
        { R"({"execute": "screendump", "arguments": {"output": "0"}, "id": 8})", "InvalidParameter",
            8 },
        { R"({"execute": "screendump", "arguments": {"output": -1}, "id": 9})", "InvalidParameter",
            9 },
        { R"({"execute": "screendump", "arguments": {"output": 1}, "id": 10})", "InvalidParameter",
            10 },
        { R"({"execute": "screendump", "arguments": {"output": 4294967296}, "id": 11})",
            "InvalidParameter", 11 },
        { R"({"execute": "screendump", "arguments": {"output": 0.5}, "id": 12})",
            "InvalidParameter", 12 },
        { R"({"execute": "screendump", "arguments": {}, "id": 13})", "InvalidParameter", 13 },
        { R"({"execute": "screendump", "arguments": {"output": 0, "filename": 5}, "id": 14})",
            "InvalidParameter", 14 },
        { R"({"execute": "crc-start", "arguments": {"output": true}, "id": 15})",
            "InvalidParameter", 15 },
        { R"({"execute": "subscribe", "arguments": {"events": "FLIP"}, "id": 16})",
            "InvalidParameter", 16 },
        { R"({"execute": "subscribe", "arguments": {"events": {"FLIP": 1}}, "id": 17})",
            "InvalidParameter", 17 },
        { R"({"execute": "query-version", "arguments": [1], "id": 18})", "InvalidParameter", 18 },
        { R"({"execute": "query-version", "arguments": "x", "id": 19})", "InvalidParameter", 19 },
        { R"({"execute": "output-add", "arguments": {"width": 800}, "id": 20})", "InvalidParameter",
            20 },
        { R"({"execute": "output-add", "arguments": {"width": 8, "height": 8}, "id": 21})",
            "InvalidParameter", 21 },
        { R"({"execute": "output-add", "arguments": {"width": 4096, "height": 600}, "id": 22})",
            "InvalidParameter", 22 },
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.line);
        control->send_raw(c.line + "\n");
        auto reply = control->read_message();
        expect_error(reply, c.error_class);
        if (reply && c.id.is_null()) {
            EXPECT_FALSE(reply->contains("id"));
        } else if (reply) {
            EXPECT_EQ((*reply)["id"], c.id);
        }
        EXPECT_EQ(control->call("query-version")["major"], 0);
    }
    // Blank lines are ignored; CRLF ends a line too.
    control->send_raw("\n   \n\t\n"
                      R"({"execute": "query-version", "id": "crlf"})"
                      "\r\n");
    auto reply = control->read_message();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ((*reply)["id"], "crlf");
    EXPECT_TRUE(reply->contains("return"));
    EXPECT_EQ(control->call("query-stats")["control"]["errors"], std::size(cases));
}

TEST_F(ControlMalformed, MessageOverOneMebibyte_OneGenericErrorThenTheNextRequestWorks)
{
    start();
    // Just under the limit is fine.
    std::string padded = json {
        { "execute", "query-version" }, { "id", "big" },
        { "arguments", { { "pad", std::string(1000000, 'p') } } }
    }.dump();
    ASSERT_LT(padded.size(), size_t(1) << 20);
    control->send_raw(padded + "\n");
    auto reply = control->read_message();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ((*reply)["id"], "big");
    EXPECT_TRUE(reply->contains("return"));

    // 1.5 MiB without a newline: the error comes as soon as the limit is passed.
    const std::string huge(1536 * 1024, 'x');
    control->send_raw(huge);
    auto error = control->read_message();
    expect_error(error, "GenericError");
    EXPECT_FALSE(error->contains("id"));
    control->send_raw("\n");
    control->send_raw(R"({"execute": "query-version", "id": "after"})"
                      "\n");
    reply = control->read_message();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ((*reply)["id"], "after");
    EXPECT_TRUE(reply->contains("return"));
    EXPECT_FALSE(control->read_message(100ms).has_value()) << "more than one error";

    // The same with the end of the huge message and the next request in one write.
    control->send_raw(huge);
    control->send_raw("yyy\n"
                      R"({"execute": "query-version", "id": "after2"})"
                      "\n");
    expect_error(control->read_message(), "GenericError");
    reply = control->read_message();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ((*reply)["id"], "after2");
    EXPECT_FALSE(control->read_message(100ms).has_value()) << "more than one error";
}

TEST_F(ControlMalformed, SixteenBadMessagesInARow_Disconnect_OthersAndTheDeviceKeepWorking)
{
    start();
    auto victim = connect();
    auto bad_lines = [](int count) {
        const char* kinds[] = { "{oops\n", "[]\n", "{\"id\": 1}\n", "{\"execute\": null}\n" };
        std::string out;
        for (int i = 0; i < count; ++i)
            out += kinds[i % 4];
        return out;
    };
    auto expect_errors = [&](int count) {
        for (int i = 0; i < count; ++i)
            expect_error(victim->read_message(), "GenericError");
    };

    // 15 bad, a good request (which resets the count), 15 bad: still connected.
    victim->send_raw(bad_lines(15)
        + R"({"execute": "query-version", "id": "good"})"
          "\n"
        + bad_lines(15));
    expect_errors(15);
    auto good = victim->read_message();
    ASSERT_TRUE(good.has_value());
    EXPECT_EQ((*good)["id"], "good");
    expect_errors(15);
    // An unknown command is a well-formed request: it resets the count too.
    expect_error(victim->execute("no-such-command"), "CommandNotFound");
    victim->send_raw(bad_lines(15));
    expect_errors(15);
    EXPECT_EQ(victim->call("query-version")["major"], 0);

    // 16 in a row: the 16th error, then the server closes.
    victim->send_raw(bad_lines(16));
    expect_errors(16);
    EXPECT_TRUE(victim->closed_by_server());

    EXPECT_EQ(control->call("query-version")["major"], 0);
    EXPECT_EQ(control->call("query-stats")["control"]["clients"], 1);
    Picture p = make_picture(32, 32, 95);
    create(1, p);
    ASSERT_EQ(gpu->set_scanout(0, 1, p.full()).type, OK);
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    EXPECT_EQ(output()["frames"], 1);
}

TEST_F(ControlMalformed, ClientFloodingWithoutNewlines_OneErrorAndTheDeviceKeepsServing)
{
    start();
    Picture p = make_picture(64, 48, 97);
    uint64_t gpa = create(1, p);
    auto flooder = connect();
    std::atomic<bool> stop { false };
    std::atomic<uint64_t> sent { 0 };
    // Garbage without a newline, as fast as the socket takes it, until the guest is done.
    std::thread writer([&, fd = flooder->socket().get()] {
        const std::string junk(65536, 'z');
        auto end = std::chrono::steady_clock::now() + 10s;
        while (!stop && std::chrono::steady_clock::now() < end) {
            ssize_t n = ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
            if (n <= 0)
                break;
            sent += uint64_t(n);
        }
    });
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (sent < (8u << 20) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);

    // Nothing below may leave the test before the writer is joined.
    uint32_t completed = 0;
    for (; completed < 200; ++completed) {
        Picture frame = make_picture(64, 48, 500 + completed);
        page_flip(1, gpa, frame, frame.full());
        if (HasFatalFailure())
            break;
    }
    auto version = control->execute("query-version");
    stop = true;
    writer.join();

    EXPECT_EQ(completed, 200u);
    EXPECT_GT(sent.load(), uint64_t(8) << 20) << "the flood did not overlap the guest's commands";
    ASSERT_TRUE(version.has_value());
    EXPECT_TRUE(version->contains("return"));
    EXPECT_EQ(output()["frames"], 200);
    // However much it sent, the flooder got one error, and its connection still works.
    expect_error(flooder->read_message(), "GenericError");
    flooder->send_raw("\n");
    EXPECT_EQ(flooder->call("query-version")["major"], 0);
}

TEST_F(ControlMalformed, NestingDeeperThan64_OneGenericError_TheBackendKeepsServing)
{
    start();
    // A new user's reproducer: an "id" nested 300000 deep (600 KB, under the 1 MiB line limit).
    // Copying or dumping such a value recurses once per level and overflowed the stack.
    constexpr size_t deep = 300000;
    std::string line = R"({"execute":"query-version","id":)" + std::string(deep, '[')
        + std::string(deep, ']') + "}\n";
    control->send_raw(line);
    expect_error(control->read_message(), "GenericError");
    // The same depth in the arguments and inside an object.
    std::string nested_objects;
    for (size_t i = 0; i < deep / 4; ++i)
        nested_objects += R"({"a":)";
    nested_objects += "1" + std::string(deep / 4, '}');
    control->send_raw(R"({"execute":"query-outputs","arguments":)" + nested_objects + "}\n");
    expect_error(control->read_message(), "GenericError");
    // 64 levels are accepted and echoed; 65 are not.
    auto nested = [](size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); };
    control->send_raw(R"({"execute":"query-version","id":)" + nested(63) + "}\n");
    auto ok = control->read_message();
    ASSERT_TRUE(ok.has_value());
    EXPECT_TRUE(ok->contains("return")) << ok->dump();
    EXPECT_EQ((*ok)["id"].dump(), nested(63));
    control->send_raw(R"({"execute":"query-version","id":)" + nested(64) + "}\n");
    expect_error(control->read_message(), "GenericError");
    // The backend is alive and every client is served.
    EXPECT_EQ(control->call("query-version")["major"], 0);
    EXPECT_EQ(connect()->call("query-version")["major"], 0);
    expect_control_round_trip(*session);
}

// ---- output hotplug ---------------------------------------------------------------------------

class ControlHotplug : public ControlTestBase {
protected:
    virtio_gpu::Config get_config()
    {
        std::byte payload[sizeof(vhost::ConfigHeader) + sizeof(virtio_gpu::Config)] {};
        vhost::ConfigHeader h { 0, sizeof(virtio_gpu::Config), 0 };
        std::memcpy(payload, &h, sizeof(h));
        session->frontend().send_raw(
            { uint32_t(vhost::Request::GetConfig), vhost::VERSION, sizeof(payload) }, payload);
        auto reply = session->frontend().read_reply();
        virtio_gpu::Config config {};
        EXPECT_TRUE(reply.has_value() && reply->payload.size() == sizeof(payload))
            << "no GET_CONFIG reply";
        if (reply && reply->payload.size() == sizeof(payload))
            std::memcpy(&config, reply->payload.data() + sizeof(h), sizeof(config));
        return config;
    }
    // What the guest driver does on VIRTIO_GPU_EVENT_DISPLAY: write the bit to events_clear.
    void clear_config_events(uint32_t bits)
    {
        std::byte payload[sizeof(vhost::ConfigHeader) + sizeof(uint32_t)] {};
        vhost::ConfigHeader h { offsetof(virtio_gpu::Config, events_clear), sizeof(uint32_t), 0 };
        std::memcpy(payload, &h, sizeof(h));
        std::memcpy(payload + sizeof(h), &bits, sizeof(bits));
        EXPECT_EQ(session->frontend().request(vhost::Request::SetConfig, payload, {}, true), 0u);
    }
    // The next message on the backend channel (QEMU's side of SET_BACKEND_REQ_FD).
    std::optional<vhost::Header> backend_request(std::chrono::milliseconds timeout = 3000ms)
    {
        const Fd& channel = session->backend_channel();
        pollfd p { channel.get(), POLLIN, 0 };
        if (::poll(&p, 1, int(timeout.count())) <= 0)
            return std::nullopt;
        vhost::Header header {};
        if (::recv(channel.get(), &header, sizeof(header), MSG_WAITALL) != ssize_t(sizeof(header)))
            return std::nullopt;
        return header;
    }
    void expect_config_change()
    {
        auto header = backend_request();
        ASSERT_TRUE(header.has_value()) << "no CONFIG_CHANGE_MSG";
        EXPECT_EQ(header->request, uint32_t(vhost::BackendRequest::ConfigChangeMsg));
        EXPECT_EQ(header->flags & vhost::FLAG_VERSION_MASK, vhost::VERSION);
        EXPECT_EQ(header->size, 0u);
        EXPECT_EQ(get_config().events_read, virtio_gpu::EVENT_DISPLAY);
        clear_config_events(virtio_gpu::EVENT_DISPLAY);
        EXPECT_EQ(get_config().events_read, 0u);
    }
    // GET_DISPLAY_INFO: the enabled outputs and their sizes (0x0 for disabled ones).
    void expect_display_info(std::vector<std::pair<uint32_t, uint32_t>> modes)
    {
        auto info = gpu->get_display_info();
        ASSERT_TRUE(info.has_value());
        ASSERT_EQ(info->hdr.type, uint32_t(CtrlType::OkDisplayInfo));
        for (size_t i = 0; i < virtio_gpu::MAX_SCANOUTS; ++i) {
            SCOPED_TRACE(i);
            auto mode = i < modes.size() ? modes[i] : std::pair<uint32_t, uint32_t> {};
            EXPECT_EQ(info->pmodes[i].enabled, mode.first ? 1u : 0u);
            EXPECT_EQ(info->pmodes[i].r.width, mode.first);
            EXPECT_EQ(info->pmodes[i].r.height, mode.second);
        }
    }
};

TEST_F(ControlHotplug, AddResizeRemove_TheGuestSeesTheConfigEventAndTheDisplayInfo)
{
    start({ "--output", "1024x768", "--max-outputs", "3" });
    auto config = get_config();
    EXPECT_EQ(config.num_scanouts, 3u);
    EXPECT_EQ(config.events_read, 0u);
    expect_display_info({ { 1024, 768 } });

    EXPECT_EQ(control->call("output-add", { { "width", 800 }, { "height", 600 } }),
        json::parse(R"({"output": 1})"));
    expect_config_change();
    expect_display_info({ { 1024, 768 }, { 800, 600 } });
    EXPECT_EQ(output(1)["plugged"], true);
    EXPECT_EQ(output(1)["monitor"], json::parse(R"({"width": 800, "height": 600})"));
    EXPECT_EQ(output(2)["plugged"], false);
    EXPECT_EQ(output(2)["monitor"], nullptr);

    EXPECT_EQ(
        control->call("output-resize", { { "output", 1 }, { "width", 1280 }, { "height", 720 } }),
        json::object());
    expect_config_change();
    expect_display_info({ { 1024, 768 }, { 1280, 720 } });

    EXPECT_EQ(control->call("output-remove", { { "output", 1 } }), json::object());
    expect_config_change();
    expect_display_info({ { 1024, 768 } });

    // Failures change nothing and tell the guest nothing.
    expect_error(control->execute("output-remove", { { "output", 1 } }), "DeviceNotActive");
    expect_error(
        control->execute("output-resize", { { "output", 2 }, { "width", 800 }, { "height", 600 } }),
        "DeviceNotActive");
    expect_error(control->execute("output-remove", { { "output", 3 } }), "InvalidParameter");
    expect_error(
        control->execute("output-resize", { { "output", 0 }, { "width", 15 }, { "height", 600 } }),
        "InvalidParameter");
    expect_error(control->execute("output-add", { { "width", 800 }, { "height", 4096 } }),
        "InvalidParameter");
    EXPECT_FALSE(backend_request(50ms).has_value());
    EXPECT_EQ(get_config().events_read, 0u);

    // Fill the slots.
    EXPECT_EQ(control->call("output-add", { { "width", 640 }, { "height", 480 } }),
        json::parse(R"({"output": 1})"));
    expect_config_change();
    EXPECT_EQ(control->call("output-add", { { "width", 1920 }, { "height", 1080 } }),
        json::parse(R"({"output": 2})"));
    expect_config_change();
    expect_error(
        control->execute("output-add", { { "width", 800 }, { "height", 600 } }), "DeviceNotActive");
    EXPECT_FALSE(backend_request(50ms).has_value());
    expect_display_info({ { 1024, 768 }, { 640, 480 }, { 1920, 1080 } });
    EXPECT_EQ(get_config().num_scanouts, 3u);

    // The guest can use the new output.
    Picture p = make_picture(640, 480, 99);
    create(1, p);
    ASSERT_EQ(gpu->set_scanout(1, 1, p.full()).type, OK);
    ASSERT_EQ(gpu->flush(1, p.full()).type, OK);
    auto shown = output(1);
    EXPECT_EQ(shown["enabled"], true);
    EXPECT_EQ(shown["width"], 640);
    EXPECT_EQ(shown["frames"], 1);
}

TEST_F(ControlHotplug, ModesTheEdidCannotDescribe_AreRefused_AddedOutputsHaveTheirEdid)
{
    start({ "--output", "1024x768", "--max-outputs", "3" });
    // Within 16..4095 but below the EDID's 10 MHz pixel clock: --output refuses them too.
    for (auto [width, height] :
        { std::pair { 16, 16 }, std::pair { 64, 48 }, std::pair { 320, 200 } }) {
        SCOPED_TRACE(testing::Message() << width << "x" << height);
        expect_error(control->execute("output-add", { { "width", width }, { "height", height } }),
            "InvalidParameter");
    }
    EXPECT_FALSE(backend_request(50ms).has_value());
    expect_display_info({ { 1024, 768 } });

    // The preferred (first detailed) timing of the EDID the guest reads is the output's mode.
    auto edid_mode = [&](uint32_t scanout) {
        auto edid = gpu->get_edid(scanout);
        EXPECT_TRUE(
            edid.has_value() && edid->hdr.type == uint32_t(CtrlType::OkEdid) && edid->size == 128u);
        if (!edid || edid->size < 128)
            return std::pair<uint32_t, uint32_t> {};
        const uint8_t* timing = edid->edid + 54;
        return std::pair { uint32_t(timing[2] | ((timing[4] & 0xf0) << 4)),
            uint32_t(timing[5] | ((timing[7] & 0xf0) << 4)) };
    };
    EXPECT_EQ(control->call("output-add", { { "width", 640 }, { "height", 480 } }),
        json::parse(R"({"output": 1})"));
    expect_config_change();
    EXPECT_EQ(edid_mode(1), (std::pair<uint32_t, uint32_t> { 640, 480 }));
    expect_error(
        control->execute("output-resize", { { "output", 1 }, { "width", 320 }, { "height", 200 } }),
        "InvalidParameter");
    EXPECT_FALSE(backend_request(50ms).has_value());
    EXPECT_EQ(
        control->call("output-resize", { { "output", 1 }, { "width", 800 }, { "height", 600 } }),
        json::object());
    expect_config_change();
    EXPECT_EQ(edid_mode(1), (std::pair<uint32_t, uint32_t> { 800, 600 }));
    expect_display_info({ { 1024, 768 }, { 800, 600 } });
}

TEST_F(ControlHotplug, WithQemusDisplaySocket_OutputCommandsAnswerDeviceNotActive)
{
    start({ "--output", "1024x768", "--max-outputs", "3" }, /*display_socket=*/true);

    expect_error(
        control->execute("output-add", { { "width", 800 }, { "height", 600 } }), "DeviceNotActive");
    expect_error(control->execute("output-remove", { { "output", 0 } }), "DeviceNotActive");
    expect_error(
        control->execute("output-resize", { { "output", 0 }, { "width", 800 }, { "height", 600 } }),
        "DeviceNotActive");
    EXPECT_FALSE(backend_request(50ms).has_value());
    EXPECT_EQ(get_config().events_read, 0u);
    // QEMU's UI says which monitors are plugged in, not us.
    EXPECT_EQ(output(0)["plugged"], nullptr);
    EXPECT_EQ(output(0)["monitor"], nullptr);
    EXPECT_EQ(control->call("query-capabilities")["vgpu-display"]["outputs-from"], "qemu");
}

// --outputs-from backend: with QEMU's display socket the outputs are still ours. The commands
// work and raise the config event and CONFIG_CHANGE_MSG as without the socket; whether the guest
// hears of it is the frontend's business (QEMU 10 drops the message: docs/outputs.md), and the
// display peer is never asked.
TEST_F(ControlHotplug, OutputsFromBackend_WithQemusDisplaySocket_HotplugWorksAndQemuIsNotAsked)
{
    start({ "--output", "1024x768", "--max-outputs", "3", "--outputs-from", "backend" },
        /*display_socket=*/true);
    session->display()->set_outputs({ { 1920, 1080 } });
    expect_display_info({ { 1024, 768 } });
    EXPECT_EQ(output(0)["plugged"], true);
    EXPECT_EQ(output(1)["plugged"], false);

    EXPECT_EQ(control->call("output-add", { { "width", 800 }, { "height", 600 } }),
        json::parse(R"({"output": 1})"));
    expect_config_change();
    expect_display_info({ { 1024, 768 }, { 800, 600 } });
    EXPECT_EQ(
        control->call("output-resize", { { "output", 0 }, { "width", 1280 }, { "height", 720 } }),
        json::object());
    expect_config_change();
    EXPECT_EQ(output(0)["monitor"], json::parse(R"({"width": 1280, "height": 720})"));
    EXPECT_EQ(control->call("output-remove", { { "output", 1 } }), json::object());
    expect_config_change();
    expect_display_info({ { 1280, 720 } });
    // QEMU's display has 16 scanouts, but only our 3 slots can be plugged or resized.
    expect_error(control->execute("output-remove", { { "output", 3 } }), "InvalidParameter");
    expect_error(
        control->execute("output-resize", { { "output", 9 }, { "width", 800 }, { "height", 600 } }),
        "InvalidParameter");
    EXPECT_FALSE(backend_request(50ms).has_value());
    EXPECT_EQ(session->display()->count(uint32_t(display::qemu::GpuRequest::GetDisplayInfo)), 0u);
    EXPECT_EQ(session->display()->count(uint32_t(display::qemu::GpuRequest::GetEdid)), 0u);
    EXPECT_EQ(control->call("query-capabilities")["vgpu-display"]["outputs-from"], "backend");
    auto printed = BackendProcess::run_to_completion(
        { "--print-capabilities", "--outputs-from", "backend" });
    auto parsed = json::parse(printed.out, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << printed.out;
    EXPECT_EQ(parsed["vgpu-display"]["outputs-from"], "backend");
}

} // namespace vgpu::integration
