// The real backend binary, started as a child process the way QEMU or libvirt would start it.
// Its stderr goes to a log file the tests can read; the destructor kills it if still running.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"

namespace vgpu::harness {

// Where the built vgpu-display is (set by CMake for the build under test).
std::string backend_binary();
// A fresh temporary directory for sockets and logs, removed by the OS's tmp cleaning.
std::string make_temp_dir();

class BackendProcess {
public:
    // Starts the backend with --socket-path in `dir` plus `extra_args` and waits for the socket.
    static BackendProcess listen(const std::vector<std::string>& extra_args = {});
    // Starts the backend with --fd=N on one end of a socketpair; `peer` receives the other end.
    static BackendProcess with_fd(Fd& peer, const std::vector<std::string>& extra_args = {});
    // Starts another vhost-user backend binary (e.g. QEMU's /usr/lib/qemu/vhost-user-gpu) with
    // `args` plus --socket-path=PATH in a fresh directory, and waits for the socket.
    static BackendProcess listen_binary(
        const std::string& binary, const std::vector<std::string>& args = {});
    // Runs the binary with `args` to completion; returns exit code and stdout.
    struct Output {
        int exit_code;
        std::string out;
        std::string err;
    };
    static Output run_to_completion(const std::vector<std::string>& args);

    BackendProcess(BackendProcess&&) noexcept;
    BackendProcess& operator=(BackendProcess&&) = delete;
    ~BackendProcess();

    const std::string& socket_path() const { return m_socket_path; }
    pid_t pid() const { return m_pid; }
    bool alive();
    void signal(int signo);
    // Waits for exit; returns the exit code, or 128+signal, or nullopt on timeout.
    std::optional<int> wait_exit(
        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
    std::string log() const;

private:
    BackendProcess() = default;
    static BackendProcess spawn(const std::vector<std::string>& args, int keep_fd,
        const std::string& binary = backend_binary());
    static BackendProcess wait_for_socket(
        BackendProcess p, const std::string& dir, const std::string& socket);

    pid_t m_pid = -1;
    std::optional<int> m_status;
    std::string m_dir;
    std::string m_socket_dir;
    std::string m_socket_path;
    std::string m_log_path;
};

} // namespace vgpu::harness
