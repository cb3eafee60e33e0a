// The backend's life: frontends that come and go, resets, ring stop and restart, memory changes,
// signals and the program conventions.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>

#include "display/qemu/wire.h"
#include "harness/control_client.h"
#include "integration/common.h"

namespace vgpu::integration {

using harness::BackendProcess;
using harness::Frontend;
using harness::QemuSession;
using vhost::Request;

TEST(Lifecycle, FrontendDisconnects_NextFrontendGetsAFreshDevice)
{
    auto backend = BackendProcess::listen();
    {
        QemuSession first(backend.socket_path());
        first.start();
        expect_control_round_trip(first);
    } // QEMU quits
    QemuSession second(backend.socket_path());
    second.start();
    expect_control_round_trip(second);
    expect_cursor_round_trip(second);
    EXPECT_NE(backend.log().find("frontend disconnected"), std::string::npos);
}

TEST(Lifecycle, FrontendKilledMidCommand_BackendWaitsForTheNext)
{
    auto backend = BackendProcess::listen();
    {
        QemuSession first(backend.socket_path());
        first.start();
        // Buffers in flight when QEMU dies: nobody will ever read the answers.
        for (int i = 0; i < 10; ++i) {
            uint64_t gpa = first.ram().alloc(64);
            first.control().add({ { gpa, 24, false }, { gpa + 32, 32, true } });
        }
        first.control().notify_kick();
        ::shutdown(first.frontend().socket().get(), SHUT_RDWR);
    }
    ASSERT_TRUE(backend.alive()) << backend.log();
    QemuSession second(backend.socket_path());
    second.start();
    expect_control_round_trip(second);
}

TEST(Lifecycle, QueuedSecondFrontend_IsServedWhenTheFirstLeaves)
{
    auto backend = BackendProcess::listen();
    auto first = std::make_unique<QemuSession>(backend.socket_path());
    first->start();
    // A second frontend connects while the first is active: it waits in the backlog.
    auto second_frontend = Frontend::connect(backend.socket_path());
    first.reset();
    EXPECT_EQ(second_frontend.get_u64(Request::GetQueueNum), 2u);
}

TEST(Lifecycle, FdMode_ExitsZeroWhenTheFrontendCloses)
{
    Fd ours;
    auto backend = BackendProcess::with_fd(ours);
    {
        QemuSession session(std::move(ours));
        session.start();
        expect_control_round_trip(session);
    }
    EXPECT_EQ(backend.wait_exit(), 0) << backend.log();
}

TEST(Lifecycle, Sigterm_ExitsZero)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();
    backend.signal(SIGTERM);
    EXPECT_EQ(backend.wait_exit(), 0) << backend.log();
}

TEST(Lifecycle, Sigint_ExitsZero)
{
    auto backend = BackendProcess::listen();
    backend.signal(SIGINT);
    EXPECT_EQ(backend.wait_exit(), 0) << backend.log();
}

TEST(Lifecycle, GetVringBase_StopsTheRingAndReturnsTheNextAvailIndex)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();
    for (int i = 0; i < 3; ++i)
        expect_control_round_trip(session);
    auto& f = session.frontend();

    f.request_obj(Request::GetVringBase, vhost::VringState { 0, 0 });
    auto reply = f.read_reply();

    ASSERT_TRUE(reply.has_value());
    ASSERT_EQ(reply->payload.size(), sizeof(vhost::VringState));
    vhost::VringState state;
    std::memcpy(&state, reply->payload.data(), sizeof(state));
    EXPECT_EQ(state.index, 0u);
    EXPECT_EQ(state.num, 3u);
    // Stopped: a new buffer is not processed.
    auto& q = session.control();
    submit_get_display_info(session);
    EXPECT_FALSE(q.wait_used(std::chrono::milliseconds(300)).has_value());
    // Restarted where it stopped (SET_VRING_BASE 3, then a kick fd): the pending buffer is
    // picked up at once.
    f.request_obj(Request::SetVringBase, vhost::VringState { 0, 3 });
    int kick = q.kick().get();
    EXPECT_EQ(f.request_obj(Request::SetVringKick, uint64_t(0), std::span(&kick, 1), true), 0u);
    auto used = q.wait_used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, sizeof(virtio_gpu::RespDisplayInfo));
}

TEST(Lifecycle, GetVringBaseWhileACommandWaitsForQemu_TheCommandIsAnsweredFirst)
{
    auto backend = BackendProcess::listen({ "--output", "800x600" });
    QemuSession session(backend.socket_path());
    session.start();
    expect_control_round_trip(session);
    // QEMU's UI does not answer: GET_DISPLAY_INFO parks the control queue, waiting for it.
    session.display()->set_silent(true);
    auto& q = session.control();
    uint64_t response = submit_get_display_info(session);
    ASSERT_TRUE(
        session.display()->wait_for_nth(uint32_t(display::qemu::GpuRequest::GetDisplayInfo), 1));

    // The ring stops before QEMU's time is up. The driver took the buffer off the avail ring
    // for the device: it must be in the used ring when the ring stops, or it is lost.
    auto& f = session.frontend();
    f.request_obj(Request::GetVringBase, vhost::VringState { 0, 0 });
    auto reply = f.read_reply();
    ASSERT_TRUE(reply.has_value());
    vhost::VringState state;
    ASSERT_EQ(reply->payload.size(), sizeof(state));
    std::memcpy(&state, reply->payload.data(), sizeof(state));
    EXPECT_EQ(state.num, 2u);
    EXPECT_EQ(q.used_idx(), 2u) << "the parked command was not answered before the ring stopped";
    auto used = q.wait_used(std::chrono::milliseconds(0));
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, sizeof(virtio_gpu::RespDisplayInfo));
    // Answered from our own outputs, as after QEMU's timeout.
    auto info = session.ram().get<virtio_gpu::RespDisplayInfo>(response);
    EXPECT_EQ(info.hdr.type, uint32_t(virtio_gpu::CtrlType::OkDisplayInfo));
    EXPECT_EQ(info.pmodes[0].r.width, 800u);
    // Nothing is written into the ring after it stopped, even when QEMU's timeout passes.
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    EXPECT_EQ(q.used_idx(), 2u);
    EXPECT_TRUE(backend.alive()) << backend.log();
}

TEST(Lifecycle, ResetDevice_DriverSetsUpAgainAndItWorks)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();
    expect_control_round_trip(session);

    session.reset_and_reinit(Request::ResetDevice);

    expect_control_round_trip(session);
    expect_cursor_round_trip(session);
}

TEST(Lifecycle, SetStatusZero_ResetsAndGetStatusReportsIt)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();
    auto& f = session.frontend();
    EXPECT_EQ(f.request_obj(Request::SetStatus, uint64_t(0x0f), {}, true), 0u);
    EXPECT_EQ(f.get_u64(Request::GetStatus), 0x0fu);

    session.reset_and_reinit(Request::SetStatus);

    EXPECT_EQ(f.get_u64(Request::GetStatus), 0u);
    expect_control_round_trip(session);
}

TEST(Lifecycle, SetMemTableAgainWhileRunning_QueuesKeepGoing)
{
    auto backend = BackendProcess::listen({ "--no-configure-mem-slots" });
    QemuSession session(backend.socket_path());
    session.start();
    expect_control_round_trip(session);

    session.setup_memory(); // a reboot or hotplug sends the table again

    expect_control_round_trip(session);
    expect_cursor_round_trip(session);
}

TEST(Lifecycle, RemoveAndAddHighMemoryRegion_QueuesKeepGoing)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();
    auto regions = session.ram().regions();
    ASSERT_EQ(regions.size(), 2u);
    const auto& high = regions[1];
    vhost::SingleMemoryRegion r { 0,
        { high.guest_phys_addr, high.memory_size, high.userspace_addr, high.mmap_offset } };
    int fd = session.ram().fd().get();
    auto& f = session.frontend();

    EXPECT_EQ(f.request_obj(Request::RemMemReg, r, {}, true), 0u);
    expect_control_round_trip(session); // rings live in low memory
    EXPECT_EQ(f.request_obj(Request::AddMemReg, r, std::span(&fd, 1), true), 0u);
    EXPECT_EQ(f.request_obj(Request::RemMemReg, r, std::span(&fd, 1), true), 0u)
        << "one fd is tolerated";
    EXPECT_EQ(f.request_obj(Request::AddMemReg, r, std::span(&fd, 1), true), 0u);
    expect_control_round_trip(session);
}

TEST(Lifecycle, BuffersInHighMemory_AreReachable)
{
    auto backend = BackendProcess::listen();
    QemuSession session(backend.socket_path());
    session.start();
    auto& ram = session.ram();
    uint64_t req = harness::GuestRam::high_base + 4096;
    uint64_t resp = harness::GuestRam::high_base + 8192;
    ram.write(req, ctrl_header(virtio_gpu::CtrlType::GetDisplayInfo, virtio_gpu::FLAG_FENCE, 99));

    session.control().add({ { req, 24, false }, { resp, 24, true } });
    session.control().notify_kick();
    auto used = session.control().wait_used();

    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->length, 24u);
    EXPECT_EQ(ram.get<virtio_gpu::CtrlHdr>(resp).fence_id, 99u);
}

// ---- command line ----------------------------------------------------------------------------

TEST(CommandLine, NeitherSocketNorFd_FailsWithOneLine)
{
    auto out = BackendProcess::run_to_completion({});
    EXPECT_EQ(out.exit_code, 2);
    EXPECT_EQ(std::count(out.err.begin(), out.err.end(), '\n'), 1) << out.err;
    EXPECT_NE(out.err.find("--socket-path or --fd"), std::string::npos);
}

TEST(CommandLine, BothSocketAndFd_Fails)
{
    auto out = BackendProcess::run_to_completion({ "--socket-path", "/tmp/x.sock", "--fd", "3" });
    EXPECT_EQ(out.exit_code, 2);
    EXPECT_EQ(std::count(out.err.begin(), out.err.end(), '\n'), 1) << out.err;
}

TEST(CommandLine, FdThatIsNotASocket_FailsWithOneLine)
{
    auto out = BackendProcess::run_to_completion({ "--fd", "0" });
    EXPECT_EQ(out.exit_code, 1);
    EXPECT_NE(out.err.find("not a socket"), std::string::npos) << out.err;
}

TEST(CommandLine, SocketInMissingDirectory_FailsWithOneLine)
{
    auto out = BackendProcess::run_to_completion({ "--socket-path", "/nonexistent-dir/vgpu.sock" });
    EXPECT_EQ(out.exit_code, 1);
    EXPECT_NE(out.err.find("bind(/nonexistent-dir/vgpu.sock)"), std::string::npos) << out.err;
}

TEST(CommandLine, SocketPathOfARunningBackend_FailsWithOneLine_TheRunningOneKeepsServing)
{
    auto dir = harness::make_temp_dir();
    auto control = dir + "/control.sock";
    auto backend = BackendProcess::listen({ "--control", control });
    // A second backend on the same paths must not take them over (unlinking the live socket
    // would leave the first unreachable).
    auto vhost_path = harness::make_temp_dir() + "/other-control.sock";
    auto second = BackendProcess::run_to_completion({ "--socket-path", backend.socket_path() });
    EXPECT_EQ(second.exit_code, 1);
    EXPECT_NE(second.err.find("in use"), std::string::npos) << second.err;
    EXPECT_EQ(std::count(second.err.begin(), second.err.end(), '\n'), 1) << second.err;
    auto third = BackendProcess::run_to_completion(
        { "--socket-path", vhost_path, "--control", control });
    EXPECT_EQ(third.exit_code, 1);
    EXPECT_NE(third.err.find("in use"), std::string::npos) << third.err;
    QemuSession session(backend.socket_path());
    session.start();
    expect_control_round_trip(session);
    EXPECT_TRUE(harness::ControlClient::connect(control).call("query-version").is_object());
}

TEST(CommandLine, StaleSocketFile_IsReplaced)
{
    auto dir = harness::make_temp_dir();
    auto path = dir + "/stale.sock";
    {
        // A socket file nobody listens on any more (a backend that was killed).
        Fd s(::socket(AF_UNIX, SOCK_STREAM, 0));
        sockaddr_un address {};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
        ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    }
    auto backend = BackendProcess::listen({ "--control", path });
    EXPECT_TRUE(harness::ControlClient::connect(path).call("query-version").is_object());
}

TEST(CommandLine, UnknownOption_Fails)
{
    auto out = BackendProcess::run_to_completion({ "--frobnicate" });
    EXPECT_EQ(out.exit_code, 2);
    EXPECT_FALSE(out.err.empty());
}

TEST(CommandLine, Help_PrintsUsageAndExitsZero)
{
    auto out = BackendProcess::run_to_completion({ "--help" });
    EXPECT_EQ(out.exit_code, 0);
    EXPECT_NE(out.out.find("--socket-path"), std::string::npos);
    EXPECT_NE(out.out.find("--print-capabilities"), std::string::npos);
}

} // namespace vgpu::integration
