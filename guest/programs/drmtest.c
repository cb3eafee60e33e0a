/*
 * drmtest: the vgpu-display test guest's DRM/KMS exerciser.
 *
 * One static program, raw DRM ioctls only (the kernel UAPI headers drm.h, drm_mode.h and
 * drm_fourcc.h as libdrm-dev ships them; libdrm itself is not linked). Every subcommand prints
 * machine-readable lines that start with "VGPU-" on stdout, which is the guest's serial console.
 *
 *   drmtest [--hold S] [--device PATH] SUBCOMMAND [ARGS...]
 *
 *   info                connectors, modes, encoders, CRTCs, planes (with formats), caps
 *   pattern [WxH]       legacy modeset (SETCRTC) of a dumb buffer showing the bars pattern
 *   flip [N]            N page flips with events between two buffers (default 60)
 *   dirtyfb [N]         N DIRTYFB calls with clip rects on the front buffer (default 32)
 *   cursor              SETCURSOR, SETCURSOR2 and MOVECURSOR with a 64x64 ARGB cursor
 *   atomic [N]          atomic modeset, then N atomic page flips with events (default 1)
 *   multi [N]           N buffers shown one after another with SETCRTC (default 4)
 *   outputs [N]         all connected outputs (or the first N) lit at once: one framebuffer per
 *                       output, then one framebuffer spread over outputs 0 and 1, then back
 *   bench [SECONDS]     page flips/s and full-frame DIRTYFB/s, SECONDS each (default 5)
 *   animate [SECONDS]   a moving bar with page flips, forever when SECONDS is 0 (default 0)
 *   frames [N]          frame 0 by a modeset, then N page flips, frame i showing variant (i+1) % 8,
 *                       for the host's CRC capture (default 8; see the markers below)
 *   input [SECONDS]     the input devices' events echoed (virtio-keyboard-pci, virtio-tablet-pci):
 *                       every /dev/input/event* device, forever when SECONDS is 0 (default 0)
 *   bootcount [get|set N]  a counter in CMOS RAM, which survives a guest reset (for reboot tests)
 *
 * Markers (one line each):
 *   VGPU-READY <subcommand> <W>x<H> variant=<V> [key=value...]
 *       a frame of the documented pattern is on screen (modulo the device's queue latency:
 *       the host should retry its screendump for a moment), and the program now holds it for
 *       --hold seconds (default 2, or $VGPU_HOLD) or until a line arrives on stdin, whichever
 *       comes first. A host harness writes "\n" to the serial port once it has its screendump.
 *   VGPU-FRAMES-READY <W>x<H> n=<N>
 *       frames: frame 0 (variant 0) is on screen by a modeset; the program holds (as for
 *       VGPU-READY) until the host has started its CRC capture, then draws the N frames.
 *   VGPU-FRAMES-DONE n=<N> variants=<V1>,<V2>,...
 *       frames: the N page flips are done (each flip event received), frame i showed Vi; held
 *       again, so that the host can read its CRCs before the program exits.
 *   VGPU-INPUT-DEVICE event<N> name=<name with _ for spaces>
 *   VGPU-INPUT-READY devices=<N>            input: every device is open; events follow as
 *   VGPU-INPUT <key|btn|abs|rel> code=<C> value=<V> dev=event<N>   (linux/input-event-codes.h;
 *                                           key for KEY_*, btn for BTN_*; SYN reports are left out)
 *   VGPU-BENCH flips_per_s=F dirtyfb_per_s=D mode=WxH flips=N dirtyfbs=M seconds=S
 *   VGPU-ERROR <what>: <errno text>        a failed step (the exit code is then non-zero)
 *   VGPU-DONE <subcommand> rc=<N>
 *
 * The pattern (pattern_pixel below, and guest/pattern.py, which must stay identical), for a
 * W x H frame and a variant V in 0..7, as XRGB8888 (0x00RRGGBB):
 *   - the 1-pixel border (x == 0, y == 0, x == W-1 or y == H-1) is white 0xFFFFFF;
 *   - rows y >= H*3/4 (integer division) are a ramp: red = (0x80 + 0x40*V) & 0xFF,
 *     green = y & 0xFF, blue = x & 0xFF;
 *   - the other rows are 8 vertical bars: colour BAR_COLOURS[(x*8/W + V) % 8].
 * The ramp catches stride, offset and row-order errors; the variant tells frames apart.
 *
 * Which variant each subcommand leaves on screen: pattern 0; flip N: N % 2; dirtyfb: 2;
 * atomic: 4 after the modeset, then 5 and 4 alternately, so N % 2 ? 5 : 4 at the end;
 * multi: step i shows i % 8; cursor and bench: 0 under the cursor / 0 or 1 (not checked);
 * frames N: (N % 8) at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>
#include <linux/input.h>

#include <drm.h>
#include <drm_fourcc.h>
#include <drm_mode.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define EVENT_TIMEOUT_MS 5000
/* Values of a plane's "type" property (enum drm_plane_type, not part of the UAPI headers). */
#define PLANE_TYPE_PRIMARY 1

/* The bar colours, left to right, for variant 0. None is white, so the border stays visible. */
static const uint32_t BAR_COLOURS[8] = {
    0xC0C0C0, /* grey */
    0xC0C000, /* yellow */
    0x00C0C0, /* cyan */
    0x00C000, /* green */
    0xC000C0, /* magenta */
    0xC00000, /* red */
    0x0000C0, /* blue */
    0x101010, /* near black */
};
static const uint32_t BORDER_COLOUR = 0xFFFFFF;

static uint32_t pattern_pixel(uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t variant)
{
    if (x == 0 || y == 0 || x == w - 1 || y == h - 1)
        return BORDER_COLOUR;
    if (y >= h * 3 / 4)
        return (((0x80 + 0x40 * variant) & 0xFF) << 16) | ((y & 0xFF) << 8) | (x & 0xFF);
    return BAR_COLOURS[(x * 8 / w + variant) % 8];
}

/* The cursor image, 64x64 ARGB8888: an opaque triangle above the anti-diagonal, transparent below.
 */
static uint32_t cursor_pixel(uint32_t x, uint32_t y)
{
    if (x + y >= 64)
        return 0x00000000;
    return 0xFF000000 | ((x * 4) << 16) | ((y * 4) << 8) | 0x80;
}

static int g_hold_ms = 2000;
static const char* g_device = "/dev/dri/card0";
static const char* g_command = "?";

static int fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char* fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    printf("VGPU-ERROR %s ", g_command);
    vprintf(fmt, ap);
    va_end(ap);
    printf(": %s\n", saved ? strerror(saved) : "failed");
    return 1;
}

static int xioctl(int fd, unsigned long request, void* arg)
{
    int r;
    do {
        r = ioctl(fd, request, arg);
    } while (r == -1 && (errno == EINTR || errno == EAGAIN));
    return r;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void* xcalloc(size_t count, size_t size)
{
    void* p = calloc(count ? count : 1, size);
    if (!p) {
        printf("VGPU-ERROR out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t ptr(const void* p) { return (uint64_t)(uintptr_t)p; }

/* Holds the current frame: --hold seconds, or until the host sends a line on the console. */
static void hold(void)
{
    double deadline = now_seconds() + g_hold_ms / 1000.0;
    for (;;) {
        double left = deadline - now_seconds();
        if (left <= 0)
            return;
        struct pollfd p = { .fd = 0, .events = POLLIN };
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r == 0)
            return;
        if (r < 0 || (p.revents & (POLLHUP | POLLERR | POLLNVAL))) {
            /* No usable console input: just wait out the time. */
            left = deadline - now_seconds();
            if (left > 0)
                usleep((useconds_t)(left * 1e6));
            return;
        }
        char buf[64];
        ssize_t n = read(0, buf, sizeof buf);
        if (n > 0 && memchr(buf, '\n', (size_t)n))
            return;
    }
}

static void ready(uint32_t w, uint32_t h, uint32_t variant, const char* extra_fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void ready(uint32_t w, uint32_t h, uint32_t variant, const char* extra_fmt, ...)
{
    /* Drop stale input first, so that only a line sent after this marker releases the hold. */
    tcflush(0, TCIFLUSH);
    printf("VGPU-READY %s %ux%u variant=%u", g_command, w, h, variant);
    if (extra_fmt) {
        va_list ap;
        va_start(ap, extra_fmt);
        putchar(' ');
        vprintf(extra_fmt, ap);
        va_end(ap);
    }
    putchar('\n');
    fflush(stdout);
    hold();
}

/* A marker line other than VGPU-READY, then the same hold: stale console input is dropped first,
 * so that only a line the host sends after the marker releases it. */
static void marker_and_hold(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void marker_and_hold(const char* fmt, ...)
{
    tcflush(0, TCIFLUSH);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    hold();
}

/* ---- resources ---------------------------------------------------------------------------- */

struct Resources {
    uint32_t *crtcs, *connectors, *encoders;
    uint32_t crtc_count, connector_count, encoder_count;
    uint32_t min_width, max_width, min_height, max_height;
};

static int resources_get(int fd, struct Resources* r)
{
    for (;;) {
        struct drm_mode_card_res counts = { 0 };
        if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &counts))
            return fail("GETRESOURCES");
        memset(r, 0, sizeof *r);
        r->crtcs = xcalloc(counts.count_crtcs, sizeof(uint32_t));
        r->connectors = xcalloc(counts.count_connectors, sizeof(uint32_t));
        r->encoders = xcalloc(counts.count_encoders, sizeof(uint32_t));
        struct drm_mode_card_res res = {
            .crtc_id_ptr = ptr(r->crtcs),
            .connector_id_ptr = ptr(r->connectors),
            .encoder_id_ptr = ptr(r->encoders),
            .count_crtcs = counts.count_crtcs,
            .count_connectors = counts.count_connectors,
            .count_encoders = counts.count_encoders,
        };
        if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res))
            return fail("GETRESOURCES");
        if (res.count_crtcs <= counts.count_crtcs && res.count_connectors <= counts.count_connectors
            && res.count_encoders <= counts.count_encoders) {
            r->crtc_count = res.count_crtcs;
            r->connector_count = res.count_connectors;
            r->encoder_count = res.count_encoders;
            r->min_width = res.min_width;
            r->max_width = res.max_width;
            r->min_height = res.min_height;
            r->max_height = res.max_height;
            return 0;
        }
        /* A hotplug grew a list between the two calls: ask again. */
        free(r->crtcs);
        free(r->connectors);
        free(r->encoders);
    }
}

struct Connector {
    struct drm_mode_get_connector info;
    struct drm_mode_modeinfo* modes;
    uint32_t* encoders;
};

/* The first call, with count_modes == 0, makes the kernel probe the connector (we are master). */
static int connector_get(int fd, uint32_t id, struct Connector* c)
{
    for (;;) {
        struct drm_mode_get_connector counts = { .connector_id = id };
        if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &counts))
            return fail("GETCONNECTOR %u", id);
        c->modes = xcalloc(counts.count_modes, sizeof(struct drm_mode_modeinfo));
        c->encoders = xcalloc(counts.count_encoders, sizeof(uint32_t));
        struct drm_mode_get_connector info = {
            .encoders_ptr = ptr(c->encoders),
            .modes_ptr = ptr(c->modes),
            .count_modes = counts.count_modes,
            .count_encoders = counts.count_encoders,
            .connector_id = id,
        };
        if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &info))
            return fail("GETCONNECTOR %u", id);
        if (info.count_modes <= counts.count_modes
            && info.count_encoders <= counts.count_encoders) {
            c->info = info;
            return 0;
        }
        free(c->modes);
        free(c->encoders);
    }
}

static const char* connector_type_name(uint32_t type)
{
    static const char* const names[] = {
        "Unknown",
        "VGA",
        "DVI-I",
        "DVI-D",
        "DVI-A",
        "Composite",
        "SVIDEO",
        "LVDS",
        "Component",
        "DIN",
        "DP",
        "HDMI-A",
        "HDMI-B",
        "TV",
        "eDP",
        "Virtual",
        "DSI",
        "DPI",
        "Writeback",
        "SPI",
        "USB",
    };
    return type < ARRAY_SIZE(names) ? names[type] : "?";
}

static const char* connection_name(uint32_t connection)
{
    switch (connection) {
    case 1:
        return "connected";
    case 2:
        return "disconnected";
    default:
        return "unknown";
    }
}

/* A property of a KMS object, looked up by name. */
static int property_find(int fd, uint32_t object_id, uint32_t object_type, const char* name,
    uint32_t* prop_id, uint64_t* value)
{
    struct drm_mode_obj_get_properties counts = { .obj_id = object_id, .obj_type = object_type };
    if (xioctl(fd, DRM_IOCTL_MODE_OBJ_GETPROPERTIES, &counts))
        return fail("OBJ_GETPROPERTIES %u", object_id);
    uint32_t* ids = xcalloc(counts.count_props, sizeof(uint32_t));
    uint64_t* values = xcalloc(counts.count_props, sizeof(uint64_t));
    struct drm_mode_obj_get_properties props = {
        .props_ptr = ptr(ids),
        .prop_values_ptr = ptr(values),
        .count_props = counts.count_props,
        .obj_id = object_id,
        .obj_type = object_type,
    };
    int rc = 1;
    if (xioctl(fd, DRM_IOCTL_MODE_OBJ_GETPROPERTIES, &props)) {
        rc = fail("OBJ_GETPROPERTIES %u", object_id);
        goto out;
    }
    for (uint32_t i = 0; i < props.count_props && i < counts.count_props; i++) {
        struct drm_mode_get_property prop = { .prop_id = ids[i] };
        if (xioctl(fd, DRM_IOCTL_MODE_GETPROPERTY, &prop))
            continue;
        if (strncmp(prop.name, name, DRM_PROP_NAME_LEN) == 0) {
            *prop_id = ids[i];
            if (value)
                *value = values[i];
            rc = 0;
            goto out;
        }
    }
    errno = ENOENT;
    rc = fail("object %u has no property %s", object_id, name);
out:
    free(ids);
    free(values);
    return rc;
}

static int set_client_cap(int fd, uint64_t cap, const char* name)
{
    struct drm_set_client_cap c = { .capability = cap, .value = 1 };
    if (xioctl(fd, DRM_IOCTL_SET_CLIENT_CAP, &c))
        return fail("SET_CLIENT_CAP %s", name);
    return 0;
}

static uint64_t get_cap(int fd, uint64_t cap)
{
    struct drm_get_cap c = { .capability = cap };
    if (xioctl(fd, DRM_IOCTL_GET_CAP, &c))
        return 0;
    return c.value;
}

/* ---- the display: one connector, its CRTC and a mode -------------------------------------- */

struct Display {
    int fd;
    uint32_t connector_id, crtc_id, crtc_index;
    struct drm_mode_modeinfo mode;
    uint32_t width, height;
};

static int parse_size(const char* s, uint32_t* w, uint32_t* h)
{
    unsigned a, b;
    char end;
    if (sscanf(s, "%ux%u%c", &a, &b, &end) != 2 || a == 0 || b == 0)
        return -1;
    *w = a;
    *h = b;
    return 0;
}

static int open_device(void)
{
    int fd = open(g_device, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        fail("open %s", g_device);
    return fd;
}

/* Sets d up for one connector: its mode (want_w x want_h when given; 0 = the preferred mode,
 * else the first one) and a CRTC it can drive that is not in used_crtcs (a bit per CRTC index):
 * the one its encoder drives now, else the first free one. */
static int output_setup(struct Display* d, const struct Resources* res,
    const struct Connector* conn, uint32_t want_w, uint32_t want_h, uint32_t used_crtcs)
{
    d->connector_id = conn->info.connector_id;
    int chosen = -1;
    for (uint32_t i = 0; i < conn->info.count_modes && chosen < 0; i++) {
        const struct drm_mode_modeinfo* m = &conn->modes[i];
        if (want_w ? (m->hdisplay == want_w && m->vdisplay == want_h)
                   : (m->type & DRM_MODE_TYPE_PREFERRED))
            chosen = (int)i;
    }
    if (chosen < 0 && want_w) {
        printf("VGPU-INFO available modes:");
        for (uint32_t i = 0; i < conn->info.count_modes; i++)
            printf(" %ux%u", conn->modes[i].hdisplay, conn->modes[i].vdisplay);
        printf("\n");
        errno = EINVAL;
        return fail("no mode %ux%u on connector %u", want_w, want_h, d->connector_id);
    }
    d->mode = conn->modes[chosen < 0 ? 0 : chosen];
    d->width = d->mode.hdisplay;
    d->height = d->mode.vdisplay;

    uint32_t encoder_id = conn->info.encoder_id ? conn->info.encoder_id
        : conn->info.count_encoders             ? conn->encoders[0]
                                                : 0;
    struct drm_mode_get_encoder enc = { .encoder_id = encoder_id };
    if (!encoder_id || xioctl(d->fd, DRM_IOCTL_MODE_GETENCODER, &enc))
        return fail("GETENCODER %u", encoder_id);
    d->crtc_id = 0;
    for (uint32_t i = 0; i < res->crtc_count && !d->crtc_id; i++) {
        if (used_crtcs & (1u << i))
            continue;
        if ((enc.crtc_id && res->crtcs[i] == enc.crtc_id)
            || (!enc.crtc_id && (enc.possible_crtcs & (1u << i)))) {
            d->crtc_id = res->crtcs[i];
            d->crtc_index = i;
        }
    }
    for (uint32_t i = 0; i < res->crtc_count && !d->crtc_id; i++) {
        if (!(used_crtcs & (1u << i)) && (enc.possible_crtcs & (1u << i))) {
            d->crtc_id = res->crtcs[i];
            d->crtc_index = i;
        }
    }
    if (!d->crtc_id) {
        errno = ENODEV;
        return fail("no free CRTC for encoder %u", encoder_id);
    }
    printf("VGPU-INFO using connector=%u crtc=%u mode=%ux%u@%u\n", d->connector_id, d->crtc_id,
        d->width, d->height, d->mode.vrefresh);
    return 0;
}

/* Opens the device and picks the first connected connector, a CRTC for it and a mode:
 * want_w x want_h when given (0 = the preferred mode, else the first one). */
static int display_open(struct Display* d, uint32_t want_w, uint32_t want_h)
{
    memset(d, 0, sizeof *d);
    d->fd = open_device();
    if (d->fd < 0)
        return 1;
    struct Resources res;
    if (resources_get(d->fd, &res))
        return 1;
    struct Connector conn = { 0 };
    bool found = false;
    for (uint32_t i = 0; i < res.connector_count && !found; i++) {
        if (connector_get(d->fd, res.connectors[i], &conn))
            return 1;
        found = conn.info.connection == 1 && conn.info.count_modes > 0;
    }
    if (!found) {
        errno = ENODEV;
        return fail("no connected connector with modes");
    }
    return output_setup(d, &res, &conn, want_w, want_h, 0);
}

/* ---- dumb buffers ------------------------------------------------------------------------- */

struct Buffer {
    uint32_t width, height, pitch, handle, fb_id;
    uint64_t size;
    uint32_t* pixels;
};

/* A dumb buffer, mapped; with a framebuffer of the given DRM format unless format is 0. */
static int buffer_create(int fd, uint32_t w, uint32_t h, uint32_t format, struct Buffer* b)
{
    memset(b, 0, sizeof *b);
    struct drm_mode_create_dumb create = { .height = h, .width = w, .bpp = 32 };
    if (xioctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &create))
        return fail("CREATE_DUMB %ux%u", w, h);
    b->width = w;
    b->height = h;
    b->pitch = create.pitch;
    b->handle = create.handle;
    b->size = create.size;
    if (format) {
        struct drm_mode_fb_cmd2 fb = { .width = w, .height = h, .pixel_format = format };
        fb.handles[0] = b->handle;
        fb.pitches[0] = b->pitch;
        if (xioctl(fd, DRM_IOCTL_MODE_ADDFB2, &fb))
            return fail("ADDFB2 %ux%u", w, h);
        b->fb_id = fb.fb_id;
    }
    struct drm_mode_map_dumb map = { .handle = b->handle };
    if (xioctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &map))
        return fail("MAP_DUMB");
    void* p = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)map.offset);
    if (p == MAP_FAILED)
        return fail("mmap dumb buffer");
    b->pixels = p;
    return 0;
}

static void buffer_destroy(int fd, struct Buffer* b)
{
    if (b->pixels)
        munmap(b->pixels, b->size);
    if (b->fb_id)
        xioctl(fd, DRM_IOCTL_MODE_RMFB, &b->fb_id);
    if (b->handle) {
        struct drm_mode_destroy_dumb destroy = { .handle = b->handle };
        xioctl(fd, DRM_IOCTL_MODE_DESTROY_DUMB, &destroy);
    }
    memset(b, 0, sizeof *b);
}

static void draw_rows(struct Buffer* b, uint32_t y0, uint32_t y1, uint32_t variant)
{
    for (uint32_t y = y0; y < y1 && y < b->height; y++) {
        uint32_t* row = b->pixels + (size_t)y * (b->pitch / 4);
        for (uint32_t x = 0; x < b->width; x++)
            row[x] = pattern_pixel(x, y, b->width, b->height, variant);
    }
}

static void draw_pattern(struct Buffer* b, uint32_t variant)
{
    draw_rows(b, 0, b->height, variant);
}

static int buffer_with_pattern(struct Display* d, uint32_t variant, struct Buffer* b)
{
    if (buffer_create(d->fd, d->width, d->height, DRM_FORMAT_XRGB8888, b))
        return 1;
    draw_pattern(b, variant);
    return 0;
}

/* ---- legacy KMS ---------------------------------------------------------------------------- */

/* Shows the framebuffer from its pixel (x, y) on: the CRTC scans out a mode-sized rectangle. */
static int set_crtc_at(struct Display* d, uint32_t fb_id, uint32_t x, uint32_t y)
{
    struct drm_mode_crtc crtc = {
        .set_connectors_ptr = ptr(&d->connector_id),
        .count_connectors = 1,
        .crtc_id = d->crtc_id,
        .fb_id = fb_id,
        .x = x,
        .y = y,
        .mode_valid = 1,
        .mode = d->mode,
    };
    if (xioctl(d->fd, DRM_IOCTL_MODE_SETCRTC, &crtc))
        return fail("SETCRTC fb=%u crtc=%u at %u,%u", fb_id, d->crtc_id, x, y);
    return 0;
}

static int set_crtc(struct Display* d, uint32_t fb_id) { return set_crtc_at(d, fb_id, 0, 0); }

static int page_flip(struct Display* d, uint32_t fb_id, uint64_t user_data)
{
    struct drm_mode_crtc_page_flip flip = {
        .crtc_id = d->crtc_id,
        .fb_id = fb_id,
        .flags = DRM_MODE_PAGE_FLIP_EVENT,
        .user_data = user_data,
    };
    if (xioctl(d->fd, DRM_IOCTL_MODE_PAGE_FLIP, &flip))
        return fail("PAGE_FLIP fb=%u", fb_id);
    return 0;
}

/* Waits for the flip-complete event carrying user_data (events for other data are errors). */
static int wait_flip_event(int fd, uint64_t user_data)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, EVENT_TIMEOUT_MS);
        if (r == 0) {
            errno = ETIMEDOUT;
            return fail("no flip event within %d ms", EVENT_TIMEOUT_MS);
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return fail("poll");
        }
        char buf[1024];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return fail("read event");
        }
        bool got = false;
        for (ssize_t off = 0; off + (ssize_t)sizeof(struct drm_event) <= n;) {
            struct drm_event e;
            memcpy(&e, buf + off, sizeof e);
            if (e.length < sizeof e || off + (ssize_t)e.length > n)
                break;
            if (e.type == DRM_EVENT_FLIP_COMPLETE && e.length >= sizeof(struct drm_event_vblank)) {
                struct drm_event_vblank v;
                memcpy(&v, buf + off, sizeof v);
                if (v.user_data != user_data) {
                    errno = EPROTO;
                    return fail("flip event for %llu, expected %llu",
                        (unsigned long long)v.user_data, (unsigned long long)user_data);
                }
                got = true;
            }
            off += e.length;
        }
        if (got)
            return 0;
    }
}

static int dirty(
    struct Display* d, uint32_t fb_id, const struct drm_clip_rect* clips, uint32_t count)
{
    struct drm_mode_fb_dirty_cmd cmd = {
        .fb_id = fb_id, .num_clips = count, .clips_ptr = ptr(clips)
    };
    if (xioctl(d->fd, DRM_IOCTL_MODE_DIRTYFB, &cmd))
        return fail("DIRTYFB fb=%u clips=%u", fb_id, count);
    return 0;
}

/* ---- subcommands --------------------------------------------------------------------------- */

static void print_mode(const char* prefix, uint32_t owner, const struct drm_mode_modeinfo* m)
{
    printf("VGPU-INFO %s owner=%u %ux%u@%u clock=%u htotal=%u vtotal=%u flags=0x%x type=0x%x%s "
           "name=%.*s\n",
        prefix, owner, m->hdisplay, m->vdisplay, m->vrefresh, m->clock, m->htotal, m->vtotal,
        m->flags, m->type, (m->type & DRM_MODE_TYPE_PREFERRED) ? " preferred" : "",
        DRM_DISPLAY_MODE_LEN, m->name);
}

static void print_planes(int fd)
{
    struct drm_mode_get_plane_res counts = { 0 };
    if (xioctl(fd, DRM_IOCTL_MODE_GETPLANERESOURCES, &counts)) {
        fail("GETPLANERESOURCES");
        return;
    }
    uint32_t* ids = xcalloc(counts.count_planes, sizeof(uint32_t));
    struct drm_mode_get_plane_res res = { .plane_id_ptr = ptr(ids),
        .count_planes = counts.count_planes };
    if (xioctl(fd, DRM_IOCTL_MODE_GETPLANERESOURCES, &res)) {
        fail("GETPLANERESOURCES");
        return;
    }
    static const char* const types[] = { "overlay", "primary", "cursor" };
    for (uint32_t i = 0; i < res.count_planes && i < counts.count_planes; i++) {
        uint32_t formats[64];
        struct drm_mode_get_plane plane = { .plane_id = ids[i],
            .count_format_types = ARRAY_SIZE(formats),
            .format_type_ptr = ptr(formats) };
        if (xioctl(fd, DRM_IOCTL_MODE_GETPLANE, &plane)) {
            fail("GETPLANE %u", ids[i]);
            continue;
        }
        uint32_t type_prop;
        uint64_t type = 99;
        property_find(fd, ids[i], DRM_MODE_OBJECT_PLANE, "type", &type_prop, &type);
        printf("VGPU-INFO plane id=%u type=%s possible_crtcs=0x%x crtc=%u fb=%u formats=", ids[i],
            type < ARRAY_SIZE(types) ? types[type] : "?", plane.possible_crtcs, plane.crtc_id,
            plane.fb_id);
        for (uint32_t f = 0; f < plane.count_format_types && f < ARRAY_SIZE(formats); f++)
            printf("%s%.4s", f ? "," : "", (const char*)&formats[f]);
        printf("\n");
    }
    free(ids);
}

static int cmd_info(int argc, char** argv)
{
    (void)argc;
    (void)argv;
    int fd = open_device();
    if (fd < 0)
        return 1;
    char name[64] = { 0 }, date[64] = { 0 }, desc[128] = { 0 };
    struct drm_version v = { .name_len = sizeof name - 1,
        .name = name,
        .date_len = sizeof date - 1,
        .date = date,
        .desc_len = sizeof desc - 1,
        .desc = desc };
    if (xioctl(fd, DRM_IOCTL_VERSION, &v))
        return fail("VERSION");
    printf("VGPU-INFO driver name=%s version=%d.%d.%d desc=\"%s\"\n", name, v.version_major,
        v.version_minor, v.version_patchlevel, desc);
    printf("VGPU-INFO caps dumb_buffer=%llu cursor=%llux%llu prefer_shadow=%llu "
           "async_page_flip=%llu\n",
        (unsigned long long)get_cap(fd, DRM_CAP_DUMB_BUFFER),
        (unsigned long long)get_cap(fd, DRM_CAP_CURSOR_WIDTH),
        (unsigned long long)get_cap(fd, DRM_CAP_CURSOR_HEIGHT),
        (unsigned long long)get_cap(fd, DRM_CAP_DUMB_PREFER_SHADOW),
        (unsigned long long)get_cap(fd, DRM_CAP_ASYNC_PAGE_FLIP));
    if (set_client_cap(fd, DRM_CLIENT_CAP_UNIVERSAL_PLANES, "UNIVERSAL_PLANES"))
        return 1;
    struct Resources res;
    if (resources_get(fd, &res))
        return 1;
    printf("VGPU-INFO resources crtcs=%u connectors=%u encoders=%u fb_min=%ux%u fb_max=%ux%u\n",
        res.crtc_count, res.connector_count, res.encoder_count, res.min_width, res.min_height,
        res.max_width, res.max_height);
    for (uint32_t i = 0; i < res.connector_count; i++) {
        struct Connector c;
        if (connector_get(fd, res.connectors[i], &c))
            return 1;
        printf("VGPU-INFO connector id=%u name=%s-%u status=%s size_mm=%ux%u encoder=%u modes=%u\n",
            c.info.connector_id, connector_type_name(c.info.connector_type),
            c.info.connector_type_id, connection_name(c.info.connection), c.info.mm_width,
            c.info.mm_height, c.info.encoder_id, c.info.count_modes);
        for (uint32_t m = 0; m < c.info.count_modes; m++)
            print_mode("mode", c.info.connector_id, &c.modes[m]);
        free(c.modes);
        free(c.encoders);
    }
    for (uint32_t i = 0; i < res.encoder_count; i++) {
        struct drm_mode_get_encoder e = { .encoder_id = res.encoders[i] };
        if (xioctl(fd, DRM_IOCTL_MODE_GETENCODER, &e))
            return fail("GETENCODER %u", res.encoders[i]);
        printf("VGPU-INFO encoder id=%u type=%u crtc=%u possible_crtcs=0x%x\n", e.encoder_id,
            e.encoder_type, e.crtc_id, e.possible_crtcs);
    }
    for (uint32_t i = 0; i < res.crtc_count; i++) {
        struct drm_mode_crtc c = { .crtc_id = res.crtcs[i] };
        if (xioctl(fd, DRM_IOCTL_MODE_GETCRTC, &c))
            return fail("GETCRTC %u", res.crtcs[i]);
        printf("VGPU-INFO crtc id=%u index=%u fb=%u pos=%u,%u mode_valid=%u gamma_size=%u\n",
            c.crtc_id, i, c.fb_id, c.x, c.y, c.mode_valid, c.gamma_size);
        if (c.mode_valid)
            print_mode("crtc-mode", c.crtc_id, &c.mode);
    }
    print_planes(fd);
    return 0;
}

static int cmd_pattern(int argc, char** argv)
{
    uint32_t w = 0, h = 0;
    if (argc > 0 && parse_size(argv[0], &w, &h)) {
        errno = EINVAL;
        return fail("bad size '%s' (want WxH)", argv[0]);
    }
    struct Display d;
    struct Buffer b;
    if (display_open(&d, w, h) || buffer_with_pattern(&d, 0, &b) || set_crtc(&d, b.fb_id))
        return 1;
    ready(d.width, d.height, 0, NULL);
    buffer_destroy(d.fd, &b);
    return 0;
}

static uint32_t count_arg(int argc, char** argv, uint32_t fallback)
{
    return argc > 0 ? (uint32_t)strtoul(argv[0], NULL, 0) : fallback;
}

static int cmd_flip(int argc, char** argv)
{
    uint32_t count = count_arg(argc, argv, 60);
    struct Display d;
    struct Buffer b[2];
    if (display_open(&d, 0, 0) || buffer_with_pattern(&d, 0, &b[0])
        || buffer_with_pattern(&d, 1, &b[1]) || set_crtc(&d, b[0].fb_id))
        return 1;
    double start = now_seconds();
    for (uint32_t i = 1; i <= count; i++) {
        if (page_flip(&d, b[i % 2].fb_id, i) || wait_flip_event(d.fd, i))
            return 1;
    }
    double elapsed = now_seconds() - start;
    printf("VGPU-FLIP flips=%u seconds=%.3f flips_per_s=%.1f\n", count, elapsed,
        elapsed > 0 ? count / elapsed : 0.0);
    ready(d.width, d.height, count % 2, "flips=%u", count);
    buffer_destroy(d.fd, &b[0]);
    buffer_destroy(d.fd, &b[1]);
    return 0;
}

/* Band i of 8 horizontal bands: rows [i*H/8, (i+1)*H/8). */
static struct drm_clip_rect band_clip(
    const struct Display* d, uint32_t band, uint32_t x0, uint32_t x1)
{
    struct drm_clip_rect r = {
        .x1 = (unsigned short)x0,
        .y1 = (unsigned short)(band * d->height / 8),
        .x2 = (unsigned short)x1,
        .y2 = (unsigned short)((band + 1) * d->height / 8),
    };
    return r;
}

static int cmd_dirtyfb(int argc, char** argv)
{
    uint32_t count = count_arg(argc, argv, 32);
    struct Display d;
    struct Buffer b;
    if (display_open(&d, 0, 0) || buffer_with_pattern(&d, 0, &b) || set_crtc(&d, b.fb_id))
        return 1;
    /* Call i rewrites band i % 8 with variant 1 or 3 and reports it as two clip rects (left and
     * right half); a final pass rewrites every band with variant 2, one clip per call. Variant 2
     * never appears before that pass, so only a device that honours each clip shows variant 2. */
    for (uint32_t i = 0; i < count; i++) {
        uint32_t band = i % 8;
        struct drm_clip_rect clips[2] = { band_clip(&d, band, 0, d.width / 2),
            band_clip(&d, band, d.width / 2, d.width) };
        draw_rows(&b, clips[0].y1, clips[0].y2, (i / 8) % 2 ? 3 : 1);
        if (dirty(&d, b.fb_id, clips, 2))
            return 1;
    }
    for (uint32_t band = 0; band < 8; band++) {
        struct drm_clip_rect clip = band_clip(&d, band, 0, d.width);
        draw_rows(&b, clip.y1, clip.y2, 2);
        if (dirty(&d, b.fb_id, &clip, 1))
            return 1;
    }
    printf("VGPU-DIRTYFB calls=%u final_calls=8\n", count);
    ready(d.width, d.height, 2, "dirtyfbs=%u", count + 8);
    buffer_destroy(d.fd, &b);
    return 0;
}

static int cursor_ioctl(
    struct Display* d, uint32_t flags, uint32_t handle, int32_t x, int32_t y, bool v2)
{
    if (v2) {
        struct drm_mode_cursor2 c = { .flags = flags,
            .crtc_id = d->crtc_id,
            .x = x,
            .y = y,
            .width = 64,
            .height = 64,
            .handle = handle,
            .hot_x = 8,
            .hot_y = 8 };
        if (xioctl(d->fd, DRM_IOCTL_MODE_CURSOR2, &c))
            return fail("CURSOR2 flags=0x%x", flags);
        return 0;
    }
    struct drm_mode_cursor c = { .flags = flags,
        .crtc_id = d->crtc_id,
        .x = x,
        .y = y,
        .width = 64,
        .height = 64,
        .handle = handle };
    if (xioctl(d->fd, DRM_IOCTL_MODE_CURSOR, &c))
        return fail("CURSOR flags=0x%x", flags);
    return 0;
}

static int cmd_cursor(int argc, char** argv)
{
    (void)argc;
    (void)argv;
    struct Display d;
    struct Buffer b, cursor;
    if (display_open(&d, 0, 0) || buffer_with_pattern(&d, 0, &b) || set_crtc(&d, b.fb_id))
        return 1;
    printf("VGPU-INFO cursor cap=%llux%llu\n",
        (unsigned long long)get_cap(d.fd, DRM_CAP_CURSOR_WIDTH),
        (unsigned long long)get_cap(d.fd, DRM_CAP_CURSOR_HEIGHT));
    if (buffer_create(d.fd, 64, 64, 0, &cursor))
        return 1;
    for (uint32_t y = 0; y < 64; y++)
        for (uint32_t x = 0; x < 64; x++)
            cursor.pixels[y * (cursor.pitch / 4) + x] = cursor_pixel(x, y);
    if (cursor_ioctl(&d, DRM_MODE_CURSOR_BO, cursor.handle, 0, 0, false))
        return 1;
    printf("VGPU-CURSOR set handle=%u size=64x64 hot=0,0 ioctl=SETCURSOR\n", cursor.handle);
    if (cursor_ioctl(&d, DRM_MODE_CURSOR_BO, cursor.handle, 0, 0, true))
        return 1;
    printf("VGPU-CURSOR set handle=%u size=64x64 hot=8,8 ioctl=SETCURSOR2\n", cursor.handle);
    const int32_t positions[][2] = {
        { 0, 0 },
        { 100, 50 },
        { (int32_t)d.width / 2, (int32_t)d.height / 2 },
        { (int32_t)d.width - 64, (int32_t)d.height - 64 },
        { (int32_t)d.width - 32, (int32_t)d.height - 32 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(positions); i++) {
        if (cursor_ioctl(&d, DRM_MODE_CURSOR_MOVE, 0, positions[i][0], positions[i][1], false))
            return 1;
        printf("VGPU-CURSOR move x=%d y=%d\n", positions[i][0], positions[i][1]);
        ready(d.width, d.height, 0, "cursor=%d,%d step=%zu", positions[i][0], positions[i][1], i);
    }
    if (cursor_ioctl(&d, DRM_MODE_CURSOR_BO, 0, 0, 0, false))
        return 1;
    printf("VGPU-CURSOR hidden\n");
    buffer_destroy(d.fd, &cursor);
    buffer_destroy(d.fd, &b);
    return 0;
}

/* The property ids an atomic modeset of one plane needs. */
struct AtomicProps {
    uint32_t plane_id;
    uint32_t conn_crtc_id, crtc_mode_id, crtc_active;
    uint32_t fb_id, crtc_id, src_x, src_y, src_w, src_h, crtc_x, crtc_y, crtc_w, crtc_h;
};

static int find_primary_plane(struct Display* d, uint32_t* plane_id)
{
    struct drm_mode_get_plane_res counts = { 0 };
    if (xioctl(d->fd, DRM_IOCTL_MODE_GETPLANERESOURCES, &counts))
        return fail("GETPLANERESOURCES");
    uint32_t* ids = xcalloc(counts.count_planes, sizeof(uint32_t));
    struct drm_mode_get_plane_res res = { .plane_id_ptr = ptr(ids),
        .count_planes = counts.count_planes };
    if (xioctl(d->fd, DRM_IOCTL_MODE_GETPLANERESOURCES, &res))
        return fail("GETPLANERESOURCES");
    for (uint32_t i = 0; i < res.count_planes && i < counts.count_planes; i++) {
        struct drm_mode_get_plane plane = { .plane_id = ids[i] };
        uint32_t prop;
        uint64_t type = 0;
        if (xioctl(d->fd, DRM_IOCTL_MODE_GETPLANE, &plane)
            || property_find(d->fd, ids[i], DRM_MODE_OBJECT_PLANE, "type", &prop, &type))
            continue;
        if (type == PLANE_TYPE_PRIMARY && (plane.possible_crtcs & (1u << d->crtc_index))) {
            *plane_id = ids[i];
            free(ids);
            return 0;
        }
    }
    free(ids);
    errno = ENODEV;
    return fail("no primary plane for crtc %u", d->crtc_id);
}

static int atomic_props(struct Display* d, struct AtomicProps* p)
{
    if (find_primary_plane(d, &p->plane_id))
        return 1;
    struct {
        uint32_t object, type;
        const char* name;
        uint32_t* id;
    } wanted[] = {
        { d->connector_id, DRM_MODE_OBJECT_CONNECTOR, "CRTC_ID", &p->conn_crtc_id },
        { d->crtc_id, DRM_MODE_OBJECT_CRTC, "MODE_ID", &p->crtc_mode_id },
        { d->crtc_id, DRM_MODE_OBJECT_CRTC, "ACTIVE", &p->crtc_active },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "FB_ID", &p->fb_id },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "CRTC_ID", &p->crtc_id },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "SRC_X", &p->src_x },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "SRC_Y", &p->src_y },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "SRC_W", &p->src_w },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "SRC_H", &p->src_h },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "CRTC_X", &p->crtc_x },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "CRTC_Y", &p->crtc_y },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "CRTC_W", &p->crtc_w },
        { p->plane_id, DRM_MODE_OBJECT_PLANE, "CRTC_H", &p->crtc_h },
    };
    for (size_t i = 0; i < ARRAY_SIZE(wanted); i++)
        if (property_find(
                d->fd, wanted[i].object, wanted[i].type, wanted[i].name, wanted[i].id, NULL))
            return 1;
    return 0;
}

/* An atomic request under construction: objects in order, each with its properties. */
struct AtomicRequest {
    uint32_t objects[8], prop_counts[8], props[32];
    uint64_t values[32];
    uint32_t object_count, prop_count;
};

static void atomic_add(struct AtomicRequest* r, uint32_t object, uint32_t prop, uint64_t value)
{
    if (r->object_count == 0 || r->objects[r->object_count - 1] != object) {
        r->objects[r->object_count] = object;
        r->prop_counts[r->object_count] = 0;
        r->object_count++;
    }
    r->prop_counts[r->object_count - 1]++;
    r->props[r->prop_count] = prop;
    r->values[r->prop_count] = value;
    r->prop_count++;
}

static int atomic_commit(
    int fd, struct AtomicRequest* r, uint32_t flags, uint64_t user_data, const char* what)
{
    struct drm_mode_atomic a = {
        .flags = flags,
        .count_objs = r->object_count,
        .objs_ptr = ptr(r->objects),
        .count_props_ptr = ptr(r->prop_counts),
        .props_ptr = ptr(r->props),
        .prop_values_ptr = ptr(r->values),
        .user_data = user_data,
    };
    if (xioctl(fd, DRM_IOCTL_MODE_ATOMIC, &a))
        return fail("ATOMIC %s flags=0x%x", what, flags);
    return 0;
}

static int cmd_atomic(int argc, char** argv)
{
    uint32_t flips = count_arg(argc, argv, 1);
    struct Display d;
    if (display_open(&d, 0, 0)
        || set_client_cap(d.fd, DRM_CLIENT_CAP_UNIVERSAL_PLANES, "UNIVERSAL_PLANES")
        || set_client_cap(d.fd, DRM_CLIENT_CAP_ATOMIC, "ATOMIC"))
        return 1;
    struct AtomicProps p;
    struct Buffer b[2];
    if (atomic_props(&d, &p) || buffer_with_pattern(&d, 4, &b[0])
        || buffer_with_pattern(&d, 5, &b[1]))
        return 1;
    struct drm_mode_create_blob blob = { .data = ptr(&d.mode), .length = sizeof d.mode };
    if (xioctl(d.fd, DRM_IOCTL_MODE_CREATEPROPBLOB, &blob))
        return fail("CREATEPROPBLOB");
    printf("VGPU-INFO atomic plane=%u mode_blob=%u\n", p.plane_id, blob.blob_id);

    struct AtomicRequest r = { 0 };
    atomic_add(&r, d.connector_id, p.conn_crtc_id, d.crtc_id);
    atomic_add(&r, d.crtc_id, p.crtc_mode_id, blob.blob_id);
    atomic_add(&r, d.crtc_id, p.crtc_active, 1);
    atomic_add(&r, p.plane_id, p.fb_id, b[0].fb_id);
    atomic_add(&r, p.plane_id, p.crtc_id, d.crtc_id);
    atomic_add(&r, p.plane_id, p.src_x, 0);
    atomic_add(&r, p.plane_id, p.src_y, 0);
    atomic_add(&r, p.plane_id, p.src_w, (uint64_t)d.width << 16);
    atomic_add(&r, p.plane_id, p.src_h, (uint64_t)d.height << 16);
    atomic_add(&r, p.plane_id, p.crtc_x, 0);
    atomic_add(&r, p.plane_id, p.crtc_y, 0);
    atomic_add(&r, p.plane_id, p.crtc_w, d.width);
    atomic_add(&r, p.plane_id, p.crtc_h, d.height);
    if (atomic_commit(
            d.fd, &r, DRM_MODE_ATOMIC_TEST_ONLY | DRM_MODE_ATOMIC_ALLOW_MODESET, 0, "test-only")
        || atomic_commit(d.fd, &r, DRM_MODE_ATOMIC_ALLOW_MODESET, 0, "modeset"))
        return 1;
    printf("VGPU-ATOMIC modeset fb=%u\n", b[0].fb_id);
    ready(d.width, d.height, 4, "step=modeset");

    double start = now_seconds();
    for (uint32_t i = 1; i <= flips; i++) {
        struct AtomicRequest f = { 0 };
        atomic_add(&f, p.plane_id, p.fb_id, b[i % 2].fb_id);
        if (atomic_commit(d.fd, &f, DRM_MODE_ATOMIC_NONBLOCK | DRM_MODE_PAGE_FLIP_EVENT, i, "flip")
            || wait_flip_event(d.fd, i))
            return 1;
    }
    double elapsed = now_seconds() - start;
    printf("VGPU-ATOMIC flips=%u seconds=%.3f\n", flips, elapsed);
    ready(d.width, d.height, flips % 2 ? 5 : 4, "step=flip flips=%u", flips);
    xioctl(d.fd, DRM_IOCTL_MODE_DESTROYPROPBLOB,
        &(struct drm_mode_destroy_blob) { .blob_id = blob.blob_id });
    buffer_destroy(d.fd, &b[0]);
    buffer_destroy(d.fd, &b[1]);
    return 0;
}

static int cmd_multi(int argc, char** argv)
{
    uint32_t count = count_arg(argc, argv, 4);
    if (count == 0 || count > 16) {
        errno = EINVAL;
        return fail("multi wants 1..16 buffers");
    }
    struct Display d;
    struct Buffer b[16];
    if (display_open(&d, 0, 0))
        return 1;
    for (uint32_t i = 0; i < count; i++)
        if (buffer_with_pattern(&d, i % 8, &b[i]))
            return 1;
    for (uint32_t i = 0; i < count; i++) {
        if (set_crtc(&d, b[i].fb_id))
            return 1;
        ready(d.width, d.height, i % 8, "step=%u fb=%u", i, b[i].fb_id);
    }
    for (uint32_t i = 0; i < count; i++)
        buffer_destroy(d.fd, &b[i]);
    return 0;
}

/* outputs [N]: every connected output lit at once (all of them when N is 0, else the first N,
 * failing when fewer are connected), in three steps, each announced by
 *   VGPU-OUTPUTS step=<separate|spread|back> n=<N> <c>=<W>x<H>@<X>,<Y>/<FW>x<FH>:<V> ...
 * (the output on connector c, the c-th in the list, which is virtio-gpu's scanout c, shows the
 * W x H rectangle at X,Y of a FW x FH framebuffer drawn with variant V) and held: separate, one
 * framebuffer per output (variant k % 8 for the k-th connected one); spread (two outputs or more),
 * one framebuffer of (W0 + W1) x max(H0, H1) with variant 6 over the first two connected outputs,
 * the first from its top left corner, the second from (W0, FH - H1), the others unchanged; back,
 * the separate framebuffers again. Every connector is listed first as
 *   VGPU-CONNECTOR index=<i> id=<ID> connected=<0|1> modes=<K> preferred=<W>x<H>|none */
#define SPREAD_VARIANT 6
static int cmd_outputs(int argc, char** argv)
{
    uint32_t wanted = argc > 0 ? (uint32_t)strtoul(argv[0], NULL, 0) : 0;
    struct Display out[16];
    uint32_t connector_index[16]; /* in the connector list: virtio-gpu's scanout number */
    struct Buffer own[16], spread = { 0 };
    uint32_t src_x[16] = { 0 }, src_y[16] = { 0 };
    struct Buffer* shown[16];
    int fd = open_device();
    if (fd < 0)
        return 1;
    struct Resources res;
    if (resources_get(fd, &res))
        return 1;
    uint32_t count = 0, used = 0;
    for (uint32_t i = 0; i < res.connector_count; i++) {
        struct Connector conn = { 0 };
        if (connector_get(fd, res.connectors[i], &conn))
            return 1;
        bool connected = conn.info.connection == 1 && conn.info.count_modes > 0;
        const struct drm_mode_modeinfo* preferred = NULL;
        for (uint32_t m = 0; m < conn.info.count_modes && !preferred; m++)
            if (conn.modes[m].type & DRM_MODE_TYPE_PREFERRED)
                preferred = &conn.modes[m];
        if (preferred)
            printf("VGPU-CONNECTOR index=%u id=%u connected=%d modes=%u preferred=%ux%u\n", i,
                conn.info.connector_id, connected, conn.info.count_modes, preferred->hdisplay,
                preferred->vdisplay);
        else
            printf("VGPU-CONNECTOR index=%u id=%u connected=%d modes=%u preferred=none\n", i,
                conn.info.connector_id, connected, conn.info.count_modes);
        if (!connected || count == ARRAY_SIZE(out) || (wanted && count == wanted))
            continue;
        memset(&out[count], 0, sizeof out[count]);
        out[count].fd = fd;
        if (output_setup(&out[count], &res, &conn, 0, 0, used))
            return 1;
        used |= 1u << out[count].crtc_index;
        connector_index[count] = i;
        count++;
    }
    if (count == 0 || (wanted && count < wanted)) {
        errno = ENODEV;
        return fail("%u outputs connected, %u wanted", count, wanted ? wanted : 1);
    }
    for (uint32_t i = 0; i < count; i++) {
        if (buffer_with_pattern(&out[i], i % 8, &own[i]))
            return 1;
        shown[i] = &own[i];
    }
    const char* steps[] = { "separate", "spread", "back" };
    for (uint32_t step = 0; step < ARRAY_SIZE(steps); step++) {
        if (step == 1) {
            if (count < 2)
                continue;
            uint32_t w = out[0].width + out[1].width;
            uint32_t h = out[0].height > out[1].height ? out[0].height : out[1].height;
            if (buffer_create(fd, w, h, DRM_FORMAT_XRGB8888, &spread))
                return 1;
            draw_pattern(&spread, SPREAD_VARIANT);
            shown[0] = shown[1] = &spread;
            src_x[1] = out[0].width;
            src_y[1] = h - out[1].height;
        } else if (step == 2) {
            for (uint32_t i = 0; i < count; i++) {
                shown[i] = &own[i];
                src_x[i] = src_y[i] = 0;
            }
        }
        for (uint32_t i = 0; i < count; i++)
            if ((step == 0 || (i < 2 && count >= 2))
                && set_crtc_at(&out[i], shown[i]->fb_id, src_x[i], src_y[i]))
                return 1;
        tcflush(0, TCIFLUSH);
        printf("VGPU-OUTPUTS step=%s n=%u", steps[step], count);
        for (uint32_t i = 0; i < count; i++)
            printf(" %u=%ux%u@%u,%u/%ux%u:%u", connector_index[i], out[i].width, out[i].height,
                src_x[i], src_y[i], shown[i]->width, shown[i]->height,
                shown[i] == &spread ? SPREAD_VARIANT : i % 8);
        printf("\n");
        fflush(stdout);
        hold();
    }
    for (uint32_t i = 0; i < count; i++)
        buffer_destroy(fd, &own[i]);
    if (spread.handle)
        buffer_destroy(fd, &spread);
    return 0;
}

static int cmd_bench(int argc, char** argv)
{
    double seconds = argc > 0 ? strtod(argv[0], NULL) : 5.0;
    struct Display d;
    struct Buffer b[2];
    if (display_open(&d, 0, 0) || buffer_with_pattern(&d, 0, &b[0])
        || buffer_with_pattern(&d, 1, &b[1]) || set_crtc(&d, b[0].fb_id))
        return 1;
    /* Page flips: flip, wait for the event, alternate. */
    uint64_t flips = 0;
    double start = now_seconds(), flip_time;
    do {
        flips++;
        if (page_flip(&d, b[flips % 2].fb_id, flips) || wait_flip_event(d.fd, flips))
            return 1;
        flip_time = now_seconds() - start;
    } while (flip_time < seconds);
    /* DIRTYFB: touch a pixel of the front buffer, report the whole frame dirty. */
    struct Buffer* front = &b[flips % 2];
    struct drm_clip_rect full = { 0, 0, (unsigned short)d.width, (unsigned short)d.height };
    uint64_t dirties = 0;
    double dirty_time;
    start = now_seconds();
    do {
        dirties++;
        front->pixels[(front->pitch / 4) * 1 + 1] = (uint32_t)dirties & 0xFFFFFF;
        if (dirty(&d, front->fb_id, &full, 1))
            return 1;
        dirty_time = now_seconds() - start;
    } while (dirty_time < seconds);
    printf("VGPU-BENCH flips_per_s=%.1f dirtyfb_per_s=%.1f mode=%ux%u flips=%llu dirtyfbs=%llu "
           "seconds=%.1f\n",
        flips / flip_time, dirties / dirty_time, d.width, d.height, (unsigned long long)flips,
        (unsigned long long)dirties, seconds);
    buffer_destroy(d.fd, &b[0]);
    buffer_destroy(d.fd, &b[1]);
    return 0;
}

/* Restores the pattern under an old bar and draws the bar (32 px wide, white) at x. */
static void draw_bar(struct Buffer* b, uint32_t old_x, uint32_t x)
{
    for (uint32_t y = 0; y < b->height; y++) {
        uint32_t* row = b->pixels + (size_t)y * (b->pitch / 4);
        for (uint32_t i = old_x; i < old_x + 32 && i < b->width; i++)
            row[i] = pattern_pixel(i, y, b->width, b->height, 0);
        for (uint32_t i = x; i < x + 32 && i < b->width; i++)
            row[i] = 0xFFFFFF;
    }
}

static int cmd_animate(int argc, char** argv)
{
    double seconds = argc > 0 ? strtod(argv[0], NULL) : 0.0;
    struct Display d;
    struct Buffer b[2];
    if (display_open(&d, 0, 0) || buffer_with_pattern(&d, 0, &b[0])
        || buffer_with_pattern(&d, 0, &b[1]) || set_crtc(&d, b[0].fb_id))
        return 1;
    uint32_t bar_x[2] = { 0, 0 };
    uint32_t span = d.width > 32 ? d.width - 32 : 1;
    double start = now_seconds(), report = start + 5;
    uint64_t frames = 0, reported = 0;
    while (seconds <= 0 || now_seconds() - start < seconds) {
        frames++;
        struct Buffer* back = &b[frames % 2];
        uint32_t x = (uint32_t)((frames * 8) % span);
        draw_bar(back, bar_x[frames % 2], x);
        bar_x[frames % 2] = x;
        if (page_flip(&d, back->fb_id, frames) || wait_flip_event(d.fd, frames))
            return 1;
        double t = now_seconds();
        if (t >= report) {
            printf("VGPU-ANIMATE frames=%llu fps=%.1f\n", (unsigned long long)frames,
                (frames - reported) / (t - report + 5));
            reported = frames;
            report = t + 5;
        }
    }
    printf("VGPU-ANIMATE frames=%llu seconds=%.1f\n", (unsigned long long)frames,
        now_seconds() - start);
    return 0;
}

#define INPUT_MAX 16

/* Echoes what the guest's input devices report, for the host to check that keys and clicks sent
 * to QEMU (by vgpu-vnc, through QMP) arrive. Waits up to 10 s for the devices to appear (the
 * virtio_input driver probes them while /init goes on). */
static int cmd_input(int argc, char** argv)
{
    double seconds = argc > 0 ? strtod(argv[0], NULL) : 0.0;
    struct pollfd fds[INPUT_MAX];
    int numbers[INPUT_MAX];
    int count = 0;
    for (int tries = 0; count == 0 && tries < 100; tries++) {
        DIR* dir = opendir("/dev/input");
        struct dirent* e;
        while (dir && (e = readdir(dir)) && count < INPUT_MAX) {
            int n;
            if (sscanf(e->d_name, "event%d", &n) != 1)
                continue;
            char path[64], name[128] = "";
            snprintf(path, sizeof(path), "/dev/input/event%d", n);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return fail("open %s", path);
            if (ioctl(fd, EVIOCGNAME(sizeof(name) - 1), name) < 0)
                strcpy(name, "unknown");
            for (char* c = name; *c; c++)
                if (*c == ' ')
                    *c = '_';
            printf("VGPU-INPUT-DEVICE event%d name=%s\n", n, name);
            fds[count].fd = fd;
            fds[count].events = POLLIN;
            numbers[count++] = n;
        }
        if (dir)
            closedir(dir);
        if (count == 0)
            usleep(100000);
    }
    if (count == 0)
        return fail("no /dev/input/event* device after 10 s");
    printf("VGPU-INPUT-READY devices=%d\n", count);
    double start = now_seconds();
    while (seconds <= 0 || now_seconds() - start < seconds) {
        if (poll(fds, (nfds_t)count, 200) < 0 && errno != EINTR)
            return fail("poll");
        for (int i = 0; i < count; i++) {
            if (!(fds[i].revents & POLLIN))
                continue;
            struct input_event ev[16];
            ssize_t got = read(fds[i].fd, ev, sizeof(ev));
            if (got < 0)
                return fail("read event%d", numbers[i]);
            for (size_t k = 0; k < (size_t)got / sizeof(ev[0]); k++) {
                const char* kind = ev[k].type == EV_KEY
                    ? (ev[k].code >= BTN_MISC && ev[k].code < KEY_OK ? "btn" : "key")
                    : ev[k].type == EV_ABS ? "abs"
                    : ev[k].type == EV_REL ? "rel"
                                           : NULL;
                if (kind)
                    printf("VGPU-INPUT %s code=%u value=%d dev=event%d\n", kind, ev[k].code,
                        ev[k].value, numbers[i]);
            }
        }
    }
    for (int i = 0; i < count; i++)
        close(fds[i].fd);
    return 0;
}

#define FRAMES_MAX 1000

/* Frame 0 (variant 0) by a modeset, then N page flips with events, frame i showing variant
 * (i+1) % 8, alternating two buffers. With the 6.1 driver each flip is TRANSFER_TO_HOST_2D +
 * SET_SCANOUT + RESOURCE_FLUSH, i.e. exactly one visible change for the host's CRC capture. The
 * flip event does not wait for the host (non-blob resources), but a buffer is redrawn only two
 * flips after it was shown, after a whole frame has been drawn into the other one. */
static int cmd_frames(int argc, char** argv)
{
    uint32_t count = count_arg(argc, argv, 8);
    if (count == 0 || count > FRAMES_MAX) {
        errno = EINVAL;
        return fail("frames wants 1..%u frames", FRAMES_MAX);
    }
    struct Display d;
    struct Buffer b[2];
    if (display_open(&d, 0, 0) || buffer_with_pattern(&d, 0, &b[0])
        || buffer_create(d.fd, d.width, d.height, DRM_FORMAT_XRGB8888, &b[1])
        || set_crtc(&d, b[0].fb_id))
        return 1;
    marker_and_hold("VGPU-FRAMES-READY %ux%u n=%u", d.width, d.height, count);
    char* variants = xcalloc(count, 2); /* "V," per frame, the last ',' becomes the NUL */
    size_t length = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t variant = (i + 1) % 8;
        struct Buffer* back = &b[(i + 1) % 2];
        draw_pattern(back, variant);
        if (page_flip(&d, back->fb_id, i + 1) || wait_flip_event(d.fd, i + 1))
            return 1;
        length += (size_t)sprintf(variants + length, "%s%u", i ? "," : "", variant);
    }
    marker_and_hold("VGPU-FRAMES-DONE n=%u variants=%s", count, variants);
    free(variants);
    buffer_destroy(d.fd, &b[0]);
    buffer_destroy(d.fd, &b[1]);
    return 0;
}

/* A counter in CMOS RAM (index 0x7e, unused by QEMU's pc machine and SeaBIOS). QEMU keeps CMOS RAM
 * across a guest reset, so /init uses it to know which part of a test list already ran. */
#define BOOTCOUNT_CMOS_INDEX 0x7e

static int cmd_bootcount(int argc, char** argv)
{
    if (ioperm(0x70, 2, 1))
        return fail("ioperm 0x70");
    if (argc >= 2 && strcmp(argv[0], "set") == 0) {
        outb(BOOTCOUNT_CMOS_INDEX, 0x70);
        outb((unsigned char)strtoul(argv[1], NULL, 0), 0x71);
    }
    outb(BOOTCOUNT_CMOS_INDEX, 0x70);
    printf("%u\n", inb(0x71));
    return 0;
}

static const struct {
    const char* name;
    int (*run)(int argc, char** argv);
} COMMANDS[] = {
    { "info", cmd_info },
    { "pattern", cmd_pattern },
    { "flip", cmd_flip },
    { "dirtyfb", cmd_dirtyfb },
    { "cursor", cmd_cursor },
    { "atomic", cmd_atomic },
    { "multi", cmd_multi },
    { "outputs", cmd_outputs },
    { "bench", cmd_bench },
    { "animate", cmd_animate },
    { "frames", cmd_frames },
    { "input", cmd_input },
    { "bootcount", cmd_bootcount },
};

static int usage(void)
{
    fprintf(stderr, "usage: drmtest [--hold SECONDS] [--device PATH] COMMAND [ARGS...]\ncommands:");
    for (size_t i = 0; i < ARRAY_SIZE(COMMANDS); i++)
        fprintf(stderr, " %s", COMMANDS[i].name);
    fprintf(stderr, "\n");
    return 2;
}

int main(int argc, char** argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char* env_hold = getenv("VGPU_HOLD");
    if (env_hold && *env_hold)
        g_hold_ms = (int)(strtod(env_hold, NULL) * 1000);
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--hold") == 0 && i + 1 < argc)
            g_hold_ms = (int)(strtod(argv[++i], NULL) * 1000);
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            g_device = argv[++i];
        else
            return usage();
    }
    if (i >= argc)
        return usage();
    g_command = argv[i];
    for (size_t c = 0; c < ARRAY_SIZE(COMMANDS); c++) {
        if (strcmp(COMMANDS[c].name, g_command) == 0) {
            /* No terminal echo: the host's release lines must not come back on the console. */
            struct termios t;
            if (tcgetattr(0, &t) == 0) {
                t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
                tcsetattr(0, TCSANOW, &t);
            }
            int rc = COMMANDS[c].run(argc - i - 1, argv + i + 1);
            if (strcmp(g_command, "bootcount") != 0)
                printf("VGPU-DONE %s rc=%d\n", g_command, rc);
            return rc;
        }
    }
    return usage();
}
