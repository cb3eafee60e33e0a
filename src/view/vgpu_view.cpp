// vgpu-view: a window on one output of vgpu-display's export socket (docs/export.md). It leases
// the output, maps the buffers it is sent (no pixels cross the socket), uploads only the damage
// of each flip into an SDL texture (the one copy), draws the cursor, scales to the window and
// shows frames per second in its title. Runs under X11, Wayland, and headless under Xvfb.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "export/client.h"
#include "export/describe.h"
#include "view/view_state.h"

// Last: SDL_syswm.h brings X11's headers and their macros (None, Cursor, ...).
#include <SDL.h>
#include <SDL_syswm.h>

namespace vgpu::view {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
    std::string export_path;
    uint32_t output = 0;
    bool exclusive = false;
    std::string scale = "fit";
    uint64_t frames = 0; // exit after this many flips shown (0: run until closed)
    bool print_frames = false;
    std::string renderer = "auto";
    std::string plane = "region";
};

int fail(const std::string& message)
{
    std::fprintf(stderr, "vgpu-view: %s\n", message.c_str());
    return 1;
}

class Window {
public:
    ~Window()
    {
        if (m_cursor)
            SDL_DestroyTexture(m_cursor);
        if (m_texture)
            SDL_DestroyTexture(m_texture);
        if (m_renderer)
            SDL_DestroyRenderer(m_renderer);
        if (m_window)
            SDL_DestroyWindow(m_window);
    }

    Result<void> open(const Args& args, uint32_t width, uint32_t height)
    {
        m_args = &args;
        m_window = SDL_CreateWindow("vgpu-view", SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED,
            int(std::max(width, 64u)), int(std::max(height, 64u)), SDL_WINDOW_RESIZABLE);
        if (!m_window)
            return Error::format("SDL_CreateWindow: {}", SDL_GetError());
        uint32_t flags = args.renderer == "software" ? SDL_RENDERER_SOFTWARE
            : args.renderer == "accelerated"         ? SDL_RENDERER_ACCELERATED
                                                     : 0;
        m_renderer = SDL_CreateRenderer(m_window, -1, flags);
        if (!m_renderer)
            return Error::format("SDL_CreateRenderer: {}", SDL_GetError());
        SDL_SysWMinfo info;
        SDL_VERSION(&info.version);
        if (SDL_GetWindowWMInfo(m_window, &info) && info.subsystem == SDL_SYSWM_X11)
            std::printf("window 0x%lx\n", static_cast<unsigned long>(info.info.x11.window));
        SDL_RendererInfo renderer {};
        SDL_GetRendererInfo(m_renderer, &renderer);
        std::printf("video %s renderer %s\n", SDL_GetCurrentVideoDriver(), renderer.name);
        std::fflush(stdout);
        return {};
    }

    // A texture for the mode (and, at scale 1, a window of that size).
    Result<void> mode(uint32_t width, uint32_t height, uint32_t fourcc)
    {
        if (m_texture)
            SDL_DestroyTexture(m_texture);
        m_texture = nullptr;
        m_width = width;
        m_height = height;
        if (!width || !height)
            return {};
        auto masks = channel_masks(fourcc);
        uint32_t format = masks
            ? SDL_MasksToPixelFormatEnum(32, masks->r, masks->g, masks->b, masks->a)
            : uint32_t(SDL_PIXELFORMAT_UNKNOWN);
        if (format == SDL_PIXELFORMAT_UNKNOWN)
            return Error::format("no SDL pixel format for {}", exporting::fourcc_name(fourcc));
        m_texture = SDL_CreateTexture(
            m_renderer, format, SDL_TEXTUREACCESS_STREAMING, int(width), int(height));
        if (!m_texture)
            return Error::format("SDL_CreateTexture {}x{}: {}", width, height, SDL_GetError());
        if (m_args->scale == "1")
            SDL_SetWindowSize(m_window, int(width), int(height));
        return {};
    }

    // The one copy: the damage, from the mapped buffer into the texture.
    uint64_t upload(const Upload& u)
    {
        if (!m_texture)
            return 0;
        uint64_t bytes = 0;
        const auto& info = u.buffer->info();
        for (const auto& r : u.damage) {
            SDL_Rect rect { int(r.x), int(r.y), int(r.width), int(r.height) };
            if (!u.buffer->scattered()) {
                const std::byte* first = u.buffer->row(u.source.y + r.y)
                    + size_t(u.source.x + r.x) * 4;
                SDL_UpdateTexture(m_texture, &rect, first, int(info.stride));
            } else {
                // Guest memory: rows that straddle pages of the blob are gathered here first.
                size_t row_bytes = size_t(r.width) * 4;
                m_gathered.resize(row_bytes * r.height);
                for (uint32_t y = 0; y < r.height; ++y) {
                    uint64_t at = uint64_t(u.source.y + r.y + y) * info.stride
                        + uint64_t(u.source.x + r.x) * 4;
                    const std::byte* row = u.buffer->bytes(at, row_bytes, m_scratch);
                    if (row)
                        std::memcpy(m_gathered.data() + y * row_bytes, row, row_bytes);
                }
                SDL_UpdateTexture(m_texture, &rect, m_gathered.data(), int(row_bytes));
            }
            bytes += uint64_t(r.width) * r.height * 4;
        }
        return bytes;
    }

    void cursor(const CursorView& c)
    {
        if (c.image_id != m_cursor_id || !c.image) {
            if (m_cursor)
                SDL_DestroyTexture(m_cursor);
            m_cursor = nullptr;
            m_cursor_id = 0;
        }
        if (c.image && !m_cursor) {
            const auto& info = c.image->info();
            m_cursor = SDL_CreateTexture(m_renderer, SDL_PIXELFORMAT_ARGB8888,
                SDL_TEXTUREACCESS_STATIC, int(info.width), int(info.height));
            if (m_cursor) {
                SDL_UpdateTexture(m_cursor, nullptr, c.image->data(), int(info.stride));
                SDL_SetTextureBlendMode(m_cursor, SDL_BLENDMODE_BLEND);
                m_cursor_id = c.image_id;
            }
        }
        m_cursor_at = c;
    }

    void draw()
    {
        SDL_SetRenderDrawColor(m_renderer, 0, 0, 0, 255);
        SDL_RenderClear(m_renderer);
        if (m_texture) {
            int ww = 0, wh = 0;
            SDL_GetRendererOutputSize(m_renderer, &ww, &wh);
            double scale = 1.0;
            if (m_args->scale == "fit")
                scale = std::min(double(ww) / m_width, double(wh) / m_height);
            int dw = int(m_width * scale), dh = int(m_height * scale);
            SDL_Rect dest { m_args->scale == "fit" ? (ww - dw) / 2 : 0,
                m_args->scale == "fit" ? (wh - dh) / 2 : 0, dw, dh };
            SDL_RenderCopy(m_renderer, m_texture, nullptr, &dest);
            if (m_cursor && m_cursor_at.image) {
                const auto& info = m_cursor_at.image->info();
                SDL_Rect at { dest.x + int(m_cursor_at.x * scale),
                    dest.y + int(m_cursor_at.y * scale), int(info.width * scale),
                    int(info.height * scale) };
                SDL_RenderCopy(m_renderer, m_cursor, nullptr, &at);
            }
        }
        SDL_RenderPresent(m_renderer);
    }

    void title(const std::string& text) { SDL_SetWindowTitle(m_window, text.c_str()); }

private:
    const Args* m_args = nullptr;
    SDL_Window* m_window = nullptr;
    SDL_Renderer* m_renderer = nullptr;
    SDL_Texture* m_texture = nullptr;
    SDL_Texture* m_cursor = nullptr;
    uint32_t m_cursor_id = 0;
    CursorView m_cursor_at;
    uint32_t m_width = 0, m_height = 0;
    std::vector<std::byte> m_gathered, m_scratch;
};

int run(const Args& args)
{
    auto client = exporting::Client::connect(args.export_path, "vgpu-view");
    if (!client)
        return fail(client.error().message);
    auto lease = client->lease(args.output,
        args.exclusive ? exporting::LeaseKind::Exclusive : exporting::LeaseKind::Shared,
        *exporting::plane_type_named(args.plane)); // CLI11 checked the name
    if (!lease)
        return fail(fmt::format("lease of output {}: {}", args.output, lease.error().message));
    // The fourcc comes with each BUFFER; the probe tells the first one before any.
    auto probe = client->probe();
    if (!probe)
        return fail(probe.error().message);
    uint32_t fourcc = 0;
    for (const auto& o : probe->outputs)
        if (o.output == args.output)
            fourcc = o.fourcc;

    if (SDL_Init(SDL_INIT_VIDEO) != 0)
        return fail(fmt::format("SDL_Init: {}", SDL_GetError()));
    Window window;
    ViewState state;
    bool opened = false;
    uint64_t shown = 0, uploaded = 0, second_frames = 0;
    auto second_start = Clock::now();
    bool dirty = false, running = true;
    int exit_code = 0;
    while (running) {
        pollfd p[2] = { { client->socket(), POLLIN, 0 }, { lease->eventfd.get(), POLLIN, 0 } };
        ::poll(p, 2, 10);
        if (p[1].revents & POLLIN) {
            uint64_t count = 0;
            [[maybe_unused]] ssize_t n = ::read(lease->eventfd.get(), &count, sizeof(count));
        }
        bool mode_changed = false;
        for (;;) {
            auto message = client->next(std::chrono::milliseconds(0));
            if (!message) {
                std::fprintf(stderr, "vgpu-view: %s\n", message.error().message.c_str());
                return 1;
            }
            if (!*message)
                break;
            if (auto b = (*message)->as<exporting::Buffer>(); b && b->width > 64)
                fourcc = b->fourcc;
            auto change = state.apply(**message);
            if (!change)
                return fail(change.error().message);
            if (*change == ViewState::Change::NewMode)
                mode_changed = true;
            if (*change == ViewState::Change::LeaseRevoked) {
                std::fprintf(stderr, "vgpu-view: %s\n", state.revoked_reason().c_str());
                return 1;
            }
            if (*change == ViewState::Change::NewCursor)
                dirty = true;
        }
        if (!opened && state.enabled()) {
            if (auto r = window.open(args, state.width(), state.height()); !r)
                return fail(r.error().message);
            opened = true;
            mode_changed = true;
        }
        if (opened && mode_changed) {
            if (auto r = window.mode(state.width(), state.height(), fourcc); !r)
                return fail(r.error().message);
            dirty = true;
        }
        if (auto upload = state.take_upload(); upload && opened) {
            uploaded += window.upload(*upload);
            dirty = true;
            ++shown;
            ++second_frames;
            if (args.exclusive)
                (void)client->ack(lease->lease, state.generation());
            if (args.print_frames) {
                std::printf(
                    "shown generation=%llu\n", static_cast<unsigned long long>(state.generation()));
                std::fflush(stdout);
            }
        }
        SDL_Event event;
        while (SDL_PollEvent(&event)) {
            if (event.type == SDL_QUIT)
                running = false;
            if (event.type == SDL_WINDOWEVENT)
                dirty = true;
        }
        if (opened && dirty) {
            window.cursor(state.cursor());
            window.draw();
            dirty = false;
        }
        if (auto now = Clock::now(); now - second_start >= std::chrono::seconds(1)) {
            double seconds = std::chrono::duration<double>(now - second_start).count();
            if (opened)
                window.title(fmt::format("vgpu-view: output {} {}x{}, {:.1f} fps", args.output,
                    state.width(), state.height(), double(second_frames) / seconds));
            second_frames = 0;
            second_start = now;
        }
        if (args.frames && shown >= args.frames)
            running = false;
    }
    std::printf("frames %llu flips %llu covered %llu uploaded-bytes %llu\n",
        static_cast<unsigned long long>(shown), static_cast<unsigned long long>(state.flips()),
        static_cast<unsigned long long>(state.covered()),
        static_cast<unsigned long long>(uploaded));
    SDL_Quit();
    return exit_code;
}

} // namespace
} // namespace vgpu::view

namespace {
int checked_main(int argc, char** argv)
{
    vgpu::view::Args args;
    CLI::App cli { "vgpu-view: a window on an output of vgpu-display's export socket",
        "vgpu-view" };
    cli.add_option("--export", args.export_path, "the backend's export socket")
        ->envname("VGPU_EXPORT")
        ->required();
    cli.add_option("--output", args.output, "the output (scanout) to show (default 0)");
    cli.add_flag("--exclusive", args.exclusive,
        "take the exclusive lease (the guest waits for each frame to be uploaded, up to the "
        "release timeout)");
    cli.add_option("--scale", args.scale, "fit (the window, keeping the aspect) or 1")
        ->check(CLI::IsMember({ "fit", "1" }));
    cli.add_option("--frames", args.frames, "exit after N frames shown");
    cli.add_flag("--print-frames", args.print_frames, "print a line per frame shown");
    cli.add_option("--plane", args.plane,
           "region (default), or guest-memory or dmabuf: blobs as guest RAM or as their dmabuf, "
           "zero copy in the backend (vgpu-display --export-guest-memory; dmabuf also --dmabuf)")
        ->check(CLI::IsMember(vgpu::exporting::plane_type_list(vgpu::exporting::ALL_PLANE_TYPES)));
    cli.add_option("--renderer", args.renderer, "auto, software or accelerated")
        ->check(CLI::IsMember({ "auto", "software", "accelerated" }));
    try {
        cli.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) {
            std::printf("%s", cli.help().c_str());
            return 0;
        }
        std::fprintf(stderr, "vgpu-view: %s\n", e.what());
        return 2;
    }
    return vgpu::view::run(args);
}
} // namespace

int main(int argc, char** argv)
{
    ::signal(SIGPIPE, SIG_IGN);
    // Library exceptions (bad_alloc) are fatal: one line and a failure exit.
    try {
        return checked_main(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vgpu-view: fatal: %s\n", e.what());
        return 1;
    }
}
