// Hardening through the real backend process: resources a peer can make us spend (descriptors,
// loop time, memory) and peers that misbehave at the transport level. Each test names the defect
// it guards against; every test ends with the backend alive and serving.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/control_client.h"
#include "harness/gpu_driver.h"
#include "integration/common.h"

namespace vgpu::integration {
namespace {

using harness::BackendProcess;
using harness::ControlClient;
using harness::QemuSession;
using json = nlohmann::json;
using namespace std::chrono_literals;

// A control-socket connection that is only connected (the server may not have accepted it:
// it then waits in the listen backlog). Invalid when even the backlog is full.
Fd connect_raw(const std::string& path)
{
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0)
        return Fd();
    return s;
}

// Whether the server said anything (its greeting) on `s` within `timeout`.
bool greeted(const Fd& s, std::chrono::milliseconds timeout)
{
    pollfd p { s.get(), POLLIN, 0 };
    if (::poll(&p, 1, int(timeout.count())) <= 0)
        return false;
    char c;
    return ::recv(s.get(), &c, 1, MSG_PEEK) == 1;
}

std::string proc_file(pid_t pid, const char* name)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

size_t open_fds(pid_t pid)
{
    size_t n = 0;
    for ([[maybe_unused]] const auto& entry :
        std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        ++n;
    return n;
}

// The backend under /usr/bin/prlimit (which execs it: same pid) with RLIMIT_NOFILE soft:hard.
BackendProcess backend_with_fd_limit(
    unsigned soft, unsigned hard, const std::vector<std::string>& backend_args)
{
    std::vector<std::string> args { fmt::format("--nofile={}:{}", soft, hard), "--",
        harness::backend_binary() };
    args.insert(args.end(), backend_args.begin(), backend_args.end());
    return BackendProcess::listen_binary("/usr/bin/prlimit", args);
}

// ---- descriptors -------------------------------------------------------------------------------

TEST(HardeningFds, ControlClientsOverTheCap_WaitUntilOneLeaves)
{
    auto dir = harness::make_temp_dir();
    auto control = dir + "/control.sock";
    auto backend = BackendProcess::listen({ "--control", control, "--max-control-clients", "2" });
    auto first = ControlClient::connect(control);
    auto second = ControlClient::connect(control);
    Fd third = connect_raw(control);
    ASSERT_TRUE(third.valid());
    EXPECT_FALSE(greeted(third, 300ms)) << "a third client was served over the cap of 2";
    EXPECT_EQ(first.call("query-stats")["control"]["clients"], 2);
    // One leaves: the waiting one is accepted and greeted.
    {
        auto leaving = std::move(second);
    }
    EXPECT_TRUE(greeted(third, 3000ms));
    EXPECT_EQ(first.call("query-stats")["control"]["clients"], 2);
    EXPECT_TRUE(backend.alive()) << backend.log();
}

TEST(HardeningFds, SoftLimitIsRaisedToTheHardLimitAtStart)
{
    auto backend = backend_with_fd_limit(64, 4096, {});
    auto limits = proc_file(backend.pid(), "limits");
    auto line = limits.substr(limits.find("Max open files"));
    line = line.substr(0, line.find('\n'));
    EXPECT_NE(line.find("4096                 4096"), std::string::npos) << line;
}

TEST(HardeningFds, ClientsFloodAtALowFdLimit_TheFrontendStillGetsItsFds_TheLoopDoesNotSpin)
{
    auto dir = harness::make_temp_dir();
    auto control = dir + "/control.sock";
    // 120 descriptors in all; clients may take what the frontend's reserve leaves.
    auto backend = backend_with_fd_limit(120, 120,
        { "--control", control, "--max-control-clients", "1000", "--no-configure-mem-slots" });
    auto watcher = ControlClient::connect(control);
    std::vector<Fd> flood;
    for (int i = 0; i < 300; ++i)
        if (Fd s = connect_raw(control); s.valid())
            flood.push_back(std::move(s));
    std::this_thread::sleep_for(1000ms);
    // The backend stopped accepting before its descriptors ran out, and did not spin on the
    // listener that stays readable meanwhile.
    EXPECT_LT(open_fds(backend.pid()), 120u - 32u);
    auto stats = watcher.call("query-stats")["control"];
    EXPECT_LE(stats["accept-errors"].get<uint64_t>(), 5u) << stats.dump();
    // A frontend arrives: its connection, SET_MEM_TABLE (one fd per region), the kick, call
    // and err eventfds and the display socket all get through.
    harness::SessionOptions options;
    QemuSession session(backend.socket_path(), options);
    session.start();
    EXPECT_FALSE(session.used_add_mem_reg());
    expect_control_round_trip(session);
    expect_cursor_round_trip(session);
    // The flood leaves; the clients that waited are served.
    flood.clear();
    std::this_thread::sleep_for(200ms);
    auto late = ControlClient::connect(control);
    EXPECT_TRUE(late.call("query-version").is_object());
    EXPECT_TRUE(backend.alive()) << backend.log();
}

// ---- who may connect, what a client may write -------------------------------------------------

unsigned mode_of(const std::string& path)
{
    struct stat st { };
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
}

TEST(HardeningAccess, BothSocketsAre0600_WhateverTheUmask)
{
    auto dir = harness::make_temp_dir();
    auto control = dir + "/control.sock";
    // The backend inherits a permissive umask (the test's own may be 022 or 002).
    mode_t old = ::umask(0);
    auto backend = BackendProcess::listen({ "--control", control });
    ::umask(old);
    EXPECT_EQ(mode_of(control), 0600u);
    EXPECT_EQ(mode_of(backend.socket_path()), 0600u);
}

TEST(HardeningAccess, ModeOptions_WidenTheSockets)
{
    auto dir = harness::make_temp_dir();
    auto control = dir + "/control.sock";
    auto backend = BackendProcess::listen(
        { "--control", control, "--control-mode", "0660", "--socket-mode", "0666" });
    EXPECT_EQ(mode_of(control), 0660u);
    EXPECT_EQ(mode_of(backend.socket_path()), 0666u);
    EXPECT_TRUE(ControlClient::connect(control).call("query-version").is_object());
}

TEST(HardeningAccess, BadModes_FailWithOneLine)
{
    for (const char* mode : { "999", "1777", "rw", "", "0x1ff", "-1" }) {
        auto result = BackendProcess::run_to_completion(
            { "--socket-path", "/tmp/unused.sock", "--socket-mode", mode });
        EXPECT_EQ(result.exit_code, 2) << mode;
        EXPECT_NE(result.err.find("--socket-mode"), std::string::npos) << result.err;
    }
}

TEST(HardeningAccess, ScreendumpThroughAPlantedLink_TheLinkTargetIsUntouched)
{
    auto dir = harness::make_temp_dir();
    auto control_path = dir + "/control.sock";
    auto backend = BackendProcess::listen({ "--control", control_path });
    QemuSession session(backend.socket_path());
    session.start();
    harness::GpuDriver gpu(session);
    gpu.create_with_backing(1, 32, 16, uint32_t(virtio_gpu::Format::B8G8R8X8Unorm));
    ASSERT_EQ(gpu.set_scanout(0, 1, virtio_gpu::Rect { 0, 0, 32, 16 }).type,
        uint32_t(virtio_gpu::CtrlType::OkNodata));
    auto control = ControlClient::connect(control_path);
    {
        std::ofstream(dir + "/victim") << "precious";
    }
    std::filesystem::create_symlink(dir + "/victim", dir + "/shot.ppm.tmp");
    std::filesystem::create_symlink(dir + "/victim", dir + "/link.ppm");

    auto ok = control.execute("screendump", { { "output", 0 }, { "filename", dir + "/shot.ppm" } });
    auto refused = control.execute(
        "screendump", { { "output", 0 }, { "filename", dir + "/link.ppm" } });

    ASSERT_TRUE(ok.has_value());
    EXPECT_TRUE(ok->contains("return")) << ok->dump();
    ASSERT_TRUE(refused.has_value());
    ASSERT_TRUE(refused->contains("error")) << refused->dump();
    EXPECT_NE((*refused)["error"]["desc"].get<std::string>().find("not a regular file"),
        std::string::npos);
    std::ifstream victim(dir + "/victim");
    std::string text((std::istreambuf_iterator<char>(victim)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text, "precious");
    EXPECT_EQ(std::filesystem::file_size(dir + "/shot.ppm"), 13u + 32 * 16 * 3);
}

// ---- a frontend that would block the loop --------------------------------------------------

TEST(HardeningFrontend, MessageTrickledOneByteAtATime_TheLoopServesOthers_DisconnectedAfter2s)
{
    // One byte every 400 ms: under the old 2 s limit per recvmsg, this held the device loop
    // for as long as the frontend liked.
    auto dir = harness::make_temp_dir();
    auto control_path = dir + "/control.sock";
    auto backend = BackendProcess::listen({ "--control", control_path });
    auto control = ControlClient::connect(control_path);
    auto frontend = harness::Frontend::connect(backend.socket_path());
    vhost::Header header { uint32_t(vhost::Request::GetFeatures), vhost::VERSION, 0 };
    auto bytes = std::as_bytes(std::span(&header, 1));
    std::atomic<size_t> sent { 0 };
    std::thread trickle([&] {
        for (auto b : bytes) {
            frontend.send_bytes(std::span(&b, 1));
            ++sent;
            std::this_thread::sleep_for(400ms);
        }
    });
    while (sent < 2)
        std::this_thread::sleep_for(10ms);
    auto reply = control.execute("query-version", json::object(), 1500ms);
    size_t sent_when_answered = sent;
    bool closed = frontend.closed_by_backend(4000ms);
    size_t sent_when_closed = sent;
    trickle.join();

    ASSERT_TRUE(reply.has_value());
    EXPECT_TRUE(reply->contains("return"));
    EXPECT_LT(sent_when_answered, bytes.size()) << "the control client waited for the frontend";
    EXPECT_TRUE(closed) << "a message trickling in for seconds was not cut off";
    EXPECT_LT(sent_when_closed, bytes.size());
    // The next frontend is served.
    QemuSession session(backend.socket_path());
    session.start();
    expect_control_round_trip(session);
    EXPECT_NE(backend.log().find("did not arrive whole"), std::string::npos) << backend.log();
}

TEST(HardeningFrontend, BlockingKickEventfd_DoesNotBlockTheLoop)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();
    // A kick eventfd without EFD_NONBLOCK, nothing signalled yet: starting the ring drains it
    // (buffers may wait from before), which blocked in read() for ever.
    Fd kick(::eventfd(0, EFD_CLOEXEC));
    int fd = kick.get();
    auto& f = session.frontend();
    EXPECT_EQ(
        f.request_obj(vhost::Request::SetVringKick, uint64_t(0), std::span(&fd, 1), true), 0u);
    EXPECT_TRUE(f.get_u64(vhost::Request::GetFeatures).has_value()) << "the backend is stuck";
    // The ring runs on the new kick fd.
    auto& ram = session.ram();
    uint64_t request = ram.alloc(64), response = ram.alloc(sizeof(virtio_gpu::RespDisplayInfo));
    ram.write(request, ctrl_header(virtio_gpu::CtrlType::GetDisplayInfo));
    session.control().add({ { request, 24, false },
        { response, uint32_t(sizeof(virtio_gpu::RespDisplayInfo)), true } });
    ASSERT_TRUE(eventfd_signal(kick.get()));
    EXPECT_TRUE(session.control().wait_used().has_value());
}

TEST(HardeningFrontend, FullPipeAsCallFd_DoesNotBlockTheLoop)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();
    // A blocking pipe that is already full as the call "eventfd": signalling it blocked in
    // write() for ever.
    int ends[2];
    ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    Fd read_end(ends[0]), write_end(ends[1]);
    ASSERT_EQ(::fcntl(write_end.get(), F_SETFL, O_NONBLOCK), 0);
    std::vector<char> junk(65536, 'x');
    while (::write(write_end.get(), junk.data(), junk.size()) > 0) { }
    ASSERT_EQ(::fcntl(write_end.get(), F_SETFL, 0), 0);
    int fd = write_end.get();
    auto& f = session.frontend();
    f.request_obj(vhost::Request::SetVringCall, uint64_t(0), std::span(&fd, 1));
    auto& ram = session.ram();
    uint64_t request = ram.alloc(64), response = ram.alloc(sizeof(virtio_gpu::RespDisplayInfo));
    ram.write(request, ctrl_header(virtio_gpu::CtrlType::GetDisplayInfo));
    auto& q = session.control();
    uint16_t before = q.used_idx();
    q.add({ { request, 24, false },
        { response, uint32_t(sizeof(virtio_gpu::RespDisplayInfo)), true } });
    q.notify_kick();
    auto deadline = std::chrono::steady_clock::now() + 3s;
    while (q.used_idx() == before && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    EXPECT_NE(q.used_idx(), before);
    EXPECT_TRUE(f.get_u64(vhost::Request::GetFeatures).has_value()) << "the backend is stuck";
}

// ---- guest memory the frontend truncates -------------------------------------------------------

TEST(HardeningMemory, FrontendShrinksGuestRamUnderATransfer_BackendSurvives_FrontendDropped)
{
    auto dir = harness::make_temp_dir();
    auto control_path = dir + "/control.sock";
    auto backend = BackendProcess::listen({ "--control", control_path });
    QemuSession session(backend.socket_path()); // an unsealed memfd, as memory-backend-file is
    session.start();
    harness::GpuDriver gpu(session);
    // A resource backed by high memory (the end of the memfd); the rings are in low memory.
    constexpr uint32_t W = 64, H = 32;
    ASSERT_EQ(gpu.create_2d(1, W, H).type, uint32_t(virtio_gpu::CtrlType::OkNodata));
    virtio_gpu::MemEntry entry { harness::GuestRam::high_base, W * H * 4, 0 };
    ASSERT_EQ(
        gpu.attach_backing(1, std::span(&entry, 1)).type, uint32_t(virtio_gpu::CtrlType::OkNodata));
    // The frontend truncates its memfd to the low region: the backing's pages are gone.
    ASSERT_EQ(::ftruncate(session.ram().fd().get(), off_t(session.ram().low_size())), 0);

    auto transfer = gpu.transfer(1, { 0, 0, W, H });

    // The transfer read zeros (it is answered: its buffers were in low memory), the frontend
    // is dropped, the backend goes on.
    EXPECT_EQ(transfer.type, uint32_t(virtio_gpu::CtrlType::OkNodata));
    EXPECT_TRUE(session.frontend().closed_by_backend(3000ms));
    EXPECT_TRUE(backend.alive()) << backend.log();
    EXPECT_NE(backend.log().find("SIGBUS"), std::string::npos) << backend.log();
    EXPECT_TRUE(ControlClient::connect(control_path).call("query-version").is_object());
    QemuSession next(backend.socket_path());
    next.start();
    expect_control_round_trip(next);
}

uint64_t rss_anon_bytes(pid_t pid)
{
    auto status = proc_file(pid, "status");
    auto at = status.find("RssAnon:");
    EXPECT_NE(at, std::string::npos);
    return std::stoull(status.substr(at + 8)) * 1024;
}

TEST(HardeningMemory, TinyResourcesWithFullBacking_RssStaysWithinTheAccounting)
{
    // Counting only width x height x 4, 10k tiny resources with 16384 backing entries each cost
    // about 3.8 GB while query-resources said 40 KB. Everything is counted now: the backend's
    // anonymous memory grows by at most what it reports plus a fixed overhead.
    constexpr uint64_t fixed_overhead = 8 << 20; // allocator slack, the decoded command
    auto dir = harness::make_temp_dir();
    auto control_path = dir + "/control.sock";
    auto backend = BackendProcess::listen({ "--control", control_path, "--max-hostmem", "64M" });
    QemuSession session(backend.socket_path());
    session.start();
    auto control = ControlClient::connect(control_path);
    uint64_t before = rss_anon_bytes(backend.pid());

    // The commands live in guest RAM once; only their resource ids change.
    auto& ram = session.ram();
    constexpr uint32_t entries = 16384;
    uint64_t page = ram.alloc(4096, 4096);
    uint64_t create_gpa = ram.alloc(sizeof(virtio_gpu::ResourceCreate2d));
    uint64_t attach_gpa = ram.alloc(sizeof(virtio_gpu::ResourceAttachBacking) + entries * 16);
    uint64_t response = ram.alloc(64);
    for (uint32_t i = 0; i < entries; ++i) // every entry the same page: overlaps are accepted
        ram.put(attach_gpa + sizeof(virtio_gpu::ResourceAttachBacking) + 16 * i,
            virtio_gpu::MemEntry { page, 4096, 0 });
    auto submit = [&](uint64_t gpa, uint32_t length) {
        session.control().add({ { gpa, length, false }, { response, 64, true } });
        session.control().notify_kick();
        EXPECT_TRUE(session.control().wait_used().has_value());
        return ram.get<virtio_gpu::CtrlHdr>(response).type;
    };
    uint32_t resources = 0;
    uint32_t refused = 0;
    for (uint32_t id = 1; id <= 10000 && !refused; ++id) {
        virtio_gpu::ResourceCreate2d create {};
        create.hdr.type = uint32_t(virtio_gpu::CtrlType::ResourceCreate2d);
        create.resource_id = id;
        create.format = uint32_t(virtio_gpu::Format::B8G8R8X8Unorm);
        create.width = 32;
        create.height = 32;
        ram.put(create_gpa, create);
        if (uint32_t type = submit(create_gpa, sizeof(create));
            type != uint32_t(virtio_gpu::CtrlType::OkNodata)) {
            refused = type;
            break;
        }
        virtio_gpu::ResourceAttachBacking attach {};
        attach.hdr.type = uint32_t(virtio_gpu::CtrlType::ResourceAttachBacking);
        attach.resource_id = id;
        attach.nr_entries = entries;
        ram.put(attach_gpa, attach);
        uint32_t type = submit(attach_gpa, uint32_t(sizeof(attach) + entries * 16));
        if (type != uint32_t(virtio_gpu::CtrlType::OkNodata))
            refused = type;
        else
            ++resources;
    }

    EXPECT_EQ(refused, uint32_t(virtio_gpu::CtrlType::ErrOutOfMemory));
    auto reported = control.call("query-resources");
    uint64_t after = rss_anon_bytes(backend.pid());
    EXPECT_LT(reported["bytes"].get<uint64_t>(), uint64_t(64) << 20);
    EXPECT_EQ(reported["backing-entries"].get<uint64_t>(), uint64_t(resources) * entries);
    EXPECT_LE(after - std::min(after, before), reported["bytes"].get<uint64_t>() + fixed_overhead)
        << resources << " resources; RssAnon " << before << " -> " << after << "; reported "
        << reported.dump();
    EXPECT_GT(resources, 50u);
    std::printf("%u resources; RssAnon grew by %lu bytes; %s reported\n", resources,
        after - std::min(after, before), reported["bytes"].dump().c_str());
    EXPECT_TRUE(backend.alive()) << backend.log();
}

} // namespace
} // namespace vgpu::integration
