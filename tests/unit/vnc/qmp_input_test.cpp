#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/unix_socket.h"
#include "harness/backend_process.h"
#include "vnc/qmp_input.h"

namespace vgpu::vnc {
namespace {

using json = nlohmann::json;

// QEMU's side of a QMP socket, as far as input-send-event goes.
class FakeQemu {
public:
    FakeQemu()
        : m_path(harness::make_temp_dir() + "/qmp.sock")
        , m_listener(listen_unix(m_path, 1).release_value())
    {
    }
    const std::string& path() const { return m_path; }
    void accept()
    {
        pollfd p { m_listener.get(), POLLIN, 0 };
        ASSERT_EQ(::poll(&p, 1, 2000), 1);
        m_peer = Fd(::accept4(m_listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        ASSERT_TRUE(m_peer.valid());
    }
    void send(const std::string& line)
    {
        std::string l = line + "\r\n";
        ASSERT_EQ(::write(m_peer.get(), l.data(), l.size()), ssize_t(l.size()));
    }
    // The next line the client sent, parsed (null when none comes within a second).
    json receive()
    {
        for (;;) {
            if (auto eol = m_in.find('\n'); eol != std::string::npos) {
                auto line = m_in.substr(0, eol);
                m_in.erase(0, eol + 1);
                return json::parse(line);
            }
            pollfd p { m_peer.get(), POLLIN, 0 };
            if (::poll(&p, 1, 1000) != 1)
                return nullptr;
            char buffer[4096];
            ssize_t n = ::read(m_peer.get(), buffer, sizeof(buffer));
            if (n <= 0)
                return nullptr;
            m_in.append(buffer, size_t(n));
        }
    }
    void close() { m_peer.reset(); }

private:
    std::string m_path;
    Fd m_listener, m_peer;
    std::string m_in;
};

// Lets the client read what the fake sent (its loop would, on POLLIN).
void pump(QmpInput& qmp)
{
    pollfd p { qmp.fd(), POLLIN, 0 };
    if (::poll(&p, 1, 1000) == 1)
        qmp.on_readable();
}

json key(const char* qcode, bool down)
{
    return { { "type", "key" },
        { "data", { { "down", down }, { "key", { { "type", "qcode" }, { "data", qcode } } } } } };
}

TEST(QmpInput, EventsBeforeTheHandshake_WaitForCapabilities_ThenGoInOrder)
{
    FakeQemu qemu;
    QmpInput qmp(qemu.path());
    ASSERT_TRUE(qmp.connect());
    qemu.accept();
    qmp.key('A', true); // before the greeting: queued
    qemu.send(R"({"QMP": {"version": {}, "capabilities": []}})");
    pump(qmp);
    auto capabilities = qemu.receive();
    ASSERT_FALSE(capabilities.is_null());
    EXPECT_EQ(capabilities["execute"], "qmp_capabilities");
    EXPECT_FALSE(qmp.ready());
    qemu.send(R"({"return": {}, "id": "capabilities"})");
    pump(qmp);
    EXPECT_TRUE(qmp.ready());
    auto first = qemu.receive();
    EXPECT_EQ(first["execute"], "input-send-event");
    EXPECT_EQ(first["arguments"]["events"], json::array({ key("a", true) }));
    qmp.key('A', false);
    EXPECT_EQ(qemu.receive()["arguments"]["events"], json::array({ key("a", false) }));
    EXPECT_EQ(qmp.counters().commands, 2u);
}

class ReadyQmp : public ::testing::Test {
protected:
    void SetUp() override
    {
        ASSERT_TRUE(qmp.connect());
        qemu.accept();
        qemu.send(R"({"QMP": {}})");
        pump(qmp);
        qemu.receive();
        qemu.send(R"({"return": {}, "id": "capabilities"})");
        pump(qmp);
        ASSERT_TRUE(qmp.ready());
    }
    FakeQemu qemu;
    QmpInput qmp { qemu.path() };
};

TEST_F(ReadyQmp, Pointer_AbsoluteAxesScaled_ButtonsOnlyWhenTheyChange)
{
    qmp.pointer(0, 799, 0b001, 1280, 800);
    auto events = qemu.receive()["arguments"]["events"];
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[0]["data"], json({ { "axis", "x" }, { "value", 0 } }));
    EXPECT_EQ(events[1]["data"], json({ { "axis", "y" }, { "value", ABS_MAX } }));
    EXPECT_EQ(events[2]["type"], "btn");
    EXPECT_EQ(events[2]["data"], json({ { "down", true }, { "button", "left" } }));
    qmp.pointer(640, 400, 0b001, 1280, 800); // a drag: no button event
    events = qemu.receive()["arguments"]["events"];
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0]["data"]["value"], abs_axis_value(640, 1280));
    qmp.pointer(640, 400, 0b1100, 1280, 800); // left up, right and wheel-up down
    events = qemu.receive()["arguments"]["events"];
    ASSERT_EQ(events.size(), 5u);
    EXPECT_EQ(events[2]["data"], json({ { "down", false }, { "button", "left" } }));
    EXPECT_EQ(events[3]["data"], json({ { "down", true }, { "button", "right" } }));
    EXPECT_EQ(events[4]["data"], json({ { "down", true }, { "button", "wheel-up" } }));
}

TEST_F(ReadyQmp, UnmappedKeysAreCounted_HeldKeysReleasedWhenTheClientGoes)
{
    qmp.key(0x20ac, true); // EuroSign: no US key
    EXPECT_EQ(qmp.counters().unmapped_keys, 1u);
    qmp.key(0xffe1, true);
    qmp.key('X', true);
    qemu.receive();
    qemu.receive();
    qmp.release_all_keys();
    auto events = qemu.receive()["arguments"]["events"];
    EXPECT_EQ(events, json::array({ key("shift", false), key("x", false) }));
    qmp.release_all_keys(); // nothing held: nothing sent
    qmp.key('1', true);
    EXPECT_EQ(qemu.receive()["arguments"]["events"], json::array({ key("1", true) }));
}

TEST_F(ReadyQmp, ErrorsCounted_ALostConnectionIsRetriedAtMostOnceASecond)
{
    qemu.send(R"({"error": {"class": "GenericError", "desc": "no such key"}})");
    qemu.send(R"({"event": "RESET", "timestamp": {}})");
    qemu.send(R"({"return": {}})");
    pump(qmp);
    EXPECT_EQ(qmp.counters().errors, 1u);
    EXPECT_EQ(qmp.counters().replies, 1u);
    EXPECT_EQ(qmp.last_error(), "no such key");
    qemu.close();
    pump(qmp);
    EXPECT_EQ(qmp.fd(), -1);
    qmp.key('a', true); // within a second of the last attempt: dropped, not retried
    EXPECT_EQ(qmp.counters().dropped, 1u);
    EXPECT_EQ(qmp.counters().connects, 1u);
}

TEST(QmpInput, NotJsonFromQemu_DisconnectsWithTheReason)
{
    FakeQemu qemu;
    QmpInput qmp(qemu.path());
    ASSERT_TRUE(qmp.connect());
    qemu.accept();
    qemu.send("this is not QMP");
    pump(qmp);
    EXPECT_EQ(qmp.fd(), -1);
    EXPECT_NE(qmp.last_error().find("not a JSON object"), std::string::npos);
}

TEST(AbsAxis, EdgesAndMiddle)
{
    EXPECT_EQ(abs_axis_value(0, 1024), 0u);
    EXPECT_EQ(abs_axis_value(1023, 1024), ABS_MAX);
    EXPECT_EQ(abs_axis_value(5000, 1024), ABS_MAX);
    EXPECT_EQ(abs_axis_value(-3, 1024), 0u);
    EXPECT_EQ(abs_axis_value(640, 1280), 16396u); // 640 * 32767 / 1279, rounded
    EXPECT_EQ(abs_axis_value(7, 1), 0u);
}

} // namespace
} // namespace vgpu::vnc
