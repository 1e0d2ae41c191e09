/*
 * fakeusb: a scripted fake libusb-1.0 for testing wdfusb's libusb backend without
 * QEMU or real USB (the idea of gousb's fakelibusb). Built as a shared library
 * (tests/fakeusb/build_fake.py) and loaded by the shim through WDFUSB_LIBUSB.
 *
 * ABI: the declarations below are written from libusb's public libusb.h (1.0.x),
 * not taken from csrc/, so the lane also checks the shim's view of that ABI.
 *
 * The model, kept as close to libusb on Linux as a fake can be:
 *   - libusb_submit_transfer only queues. Data moves "on the bus" as time passes
 *     (instantly, or at a scripted rate, in whole max-packet units, one transfer at a
 *     time per endpoint in submission order, NAKing while an endpoint is held), but a
 *     transfer's callback runs only inside libusb_handle_events_timeout_completed, on
 *     whichever thread holds the event lock at that moment (others wait as libusb's
 *     event waiters do, and return after one completion or when the handler leaves).
 *     A finished transfer can be reported after a scripted delay (the host's reap latency).
 *   - libusb_cancel_transfer marks a transfer; it is reported LIBUSB_TRANSFER_CANCELLED
 *     with the bytes it had moved, at a later event pass (after a scripted delay).
 *     A transfer already finished (not yet reaped) or already cancelled gives
 *     LIBUSB_ERROR_NOT_FOUND, as libusb does.
 *   - transfer->timeout (ms from submission) ends it LIBUSB_TRANSFER_TIMED_OUT with the
 *     bytes moved so far.
 *   - libusb_control_transfer is synchronous and, like sync.c, handles events while it
 *     runs: other transfers' callbacks may run on its thread.
 *   - unplug: pending and later transfers end LIBUSB_TRANSFER_NO_DEVICE (or first as a
 *     bus error, LIBUSB_TRANSFER_ERROR, as Linux often reports it), submit returns
 *     LIBUSB_ERROR_NO_DEVICE, the device leaves the device list.
 *   - OUT data is consumed progressively: CRC-32 (zlib's) of the bytes as they move,
 *     optionally a histogram of byte values (order-independent accounting for tests
 *     with concurrent writers). IN data is Gadget Zero's pattern (buf[i] = (i % maxp)
 *     % 63), zeros, or a loopback of what the paired OUT endpoint took. Transfers
 *     longer than the CRC limit are neither read nor written (their memory stays
 *     untouched) and are counted in crc_skipped.
 *   - misuse that real libusb punishes with undefined behaviour (freeing or closing
 *     with transfers in flight, a bad handle, a recursive event handler) is counted
 *     in the violation counters instead.
 *
 * Scripting (ctypes, tests/fakeusb/fakectl.py): every fake_* function that takes an
 * endpoint takes `dev << 8 | address` (dev 0: Gadget Zero 0525:a4a0, bulk OUT 0x01 and
 * bulk IN 0x81; dev 1: a full-speed HID-like device 0525:a4ac, interrupt OUT 0x03 and
 * interrupt IN 0x83).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define API __attribute__((visibility("default")))

/* ---- libusb's public ABI (libusb.h) ---------------------------------------------------- */

struct libusb_version {
    uint16_t major, minor, micro, nano;
    const char *rc;
    const char *describe;
};

struct libusb_device_descriptor {
    uint8_t bLength, bDescriptorType;
    uint16_t bcdUSB;
    uint8_t bDeviceClass, bDeviceSubClass, bDeviceProtocol, bMaxPacketSize0;
    uint16_t idVendor, idProduct, bcdDevice;
    uint8_t iManufacturer, iProduct, iSerialNumber, bNumConfigurations;
};

struct libusb_transfer;
typedef void (*libusb_transfer_cb_fn)(struct libusb_transfer *transfer);

struct libusb_iso_packet_descriptor {
    unsigned int length;
    unsigned int actual_length;
    int status;
};

struct libusb_transfer {
    struct libusb_device_handle *dev_handle;
    uint8_t flags;
    unsigned char endpoint;
    unsigned char type;
    unsigned int timeout;
    int status;
    int length;
    int actual_length;
    libusb_transfer_cb_fn callback;
    void *user_data;
    unsigned char *buffer;
    int num_iso_packets;
    struct libusb_iso_packet_descriptor iso_packet_desc[]; /* LIBUSB_FLEXIBLE_ARRAY */
};

enum {
    LIBUSB_SUCCESS = 0, LIBUSB_ERROR_IO = -1, LIBUSB_ERROR_INVALID_PARAM = -2, LIBUSB_ERROR_ACCESS = -3,
    LIBUSB_ERROR_NO_DEVICE = -4, LIBUSB_ERROR_NOT_FOUND = -5, LIBUSB_ERROR_BUSY = -6, LIBUSB_ERROR_TIMEOUT = -7,
    LIBUSB_ERROR_OVERFLOW = -8, LIBUSB_ERROR_PIPE = -9, LIBUSB_ERROR_INTERRUPTED = -10, LIBUSB_ERROR_NO_MEM = -11,
    LIBUSB_ERROR_NOT_SUPPORTED = -12, LIBUSB_ERROR_OTHER = -99
};
enum {
    LIBUSB_TRANSFER_COMPLETED = 0, LIBUSB_TRANSFER_ERROR = 1, LIBUSB_TRANSFER_TIMED_OUT = 2,
    LIBUSB_TRANSFER_CANCELLED = 3, LIBUSB_TRANSFER_STALL = 4, LIBUSB_TRANSFER_NO_DEVICE = 5,
    LIBUSB_TRANSFER_OVERFLOW = 6
};
enum {
    LIBUSB_TRANSFER_SHORT_NOT_OK = 1 << 0, LIBUSB_TRANSFER_FREE_BUFFER = 1 << 1,
    LIBUSB_TRANSFER_FREE_TRANSFER = 1 << 2, LIBUSB_TRANSFER_ADD_ZERO_PACKET = 1 << 3
};
enum { TYPE_CONTROL = 0, TYPE_ISO = 1, TYPE_BULK = 2, TYPE_INTERRUPT = 3 };
enum { SPEED_UNKNOWN = 0, SPEED_LOW = 1, SPEED_FULL = 2, SPEED_HIGH = 3, SPEED_SUPER = 4, SPEED_SUPER_PLUS = 5 };

/* ---- what the tests read back (mirrored in fakectl.py) ------------------------------- */

struct fake_ep_stats {
    uint64_t bytes;            /* OUT: bytes taken from the host; IN: bytes given to it */
    uint64_t submits;          /* libusb_submit_transfer calls that queued a transfer */
    uint64_t submit_errors;    /* calls that returned an error */
    uint64_t callbacks;        /* callbacks made */
    uint64_t status[8];        /* callbacks by final LIBUSB_TRANSFER_* status (7: other) */
    uint64_t cancel_calls;     /* libusb_cancel_transfer calls that returned 0 */
    uint64_t cancel_not_found; /* ... that returned LIBUSB_ERROR_NOT_FOUND */
    uint64_t zlp_flags;        /* submits carrying LIBUSB_TRANSFER_ADD_ZERO_PACKET */
    uint64_t zlps;             /* zero-length packets on the wire */
    uint64_t short_transfers;  /* completed with actual_length < length */
    uint64_t crc_skipped;      /* bytes moved without being read or written (huge transfers) */
    uint64_t max_length;       /* longest transfer submitted */
    int64_t in_flight;         /* submitted, callback not yet made */
    uint32_t crc32;            /* zlib CRC-32 of every byte moved (OUT: received, IN: sent) */
    uint32_t last_flags;
    uint32_t last_timeout;
    uint32_t halted;
    uint64_t usbfs_refused;    /* submits refused by the usbfs memory cap (fake_set_usbfs_cap) */
};

struct fake_global_stats {
    int64_t in_flight;          /* transfers submitted whose callback has not been made */
    int64_t open_handles;
    int64_t device_lists;       /* libusb_get_device_list results not yet freed */
    int64_t transfers;          /* allocated and not freed */
    int64_t claimed;            /* interfaces claimed */
    uint64_t inits, exits;
    uint64_t events_calls;      /* libusb_handle_events_timeout_completed calls */
    uint64_t events_waited;     /* ... that waited as an event waiter (another thread handled) */
    uint64_t callbacks;
    uint64_t control_transfers;
    uint64_t set_configuration_calls;
    uint64_t clear_halt_calls;
    uint64_t busy_submits;      /* submits of a transfer already in flight (LIBUSB_ERROR_BUSY) */
    /* misuse real libusb turns into undefined behaviour */
    uint64_t v_free_in_flight;
    uint64_t v_close_with_pending;
    uint64_t v_bad_handle;
    uint64_t v_bad_transfer;
    uint64_t v_recursive_events;
};

struct fake_log_entry {
    uint64_t seq;        /* submission number on the endpoint, from 1 */
    int64_t length;
    uint64_t buffer;     /* address of the buffer */
    uint32_t flags;
    uint32_t timeout;    /* transfer->timeout as submitted (ms, 0 = none) */
    int32_t status;      /* final status, -1 while in flight */
    int32_t pad;
    int64_t actual;      /* actual_length reported */
    uint64_t thread;     /* which thread submitted it (pthread_self) */
};

/* ---- internal model -------------------------------------------------------------------- */

#define MAX_DEVS 2
#define MAX_EPS 32
#define LOG_N 512
#define SCRIPT_N 64
#define LOOP_CAP ((size_t)4 << 20)
#define MAGIC_XFER 0x5846524bu
#define MAGIC_DEAD 0xdeadbeefu
#define MAGIC_HANDLE 0x484e444cu

struct script { int status; int64_t actual; };

struct fep {
    int present;
    uint8_t addr, type, interval;
    int maxp;
    int in_source;         /* IN: 0 pattern, 1 loopback of the paired OUT endpoint, 2 zeros */
    int64_t rate;          /* bytes per second, 0 = as fast as asked */
    int64_t limit;         /* bytes the endpoint still takes before it NAKs, -1 = no limit */
    int64_t t_last;        /* rate accounting */
    int track_values;
    struct script script[SCRIPT_N];
    int sc_head, sc_count;
    int fail_err, fail_skip, fail_count; /* the next submits fail with fail_err */
    struct fake_ep_stats st;
    uint64_t hist[256];
    struct fake_log_entry log[LOG_N];
};

struct libusb_context { int magic; };

struct libusb_device {
    int index;
    uint8_t bus, address, nports, ports[7];
    int speed;
    int gone;              /* unplugged */
    int gone_status;       /* how its pending transfers end */
    int config;            /* bConfigurationValue, 0 = unconfigured */
    uint16_t vid, pid;
    const char *strings[4];
    uint32_t claimed_by;   /* interface 0 claimed: handle id */
    struct fep eps[MAX_EPS];
    uint8_t *loop;         /* loopback FIFO */
    size_t loop_head, loop_count;
    uint8_t ep0_buf[4096]; /* Gadget Zero's control test buffer (0x5b fills it, 0x5c returns it) */
};

struct libusb_device_handle {
    uint32_t magic;
    uint32_t id;
    struct libusb_device *dev;
    int claimed;
};

struct ftx {
    uint32_t magic;
    int in_flight;         /* submitted, callback not made */
    int done;              /* finished on the bus; waits for an event pass */
    int cancelled;
    int zombie;            /* freed while in flight: freed, never called back */
    int status;
    int script_status;
    int64_t moved, target;
    int64_t usbfs;         /* bytes it holds of the usbfs cap while in flight */
    int64_t deadline_ns;   /* 0 = none */
    int64_t deliver_ns;
    struct libusb_device *dev;
    struct libusb_device_handle *handle;
    int epi;
    int logi;
    uint64_t seq;
    pthread_t submitter;   /* the thread that submitted it */
    struct ftx *next, *prev, *bnext;
    struct libusb_transfer t; /* last: the iso descriptors follow it */
};

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static struct libusb_context the_ctx = { 1 };
static struct libusb_device devs[MAX_DEVS];
static struct ftx *flying_head, *flying_tail;
static struct fake_global_stats g;
static int handler_active;
static pthread_t handler_thread;
static uint64_t event_gen;     /* bumped after each callback and when the handler leaves */
static int interrupt_pending; /* libusb_interrupt_event_handler: the next event handling returns */
static uint64_t interrupts;   /* libusb_interrupt_event_handler calls */
static uint64_t handed_over;  /* callbacks run on another thread than the submitter's */
static int64_t cancel_delay_ns;
static int64_t complete_delay_ns; /* a transfer over on the bus is reported this much later */
static int64_t submit_delay_ns;   /* libusb_submit_transfer returns this long after queuing */
static int64_t crc_limit = (int64_t)256 << 20;
static int64_t usbfs_cap;          /* bytes all bulk/interrupt transfers in flight may hold (0: none) */
static int64_t usbfs_used;         /* ... held now, as usbfs_memory_mb counts them */
static int fail_control_err, fail_control_count;
static int fail_open_err, fail_open_count;
static uint32_t next_handle_id = 1;
static uint32_t crc_table[8][256];

static const struct libusb_version version = { 1, 0, 27, 9999, "", "fakeusb (wdfusb tests/fakeusb)" };

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void wait_until(int64_t until)
{
    struct timespec ts;
    if (until == INT64_MAX) until = now_ns() + (int64_t)3600 * 1000000000;
    ts.tv_sec = until / 1000000000;
    ts.tv_nsec = until % 1000000000;
    pthread_cond_timedwait(&cv, &m, &ts);
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n >= 8) {
        uint32_t a = ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24) ^ crc;
        uint32_t b = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = crc_table[7][a & 0xFF] ^ crc_table[6][(a >> 8) & 0xFF] ^ crc_table[5][(a >> 16) & 0xFF] ^
              crc_table[4][a >> 24] ^ crc_table[3][b & 0xFF] ^ crc_table[2][(b >> 8) & 0xFF] ^
              crc_table[1][(b >> 16) & 0xFF] ^ crc_table[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static int epi_of(uint8_t addr) { return (addr & 0x0F) | ((addr & 0x80) ? 16 : 0); }

static int bulk_maxp(int speed) { return speed >= SPEED_SUPER ? 1024 : speed == SPEED_HIGH ? 512 : 64; }

static void add_ep(struct libusb_device *d, uint8_t addr, uint8_t type, int maxp, uint8_t interval)
{
    struct fep *e = &d->eps[epi_of(addr)];
    memset(e, 0, sizeof *e);
    e->present = 1;
    e->addr = addr;
    e->type = type;
    e->maxp = maxp;
    e->interval = interval;
    e->limit = -1;
}

/* Put device i back to its initial state (plugged in, configured, endpoints idle). */
static void init_device(int i)
{
    struct libusb_device *d = &devs[i];
    uint8_t *loop = d->loop;
    memset(d, 0, sizeof *d);
    d->loop = loop ? loop : malloc(LOOP_CAP);
    d->index = i;
    d->config = 1;
    if (i == 0) {
        d->bus = 1, d->address = 2, d->nports = 1, d->ports[0] = 1;
        d->speed = SPEED_HIGH;
        d->vid = 0x0525, d->pid = 0xA4A0;
        d->strings[1] = "Linux Foundation (fakeusb)";
        d->strings[2] = "Gadget Zero (fakeusb)";
        d->strings[3] = "FAKE0001";
        add_ep(d, 0x01, TYPE_BULK, bulk_maxp(d->speed), 0);
        add_ep(d, 0x81, TYPE_BULK, bulk_maxp(d->speed), 0);
    } else {
        d->bus = 2, d->address = 5, d->nports = 2, d->ports[0] = 1, d->ports[1] = 3;
        d->speed = SPEED_FULL;
        d->vid = 0x0525, d->pid = 0xA4AC;
        d->strings[1] = "Linux Foundation (fakeusb)";
        d->strings[2] = "HID Gadget (fakeusb)";
        d->strings[3] = "FAKE0002";
        add_ep(d, 0x03, TYPE_INTERRUPT, 64, 1);
        add_ep(d, 0x83, TYPE_INTERRUPT, 64, 1);
    }
}

__attribute__((constructor)) static void fake_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&cv, &a);
    pthread_condattr_destroy(&a);
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
    for (int i = 0; i < MAX_DEVS; i++) init_device(i);
}

/* `dev << 8 | address` -> endpoint (NULL when there is none) */
static struct fep *ep_of(int key, struct libusb_device **dout)
{
    int di = (key >> 8) & 0xFF;
    struct fep *e;
    if (di >= MAX_DEVS) return NULL;
    e = &devs[di].eps[epi_of((uint8_t)key)];
    if ((uint8_t)key != 0 && (!e->present || e->addr != (uint8_t)key)) return NULL; /* EP0: always there */
    if (dout) *dout = &devs[di];
    return e;
}

static struct ftx *ftx_of(struct libusb_transfer *t)
{
    struct ftx *x;
    if (!t) return NULL;
    x = (struct ftx *)((char *)t - offsetof(struct ftx, t));
    return x->magic == MAGIC_XFER ? x : NULL;
}

static int handle_ok(struct libusb_device_handle *h)
{
    if (h && h->magic == MAGIC_HANDLE) return 1;
    g.v_bad_handle++;
    return 0;
}

/* ---- descriptors ------------------------------------------------------------------------ */

static int device_descriptor(struct libusb_device *d, uint8_t *o)
{
    int ss = d->speed >= SPEED_SUPER;
    uint16_t bcd = ss ? 0x0300 : d->speed == SPEED_HIGH ? 0x0200 : 0x0110;
    uint8_t b[18] = { 18, 1, bcd & 0xFF, bcd >> 8, 0, 0, 0, ss ? 9 : 64,
                      d->vid & 0xFF, d->vid >> 8, d->pid & 0xFF, d->pid >> 8, 0x00, 0x01, 1, 2, 3, 1 };
    memcpy(o, b, 18);
    return 18;
}

static int config_descriptor(struct libusb_device *d, uint8_t *o)
{
    int n = 9 + 9, neps = 0;
    int ss = d->speed >= SPEED_SUPER;
    for (int i = 0; i < MAX_EPS; i++) {
        struct fep *e = &d->eps[i];
        uint8_t *p;
        if (!e->present) continue;
        p = o + n;
        p[0] = 7, p[1] = 5, p[2] = e->addr, p[3] = e->type, p[4] = e->maxp & 0xFF, p[5] = (uint8_t)(e->maxp >> 8);
        p[6] = e->interval;
        n += 7;
        if (ss) { /* SuperSpeed endpoint companion */
            p = o + n;
            p[0] = 6, p[1] = 0x30, p[2] = 0, p[3] = 0, p[4] = 0, p[5] = 0;
            n += 6;
        }
        neps++;
    }
    {
        uint8_t head[9] = { 9, 2, n & 0xFF, (uint8_t)(n >> 8), 1, 1, 0, 0x80, 50 };
        uint8_t iface[9] = { 9, 4, 0, 0, (uint8_t)neps, d->index == 0 ? 0xFF : 0x03, 0, 0, 0 };
        memcpy(o, head, 9);
        memcpy(o + 9, iface, 9);
    }
    return n;
}

static int string_descriptor(struct libusb_device *d, int index, uint8_t *o)
{
    const char *s;
    int n;
    if (index == 0) {
        o[0] = 4, o[1] = 3, o[2] = 0x09, o[3] = 0x04;
        return 4;
    }
    if (index > 3 || !(s = d->strings[index])) return LIBUSB_ERROR_PIPE;
    n = (int)strlen(s);
    if (n > 120) n = 120;
    o[0] = (uint8_t)(2 + 2 * n), o[1] = 3;
    for (int i = 0; i < n; i++) o[2 + 2 * i] = (uint8_t)s[i], o[3 + 2 * i] = 0;
    return 2 + 2 * n;
}

/* ---- the bus ------------------------------------------------------------------------------ */

static void list_remove(struct ftx *x)
{
    if (x->prev) x->prev->next = x->next; else flying_head = x->next;
    if (x->next) x->next->prev = x->prev; else flying_tail = x->prev;
    x->next = x->prev = NULL;
}

/* x is over on the bus: it is reported at an event pass from when_ns on */
static void finish(struct ftx *x, int status, int64_t when_ns)
{
    struct fep *e = &x->dev->eps[x->epi];
    x->done = 1;
    x->status = status;
    x->deliver_ns = when_ns + (status == LIBUSB_TRANSFER_CANCELLED ? 0 : complete_delay_ns);
    if (status == LIBUSB_TRANSFER_STALL) e->st.halted = 1;
    if (status == LIBUSB_TRANSFER_COMPLETED && !(e->addr & 0x80) && x->moved == x->t.length &&
        (x->t.length == 0 || ((x->t.flags & LIBUSB_TRANSFER_ADD_ZERO_PACKET) && x->t.length % e->maxp == 0)))
        e->st.zlps++;
    if (status == LIBUSB_TRANSFER_COMPLETED && x->moved < x->t.length) e->st.short_transfers++;
    pthread_cond_broadcast(&cv);
}

static size_t loop_space(struct libusb_device *d) { return LOOP_CAP - d->loop_count; }

static void loop_push(struct libusb_device *d, const uint8_t *p, size_t n)
{
    while (n) {
        size_t tail = (d->loop_head + d->loop_count) % LOOP_CAP, k = LOOP_CAP - tail;
        if (k > n) k = n;
        memcpy(d->loop + tail, p, k);
        d->loop_count += k, p += k, n -= k;
    }
}

static void loop_pop(struct libusb_device *d, uint8_t *p, size_t n)
{
    while (n) {
        size_t k = LOOP_CAP - d->loop_head;
        if (k > n) k = n;
        memcpy(p, d->loop + d->loop_head, k);
        d->loop_head = (d->loop_head + k) % LOOP_CAP;
        d->loop_count -= k, p += k, n -= k;
    }
}

/* the IN endpoint an OUT endpoint loops back to, if it is in loopback mode */
static struct fep *loop_peer(struct libusb_device *d, struct fep *e)
{
    struct fep *in;
    if (e->addr & 0x80) return NULL;
    in = &d->eps[epi_of(e->addr | 0x80)];
    return in->present && in->in_source == 1 ? in : NULL;
}

/* n bytes of x move on the bus now */
static void move(struct ftx *x, struct fep *e, int64_t n)
{
    uint8_t *p = x->t.buffer + x->moved;
    int huge = x->t.length > crc_limit;
    if (!(e->addr & 0x80)) { /* OUT: the device takes them */
        if (huge) {
            e->st.crc_skipped += (uint64_t)n;
        } else {
            e->st.crc32 = crc32_update(e->st.crc32, p, (size_t)n);
            if (e->track_values)
                for (int64_t i = 0; i < n; i++) e->hist[p[i]]++;
            if (loop_peer(x->dev, e)) loop_push(x->dev, p, (size_t)n);
        }
    } else { /* IN: the device gives them */
        if (huge) {
            e->st.crc_skipped += (uint64_t)n;
        } else {
            if (e->in_source == 1) loop_pop(x->dev, p, (size_t)n);
            else if (e->in_source == 2) memset(p, 0, (size_t)n);
            else
                for (int64_t i = 0; i < n; i++) p[i] = (uint8_t)(((x->moved + i) % e->maxp) % 63);
            e->st.crc32 = crc32_update(e->st.crc32, p, (size_t)n);
            if (e->track_values)
                for (int64_t i = 0; i < n; i++) e->hist[p[i]]++;
        }
    }
    x->moved += n;
    e->st.bytes += (uint64_t)n;
    if (e->limit >= 0) e->limit -= n;
}

/* Let the bus run on endpoint e of d until now: the transfers in flight there move data in
   submission order (the first unfinished one blocks those behind it), time out, or fail
   because the endpoint halted or the device went away. */
static void advance_ep(struct libusb_device *d, struct fep *e, int64_t now)
{
    int64_t budget = INT64_MAX, used = 0;
    int blocked = 0, rate_bound = 0; /* rate_bound: a transfer waits for rate credit */
    int epi = epi_of(e->addr);
    if (!e->st.in_flight) {
        e->t_last = now;
        return;
    }
    if (e->rate > 0) {
        int64_t elapsed = now - e->t_last;
        budget = elapsed > 0 ? (int64_t)((__int128)elapsed * e->rate / 1000000000) : 0;
    }
    for (struct ftx *x = flying_head; x; x = x->next) {
        if (x->dev != d || x->epi != epi || x->done) continue;
        if (d->gone) {
            finish(x, d->gone_status, now);
            continue;
        }
        if (e->st.halted) {
            finish(x, LIBUSB_TRANSFER_STALL, now);
            continue;
        }
        if (!blocked) {
            int64_t want = x->target - x->moved, n = want;
            if (e->limit >= 0 && n > e->limit) n = e->limit;
            if (n > budget - used) {
                n = budget - used;
                rate_bound = 1;
            }
            if (e->addr & 0x80 && e->in_source == 1 && x->t.length <= crc_limit) {
                if (n > (int64_t)d->loop_count) n = (int64_t)d->loop_count;
            } else if (loop_peer(d, e) && x->t.length <= crc_limit) {
                if (n > (int64_t)loop_space(d)) n = (int64_t)loop_space(d);
            }
            if (n < want && !(e->addr & 0x80 && e->in_source == 1)) n -= n % e->maxp; /* whole packets */
            if (n > 0) {
                move(x, e, n);
                used += n;
            }
            if (x->moved == x->target) {
                finish(x, x->script_status, now);
                continue;
            }
            if (e->addr & 0x80 && e->in_source == 1 && x->moved > 0) {
                /* loopback IN: returns what the device had (ends with a short packet) */
                finish(x, LIBUSB_TRANSFER_COMPLETED, now);
                continue;
            }
            blocked = 1;
        }
        if (x->deadline_ns && now >= x->deadline_ns) {
            finish(x, LIBUSB_TRANSFER_TIMED_OUT, now);
            blocked = 0; /* the one behind it may go on */
        }
    }
    if (e->rate > 0 && !rate_bound) e->t_last = now; /* no credit while idle or NAKing */
    else if (e->rate > 0) e->t_last += (int64_t)((__int128)used * 1000000000 / e->rate);
}

static void advance_device(struct libusb_device *d, int64_t now)
{
    for (int i = 0; i < MAX_EPS; i++)
        if (d->eps[i].present) advance_ep(d, &d->eps[i], now);
}

static void advance_all(int64_t now)
{
    for (int i = 0; i < MAX_DEVS; i++) advance_device(&devs[i], now);
}

/* when the next thing can happen on the bus (a completion, a time-out, a cancel report) */
static int64_t next_event_ns(int64_t now, int64_t until)
{
    int64_t t = until;
    for (struct ftx *x = flying_head; x; x = x->next) {
        struct fep *e = &x->dev->eps[x->epi];
        if (x->done) {
            if (x->deliver_ns < t) t = x->deliver_ns;
            continue;
        }
        if (x->deadline_ns && x->deadline_ns < t) t = x->deadline_ns;
        if (e->rate > 0 && e->limit != 0) {
            int64_t eta = now + (int64_t)((__int128)(x->target - x->moved) * 1000000000 / e->rate) + 1000;
            if (eta < t) t = eta;
        }
    }
    return t;
}

/* Report every transfer that is over (called with m held, by the event handler). Returns
   how many callbacks were made. Callbacks run with m released: they may submit, cancel and
   free transfers, as libusb allows. */
static int deliver(int64_t now)
{
    struct ftx *batch = NULL, **tail = &batch;
    int n = 0;
    for (struct ftx *x = flying_head, *next; x; x = next) {
        next = x->next;
        if (!x->done || x->deliver_ns > now) continue;
        list_remove(x);
        x->bnext = NULL;
        *tail = x;
        tail = &x->bnext;
    }
    for (struct ftx *x = batch, *next; x; x = next) {
        struct fep *e = &x->dev->eps[x->epi];
        struct fake_log_entry *le = &e->log[x->logi];
        libusb_transfer_cb_fn cb;
        next = x->bnext;
        x->in_flight = 0;
        usbfs_used -= x->usbfs;
        x->usbfs = 0;
        g.in_flight--;
        e->st.in_flight--;
        x->t.status = x->status;
        x->t.actual_length = (int)x->moved;
        if (le->seq == x->seq) le->status = x->status, le->actual = x->moved;
        e->st.callbacks++;
        e->st.status[x->status >= 0 && x->status < 7 ? x->status : 7]++;
        if (x->zombie) { /* freed while in flight: nobody to call */
            x->magic = MAGIC_DEAD;
            free(x);
            g.transfers--;
            continue;
        }
        cb = x->t.callback;
        g.callbacks++;
        if (!pthread_equal(x->submitter, pthread_self())) handed_over++;
        n++;
        pthread_mutex_unlock(&m);
        if (cb) cb(&x->t); /* from here on x may be resubmitted or freed */
        pthread_mutex_lock(&m);
        event_gen++;
        pthread_cond_broadcast(&cv);
    }
    return n;
}

/* The event handler's work: wait (until `until`) for something to report, report it. */
static void handle_as_handler(int64_t until)
{
    for (;;) {
        int64_t now = now_ns();
        advance_all(now);
        if (deliver(now)) return;
        if (interrupt_pending) { /* libusb: the event pipe woke poll(); the flag is consumed */
            interrupt_pending = 0;
            return;
        }
        if (now >= until) return;
        wait_until(next_event_ns(now, until));
    }
}

/* ---- libusb: library, devices ------------------------------------------------------------ */

API int libusb_init(struct libusb_context **ctx)
{
    pthread_mutex_lock(&m);
    g.inits++;
    pthread_mutex_unlock(&m);
    if (ctx) *ctx = &the_ctx;
    return LIBUSB_SUCCESS;
}

API void libusb_exit(struct libusb_context *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&m);
    g.exits++;
    pthread_mutex_unlock(&m);
}

API const struct libusb_version *libusb_get_version(void) { return &version; }

API long libusb_get_device_list(struct libusb_context *ctx, struct libusb_device ***list)
{
    struct libusb_device **l = calloc(MAX_DEVS + 1, sizeof *l);
    long n = 0;
    (void)ctx;
    if (!l) return LIBUSB_ERROR_NO_MEM;
    pthread_mutex_lock(&m);
    for (int i = 0; i < MAX_DEVS; i++)
        if (!devs[i].gone) l[n++] = &devs[i];
    g.device_lists++;
    pthread_mutex_unlock(&m);
    *list = l;
    return n;
}

API void libusb_free_device_list(struct libusb_device **list, int unref)
{
    (void)unref;
    if (!list) return;
    pthread_mutex_lock(&m);
    g.device_lists--;
    pthread_mutex_unlock(&m);
    free(list);
}

API uint8_t libusb_get_bus_number(struct libusb_device *d) { return d->bus; }
API uint8_t libusb_get_device_address(struct libusb_device *d) { return d->address; }

API int libusb_get_device_speed(struct libusb_device *d)
{
    int s;
    pthread_mutex_lock(&m);
    s = d->speed;
    pthread_mutex_unlock(&m);
    return s;
}

API int libusb_get_port_numbers(struct libusb_device *d, uint8_t *ports, int len)
{
    if (len < d->nports) return LIBUSB_ERROR_OVERFLOW;
    memcpy(ports, d->ports, d->nports);
    return d->nports;
}

API int libusb_get_device_descriptor(struct libusb_device *d, struct libusb_device_descriptor *out)
{
    uint8_t b[18];
    pthread_mutex_lock(&m);
    device_descriptor(d, b);
    pthread_mutex_unlock(&m);
    out->bLength = b[0], out->bDescriptorType = b[1];
    out->bcdUSB = (uint16_t)(b[2] | b[3] << 8);
    out->bDeviceClass = b[4], out->bDeviceSubClass = b[5], out->bDeviceProtocol = b[6];
    out->bMaxPacketSize0 = b[7];
    out->idVendor = (uint16_t)(b[8] | b[9] << 8);
    out->idProduct = (uint16_t)(b[10] | b[11] << 8);
    out->bcdDevice = (uint16_t)(b[12] | b[13] << 8);
    out->iManufacturer = b[14], out->iProduct = b[15], out->iSerialNumber = b[16];
    out->bNumConfigurations = b[17];
    return LIBUSB_SUCCESS;
}

API int libusb_open(struct libusb_device *d, struct libusb_device_handle **out)
{
    struct libusb_device_handle *h;
    int rc = LIBUSB_SUCCESS;
    pthread_mutex_lock(&m);
    if (d->gone) {
        rc = LIBUSB_ERROR_NO_DEVICE;
    } else if (fail_open_count) {
        fail_open_count--;
        rc = fail_open_err;
    } else if (!(h = calloc(1, sizeof *h))) {
        rc = LIBUSB_ERROR_NO_MEM;
    } else {
        h->magic = MAGIC_HANDLE;
        h->id = next_handle_id++;
        h->dev = d;
        g.open_handles++;
        *out = h;
    }
    pthread_mutex_unlock(&m);
    return rc;
}

API void libusb_close(struct libusb_device_handle *h)
{
    pthread_mutex_lock(&m);
    if (!handle_ok(h)) {
        pthread_mutex_unlock(&m);
        return;
    }
    for (struct ftx *x = flying_head; x; x = x->next)
        if (x->handle == h) { /* libusb: "device handle closed with transfers still pending" */
            g.v_close_with_pending++;
            break;
        }
    if (h->claimed) {
        h->claimed = 0;
        h->dev->claimed_by = 0;
        g.claimed--;
    }
    h->magic = MAGIC_DEAD; /* kept (not freed) so that a later use is caught, not a crash */
    g.open_handles--;
    pthread_mutex_unlock(&m);
}

API struct libusb_device *libusb_get_device(struct libusb_device_handle *h) { return h->dev; }

API int libusb_get_max_packet_size(struct libusb_device *dev, unsigned char ep)
{
    struct fep *e;
    int rc;
    pthread_mutex_lock(&m);
    e = &dev->eps[epi_of(ep)];
    rc = e->present && e->addr == ep ? e->maxp : LIBUSB_ERROR_NOT_FOUND;
    pthread_mutex_unlock(&m);
    return rc;
}

API int libusb_set_auto_detach_kernel_driver(struct libusb_device_handle *h, int enable)
{
    (void)enable;
    pthread_mutex_lock(&m);
    if (!handle_ok(h)) {
        pthread_mutex_unlock(&m);
        return LIBUSB_ERROR_INVALID_PARAM;
    }
    pthread_mutex_unlock(&m);
    return LIBUSB_SUCCESS;
}

/* common checks of the handle-taking calls; returns 0 or a libusb error, m held */
static int check_handle(struct libusb_device_handle *h)
{
    if (!handle_ok(h)) return LIBUSB_ERROR_NO_DEVICE;
    if (h->dev->gone) return LIBUSB_ERROR_NO_DEVICE;
    return 0;
}

API int libusb_get_configuration(struct libusb_device_handle *h, int *config)
{
    int rc;
    pthread_mutex_lock(&m);
    rc = check_handle(h);
    if (!rc) *config = h->dev->config;
    pthread_mutex_unlock(&m);
    return rc;
}

API int libusb_set_configuration(struct libusb_device_handle *h, int config)
{
    int rc;
    pthread_mutex_lock(&m);
    rc = check_handle(h);
    if (!rc) {
        g.set_configuration_calls++;
        if (config != 1 && config != 0 && config != -1) rc = LIBUSB_ERROR_NOT_FOUND;
        else if (h->dev->claimed_by) rc = LIBUSB_ERROR_BUSY;
        else h->dev->config = config < 0 ? 0 : config;
    }
    pthread_mutex_unlock(&m);
    return rc;
}

API int libusb_claim_interface(struct libusb_device_handle *h, int iface)
{
    int rc;
    pthread_mutex_lock(&m);
    rc = check_handle(h);
    if (!rc) {
        if (iface != 0 || h->dev->config != 1) rc = LIBUSB_ERROR_NOT_FOUND;
        else if (h->claimed) rc = LIBUSB_SUCCESS;
        else if (h->dev->claimed_by) rc = LIBUSB_ERROR_BUSY;
        else {
            h->claimed = 1;
            h->dev->claimed_by = h->id;
            g.claimed++;
        }
    }
    pthread_mutex_unlock(&m);
    return rc;
}

API int libusb_release_interface(struct libusb_device_handle *h, int iface)
{
    int rc;
    pthread_mutex_lock(&m);
    rc = handle_ok(h) ? 0 : LIBUSB_ERROR_NO_DEVICE;
    if (!rc) {
        if (iface != 0 || !h->claimed) rc = LIBUSB_ERROR_NOT_FOUND;
        else {
            h->claimed = 0;
            h->dev->claimed_by = 0;
            g.claimed--;
            if (h->dev->gone) rc = LIBUSB_ERROR_NO_DEVICE; /* released; the device is gone */
        }
    }
    pthread_mutex_unlock(&m);
    return rc;
}

API int libusb_set_interface_alt_setting(struct libusb_device_handle *h, int iface, int alt)
{
    int rc;
    pthread_mutex_lock(&m);
    rc = check_handle(h);
    if (!rc && (iface != 0 || !h->claimed || alt != 0)) rc = LIBUSB_ERROR_NOT_FOUND;
    pthread_mutex_unlock(&m);
    return rc;
}

/* The fake device has no kernel driver bound: none active, none to detach or attach. */
static int no_kernel_driver(struct libusb_device_handle *h, int iface, int query)
{
    int rc;
    pthread_mutex_lock(&m);
    rc = check_handle(h);
    pthread_mutex_unlock(&m);
    if (rc) return rc;
    if (iface != 0) return LIBUSB_ERROR_NOT_FOUND;
    return query ? 0 : LIBUSB_ERROR_NOT_FOUND;
}

API int libusb_kernel_driver_active(struct libusb_device_handle *h, int iface) { return no_kernel_driver(h, iface, 1); }
API int libusb_detach_kernel_driver(struct libusb_device_handle *h, int iface) { return no_kernel_driver(h, iface, 0); }
API int libusb_attach_kernel_driver(struct libusb_device_handle *h, int iface) { return no_kernel_driver(h, iface, 0); }

/* No hotplug events: wdfusb.watch() falls back to listing the devices again on a timer. */
API int libusb_has_capability(uint32_t capability) { (void)capability; return 0; }
API int libusb_hotplug_register_callback(struct libusb_context *ctx, int events, int flags, int vid, int pid,
                                         int dev_class, void *cb, void *user_data, int *handle)
{
    (void)ctx; (void)events; (void)flags; (void)vid; (void)pid; (void)dev_class; (void)cb; (void)user_data;
    (void)handle;
    return LIBUSB_ERROR_NOT_SUPPORTED;
}

API int libusb_clear_halt(struct libusb_device_handle *h, unsigned char ep)
{
    int rc;
    pthread_mutex_lock(&m);
    rc = check_handle(h);
    if (!rc) {
        struct fep *e = &h->dev->eps[epi_of(ep)];
        g.clear_halt_calls++;
        if (!e->present || e->addr != ep) rc = LIBUSB_ERROR_NOT_FOUND;
        else e->st.halted = 0;
    }
    pthread_mutex_unlock(&m);
    return rc;
}

/* A port reset (libusb: refused while transfers are pending on the handle's device, as the
   engine drains them first): every endpoint's halt cleared. */
API int libusb_reset_device(struct libusb_device_handle *h)
{
    int rc;
    pthread_mutex_lock(&m);
    rc = check_handle(h);
    if (!rc) {
        struct libusb_device *d = h->dev;
        for (int i = 0; i < MAX_EPS; i++)
            if (d->eps[i].present && d->eps[i].st.in_flight) rc = LIBUSB_ERROR_BUSY;
        for (int i = 0; !rc && i < MAX_EPS; i++) d->eps[i].st.halted = 0;
    }
    pthread_mutex_unlock(&m);
    return rc;
}

/* ---- libusb: transfers ----------------------------------------------------------------------- */

API struct libusb_transfer *libusb_alloc_transfer(int iso_packets)
{
    struct ftx *x;
    if (iso_packets < 0) return NULL;
    x = calloc(1, sizeof *x + (size_t)iso_packets * sizeof(struct libusb_iso_packet_descriptor));
    if (!x) return NULL;
    x->magic = MAGIC_XFER;
    x->t.num_iso_packets = iso_packets;
    pthread_mutex_lock(&m);
    g.transfers++;
    pthread_mutex_unlock(&m);
    return &x->t;
}

API void libusb_free_transfer(struct libusb_transfer *t)
{
    struct ftx *x;
    if (!t) return;
    pthread_mutex_lock(&m);
    x = ftx_of(t);
    if (!x) {
        g.v_bad_transfer++;
        pthread_mutex_unlock(&m);
        return;
    }
    if (x->in_flight) { /* undefined behaviour in libusb: freed when it is over, never called back */
        g.v_free_in_flight++;
        x->zombie = 1;
        pthread_mutex_unlock(&m);
        return;
    }
    x->magic = MAGIC_DEAD;
    g.transfers--;
    pthread_mutex_unlock(&m);
    if (x->t.flags & LIBUSB_TRANSFER_FREE_BUFFER) free(x->t.buffer);
    free(x);
}

/* What the device answers on EP0 (called with m held): the bytes of the data stage (IN: what
   it returns, at most len; OUT: len), or LIBUSB_ERROR_PIPE (a stall). The standard requests
   the engine uses, and Gadget Zero's 0x5b/0x5c test requests. */
static int control_answer(struct libusb_device *d, uint8_t type, uint8_t req, uint16_t value, uint16_t index,
                          uint8_t *data, uint16_t len)
{
    uint8_t b[512];
    int n;
    if (type == 0x40 && req == 0x5b && !value && !index) {
        if (len && data) memcpy(d->ep0_buf, data, len);
        return len;
    }
    if (type == 0xC0 && req == 0x5c && !value && !index) {
        if (len && data) memcpy(data, d->ep0_buf, len);
        return len;
    }
    if (type == 0x80 && req == 6) { /* GET_DESCRIPTOR */
        switch (value >> 8) {
        case 1: n = device_descriptor(d, b); break;
        case 2: n = (value & 0xFF) == 0 ? config_descriptor(d, b) : LIBUSB_ERROR_PIPE; break;
        case 3: n = string_descriptor(d, value & 0xFF, b); break;
        default: n = LIBUSB_ERROR_PIPE;
        }
    } else if (type == 0x80 && req == 0) { /* GET_STATUS (device): bus powered */
        b[0] = 0, b[1] = 0;
        n = 2;
    } else if (type == 0x82 && req == 0) { /* GET_STATUS (endpoint): the halt bit */
        struct fep *e = &d->eps[epi_of((uint8_t)index)];
        b[0] = (uint8_t)(e->present && e->st.halted), b[1] = 0;
        n = 2;
    } else {
        n = LIBUSB_ERROR_PIPE;
    }
    if (n > 0) {
        if (n > len) n = len;
        if (data) memcpy(data, b, (size_t)n);
    }
    return n;
}

/* A submitted transfer joins the flying list, counted on its endpoint (m held). */
static void fly(struct ftx *x, struct fep *e)
{
    x->t.status = 0;
    x->t.actual_length = 0;
    e->st.submits++;
    e->st.in_flight++;
    g.in_flight++;
    x->seq = e->st.submits;
    x->logi = (int)((x->seq - 1) % LOG_N);
    x->prev = flying_tail;
    x->next = NULL;
    if (flying_tail) flying_tail->next = x; else flying_head = x;
    flying_tail = x;
}

/* An asynchronous control transfer (m held): the setup packet at the start of the buffer, as
   libusb lays it out; answered at once, called back at the next event pass. */
static int submit_control(struct ftx *x, struct libusb_transfer *t, struct libusb_device *d, int64_t now)
{
    struct fep *e = &d->eps[0];
    uint16_t w_length;
    int n;
    if (t->endpoint != 0 || t->length < 8 || !t->buffer) return LIBUSB_ERROR_INVALID_PARAM;
    w_length = (uint16_t)(t->buffer[6] | t->buffer[7] << 8);
    if (t->length < 8 + w_length) return LIBUSB_ERROR_INVALID_PARAM;
    if (d->gone) return LIBUSB_ERROR_NO_DEVICE;
    g.control_transfers++;
    if (fail_control_count) {
        fail_control_count--;
        return fail_control_err;
    }
    n = control_answer(d, t->buffer[0], t->buffer[1], (uint16_t)(t->buffer[2] | t->buffer[3] << 8),
                       (uint16_t)(t->buffer[4] | t->buffer[5] << 8), t->buffer + 8, w_length);
    x->in_flight = 1;
    x->done = x->cancelled = 0;
    x->moved = x->target = n > 0 ? n : 0;
    x->deadline_ns = 0;
    x->dev = d;
    x->handle = t->dev_handle;
    x->epi = 0;
    fly(x, e);
    finish(x, n < 0 ? LIBUSB_TRANSFER_STALL : LIBUSB_TRANSFER_COMPLETED, now);
    return LIBUSB_SUCCESS;
}

API int libusb_submit_transfer(struct libusb_transfer *t)
{
    struct ftx *x;
    struct libusb_device_handle *h;
    struct libusb_device *d;
    struct fep *e;
    struct fake_log_entry *le;
    int64_t now = now_ns();
    int rc = LIBUSB_SUCCESS;
    pthread_mutex_lock(&m);
    x = ftx_of(t);
    if (!x) {
        g.v_bad_transfer++;
        pthread_mutex_unlock(&m);
        return LIBUSB_ERROR_INVALID_PARAM;
    }
    h = t->dev_handle;
    if (!handle_ok(h)) {
        pthread_mutex_unlock(&m);
        return LIBUSB_ERROR_NO_DEVICE;
    }
    d = h->dev;
    if (t->type == TYPE_CONTROL && !x->in_flight) {
        rc = submit_control(x, t, d, now);
        pthread_mutex_unlock(&m);
        return rc;
    }
    e = &d->eps[epi_of(t->endpoint)];
    if (x->in_flight) {
        g.busy_submits++;
        rc = LIBUSB_ERROR_BUSY;
    } else if (!e->present || e->addr != t->endpoint) {
        rc = LIBUSB_ERROR_NOT_FOUND;
    } else if (d->gone) {
        rc = LIBUSB_ERROR_NO_DEVICE;
    } else if (t->type != TYPE_BULK && t->type != TYPE_INTERRUPT) {
        rc = LIBUSB_ERROR_NOT_SUPPORTED;
    } else if (t->length < 0 || (t->length > 0 && !t->buffer)) {
        rc = LIBUSB_ERROR_INVALID_PARAM;
    } else if (e->fail_count && e->fail_skip == 0) {
        e->fail_count--;
        rc = e->fail_err;
    } else if (usbfs_cap && usbfs_used + t->length > usbfs_cap) {
        rc = LIBUSB_ERROR_NO_MEM; /* usbfs: ENOMEM beyond usbfs_memory_mb */
        e->st.usbfs_refused++;
    } else if (e->fail_count) {
        e->fail_skip--;
    }
    if (rc != LIBUSB_SUCCESS) {
        if (e->present && e->addr == t->endpoint) e->st.submit_errors++;
        pthread_mutex_unlock(&m);
        return rc;
    }
    x->in_flight = 1;
    x->usbfs = t->length;
    usbfs_used += x->usbfs;
    x->done = x->cancelled = 0;
    x->status = -1;
    x->moved = 0;
    x->target = t->length;
    x->script_status = LIBUSB_TRANSFER_COMPLETED;
    if (e->sc_count) {
        struct script *s = &e->script[e->sc_head];
        e->sc_head = (e->sc_head + 1) % SCRIPT_N;
        e->sc_count--;
        x->script_status = s->status;
        if (s->actual >= 0 && s->actual < t->length) x->target = s->actual;
    }
    x->deadline_ns = t->timeout ? now + (int64_t)t->timeout * 1000000 : 0;
    x->dev = d;
    x->handle = h;
    x->epi = epi_of(t->endpoint);
    advance_ep(d, e, now); /* settle the bus up to now before this one joins it */
    fly(x, e);
    le = &e->log[x->logi];
    le->seq = x->seq;
    le->length = t->length;
    le->buffer = (uint64_t)(uintptr_t)t->buffer;
    le->flags = t->flags;
    le->timeout = t->timeout;
    le->status = -1;
    le->actual = 0;
    le->thread = (uint64_t)pthread_self();
    x->submitter = pthread_self();
    e->st.last_flags = t->flags;
    e->st.last_timeout = t->timeout;
    if ((uint64_t)t->length > e->st.max_length) e->st.max_length = (uint64_t)t->length;
    if (t->flags & LIBUSB_TRANSFER_ADD_ZERO_PACKET) e->st.zlp_flags++;
    advance_ep(d, e, now); /* the device may take it at once; its callback still waits for an event pass */
    pthread_cond_broadcast(&cv);
    {
        int64_t delay = submit_delay_ns;
        pthread_mutex_unlock(&m);
        if (delay > 0) { /* the submitting thread is preempted on its way back (an ioctl returning) */
            struct timespec ts = { (time_t)(delay / 1000000000), (long)(delay % 1000000000) };
            nanosleep(&ts, NULL);
        }
    }
    return LIBUSB_SUCCESS;
}

API int libusb_cancel_transfer(struct libusb_transfer *t)
{
    struct ftx *x;
    struct fep *e;
    int64_t now = now_ns();
    int rc = LIBUSB_SUCCESS;
    pthread_mutex_lock(&m);
    x = ftx_of(t);
    if (!x) {
        g.v_bad_transfer++;
        pthread_mutex_unlock(&m);
        return LIBUSB_ERROR_INVALID_PARAM;
    }
    if (!x->in_flight) { /* never submitted, or already called back */
        pthread_mutex_unlock(&m);
        return LIBUSB_ERROR_NOT_FOUND;
    }
    e = &x->dev->eps[x->epi];
    advance_ep(x->dev, e, now); /* what moved until now has moved */
    if (x->done) {              /* over (or cancelled already), not yet reaped */
        e->st.cancel_not_found++;
        rc = LIBUSB_ERROR_NOT_FOUND;
    } else {
        e->st.cancel_calls++;
        x->cancelled = 1;
        finish(x, LIBUSB_TRANSFER_CANCELLED, now + cancel_delay_ns);
        advance_ep(x->dev, e, now); /* the next one on the endpoint may go on */
    }
    pthread_mutex_unlock(&m);
    return rc;
}

API int libusb_handle_events_timeout_completed(struct libusb_context *ctx, struct timeval *tv, int *completed)
{
    int64_t now = now_ns();
    int64_t until = tv ? now + (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000 : now + 60000000000;
    (void)ctx;
    pthread_mutex_lock(&m);
    g.events_calls++;
    if (handler_active && pthread_equal(handler_thread, pthread_self())) {
        g.v_recursive_events++; /* libusb: "called recursively from a callback" */
        pthread_mutex_unlock(&m);
        return LIBUSB_ERROR_BUSY;
    }
    if (handler_active) { /* another thread handles events: wait for one event (libusb_wait_for_event) */
        uint64_t gen = event_gen;
        g.events_waited++;
        while (handler_active && gen == event_gen && !(completed && __atomic_load_n(completed, __ATOMIC_ACQUIRE)) &&
               now_ns() < until)
            wait_until(until);
        pthread_mutex_unlock(&m);
        return LIBUSB_SUCCESS;
    }
    handler_active = 1;
    handler_thread = pthread_self();
    if (!(completed && __atomic_load_n(completed, __ATOMIC_ACQUIRE))) handle_as_handler(until);
    handler_active = 0;
    event_gen++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&m);
    return LIBUSB_SUCCESS;
}

/* libusb 1.0.21: wakes the thread handling events (or the next one to), which returns. */
API void libusb_interrupt_event_handler(struct libusb_context *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&m);
    interrupts++;
    interrupt_pending = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&m);
}

API uint64_t fake_interrupts(void)
{
    uint64_t n;
    pthread_mutex_lock(&m);
    n = interrupts;
    pthread_mutex_unlock(&m);
    return n;
}

API uint64_t fake_handed_over(void)
{
    uint64_t n;
    pthread_mutex_lock(&m);
    n = handed_over;
    pthread_mutex_unlock(&m);
    return n;
}

API int libusb_control_transfer(struct libusb_device_handle *h, uint8_t type, uint8_t req, uint16_t value,
                                uint16_t index, unsigned char *data, uint16_t len, unsigned int timeout)
{
    int rc;
    int on_handler;
    (void)timeout;
    pthread_mutex_lock(&m);
    rc = check_handle(h);
    g.control_transfers++;
    if (!rc && fail_control_count) {
        fail_control_count--;
        rc = fail_control_err;
    }
    if (!rc) rc = control_answer(h->dev, type, req, value, index, data, len);
    on_handler = handler_active && pthread_equal(handler_thread, pthread_self());
    pthread_mutex_unlock(&m);
    if (!on_handler) { /* sync.c handles events while it waits: other callbacks may run here */
        struct timeval tv = { 0, 0 };
        libusb_handle_events_timeout_completed(&the_ctx, &tv, NULL);
    }
    return rc;
}

/* ---- scripting (tests) ------------------------------------------------------------------------- */

/* Back to the initial state: devices plugged in, nothing scripted, statistics zero.
   Refused (-1) while a transfer is in flight. */
API int fake_reset(void)
{
    pthread_mutex_lock(&m);
    if (g.in_flight) {
        pthread_mutex_unlock(&m);
        return -1;
    }
    for (int i = 0; i < MAX_DEVS; i++) {
        uint32_t claimed_by = devs[i].claimed_by;
        int config = devs[i].config;
        init_device(i);
        devs[i].claimed_by = claimed_by; /* a handle still open keeps its claim */
        if (claimed_by) devs[i].config = config;
    }
    {
        struct fake_global_stats keep = g;
        memset(&g, 0, sizeof g);
        g.open_handles = keep.open_handles;
        g.device_lists = keep.device_lists;
        g.transfers = keep.transfers;
        g.claimed = keep.claimed;
        g.inits = keep.inits;
        g.exits = keep.exits;
    }
    cancel_delay_ns = complete_delay_ns = submit_delay_ns = 0;
    crc_limit = (int64_t)256 << 20;
    usbfs_cap = 0;
    fail_control_count = fail_open_count = 0;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&m);
    return 0;
}

/* The next transfer submitted on ep ends with `status` after moving `actual` bytes
   (-1: its whole length). Queued: one entry per later submission. */
API int fake_next_result(int ep, int status, int64_t actual)
{
    struct fep *e;
    int rc = -1;
    pthread_mutex_lock(&m);
    if ((e = ep_of(ep, NULL)) && e->sc_count < SCRIPT_N) {
        e->script[(e->sc_head + e->sc_count) % SCRIPT_N] = (struct script){ status, actual };
        e->sc_count++;
        rc = 0;
    }
    pthread_mutex_unlock(&m);
    return rc;
}

/* After `skip` successful submits, the next `count` libusb_submit_transfer calls on ep
   return `err` (a LIBUSB_ERROR_*) and queue nothing. */
API int fake_fail_submit(int ep, int err, int skip, int count)
{
    struct fep *e;
    int rc = -1;
    pthread_mutex_lock(&m);
    if ((e = ep_of(ep, NULL))) {
        e->fail_err = err, e->fail_skip = skip, e->fail_count = count;
        rc = 0;
    }
    pthread_mutex_unlock(&m);
    return rc;
}

/* The next `count` control transfers fail with `err`. */
API void fake_fail_control(int err, int count)
{
    pthread_mutex_lock(&m);
    fail_control_err = err, fail_control_count = count;
    pthread_mutex_unlock(&m);
}

/* The next `count` libusb_open calls fail with `err`. */
API void fake_fail_open(int err, int count)
{
    pthread_mutex_lock(&m);
    fail_open_err = err, fail_open_count = count;
    pthread_mutex_unlock(&m);
}

/* ep takes `bytes` more bytes, then NAKs until told otherwise (-1: no limit). */
API int fake_nak_after(int ep, int64_t bytes)
{
    struct libusb_device *d;
    struct fep *e;
    int64_t now = now_ns();
    pthread_mutex_lock(&m);
    if (!(e = ep_of(ep, &d))) {
        pthread_mutex_unlock(&m);
        return -1;
    }
    advance_ep(d, e, now);
    e->limit = bytes < 0 ? -1 : bytes;
    e->t_last = now;
    advance_ep(d, e, now);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&m);
    return 0;
}

/* on: ep NAKs everything (transfers stay pending, cancels and time-outs still work). */
API int fake_hold(int ep, int on) { return fake_nak_after(ep, on ? 0 : -1); }

/* ep moves `bytes_per_second` (0: as fast as asked). */
API int fake_set_rate(int ep, int64_t bytes_per_second)
{
    struct libusb_device *d;
    struct fep *e;
    int64_t now = now_ns();
    pthread_mutex_lock(&m);
    if (!(e = ep_of(ep, &d))) {
        pthread_mutex_unlock(&m);
        return -1;
    }
    advance_ep(d, e, now);
    e->rate = bytes_per_second < 0 ? 0 : bytes_per_second;
    e->t_last = now;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&m);
    return 0;
}

/* IN ep's data: 0 Gadget Zero's mod-63 pattern, 1 loopback of the paired OUT endpoint, 2 zeros. */
API int fake_set_in_source(int ep, int source)
{
    struct fep *e;
    int rc = -1;
    pthread_mutex_lock(&m);
    if ((e = ep_of(ep, NULL)) && (e->addr & 0x80)) {
        e->in_source = source;
        rc = 0;
    }
    pthread_mutex_unlock(&m);
    return rc;
}

/* Count every byte value moved on ep (fake_hist). */
API int fake_track_values(int ep, int on)
{
    struct fep *e;
    int rc = -1;
    pthread_mutex_lock(&m);
    if ((e = ep_of(ep, NULL))) {
        e->track_values = on;
        rc = 0;
    }
    pthread_mutex_unlock(&m);
    return rc;
}

API uint64_t fake_hist(int ep, int value)
{
    struct fep *e;
    uint64_t n = 0;
    pthread_mutex_lock(&m);
    if ((e = ep_of(ep, NULL)) && value >= 0 && value < 256) n = e->hist[value];
    pthread_mutex_unlock(&m);
    return n;
}

/* Make ep halt now (its transfers end STALL until libusb_clear_halt). */
API int fake_stall(int ep)
{
    struct libusb_device *d;
    struct fep *e;
    pthread_mutex_lock(&m);
    if (!(e = ep_of(ep, &d))) {
        pthread_mutex_unlock(&m);
        return -1;
    }
    advance_ep(d, e, now_ns());
    e->st.halted = 1;
    advance_ep(d, e, now_ns());
    pthread_mutex_unlock(&m);
    return 0;
}

/* The speed device `dev` reports (LIBUSB_SPEED_*); bulk max packet sizes follow it. */
API int fake_set_speed(int dev, int speed)
{
    if (dev < 0 || dev >= MAX_DEVS) return -1;
    pthread_mutex_lock(&m);
    devs[dev].speed = speed;
    for (int i = 0; i < MAX_EPS; i++) {
        struct fep *e = &devs[dev].eps[i];
        if (e->present && e->type == TYPE_BULK) e->maxp = bulk_maxp(speed);
    }
    pthread_mutex_unlock(&m);
    return 0;
}

/* bConfigurationValue device `dev` reports (0: unconfigured, so the shim must set it). */
API int fake_set_configured(int dev, int config)
{
    if (dev < 0 || dev >= MAX_DEVS) return -1;
    pthread_mutex_lock(&m);
    devs[dev].config = config;
    pthread_mutex_unlock(&m);
    return 0;
}

/* Surprise removal of device `dev`: what is pending ends NO_DEVICE (bus_error: ERROR, as
   Linux often reports the URBs cut short), later submits fail LIBUSB_ERROR_NO_DEVICE. */
API int fake_unplug(int dev, int bus_error)
{
    if (dev < 0 || dev >= MAX_DEVS) return -1;
    pthread_mutex_lock(&m);
    advance_device(&devs[dev], now_ns());
    devs[dev].gone = 1;
    devs[dev].gone_status = bus_error ? LIBUSB_TRANSFER_ERROR : LIBUSB_TRANSFER_NO_DEVICE;
    advance_device(&devs[dev], now_ns());
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&m);
    return 0;
}

/* A cancelled transfer is reported this long after libusb_cancel_transfer. */
API void fake_set_cancel_delay_us(int64_t us)
{
    pthread_mutex_lock(&m);
    cancel_delay_ns = us * 1000;
    pthread_mutex_unlock(&m);
}

/* A transfer over on the bus (completed, failed, timed out) is reported this long after. */
API void fake_set_complete_delay_us(int64_t us)
{
    pthread_mutex_lock(&m);
    complete_delay_ns = us * 1000;
    pthread_mutex_unlock(&m);
}

/* libusb_submit_transfer returns this long after the transfer was queued (and could complete). */
API void fake_set_submit_delay_us(int64_t us)
{
    pthread_mutex_lock(&m);
    submit_delay_ns = us * 1000;
    pthread_mutex_unlock(&m);
}

/* Like usbfs_memory_mb: a bulk or interrupt submit that would make the transfers in flight
   hold more than `bytes` fails with LIBUSB_ERROR_NO_MEM (0: no cap). */
API void fake_set_usbfs_cap(int64_t bytes)
{
    pthread_mutex_lock(&m);
    usbfs_cap = bytes;
    pthread_mutex_unlock(&m);
}

/* Transfers longer than this are neither read nor written (counted in crc_skipped). */
API void fake_set_crc_limit(int64_t bytes)
{
    pthread_mutex_lock(&m);
    crc_limit = bytes;
    pthread_mutex_unlock(&m);
}

API int fake_stats(int ep, struct fake_ep_stats *out)
{
    struct libusb_device *d;
    struct fep *e;
    pthread_mutex_lock(&m);
    if (!(e = ep_of(ep, &d))) {
        pthread_mutex_unlock(&m);
        return -1;
    }
    advance_ep(d, e, now_ns());
    *out = e->st;
    pthread_mutex_unlock(&m);
    return 0;
}

API void fake_global(struct fake_global_stats *out)
{
    pthread_mutex_lock(&m);
    *out = g;
    pthread_mutex_unlock(&m);
}

API int64_t fake_in_flight(void)
{
    int64_t n;
    pthread_mutex_lock(&m);
    n = g.in_flight;
    pthread_mutex_unlock(&m);
    return n;
}

/* Submission `seq` (from 1) on ep, while it is among the last LOG_N. */
API int fake_log(int ep, uint64_t seq, struct fake_log_entry *out)
{
    struct fep *e;
    int rc = -1;
    pthread_mutex_lock(&m);
    if ((e = ep_of(ep, NULL)) && seq >= 1 && e->log[(seq - 1) % LOG_N].seq == seq) {
        *out = e->log[(seq - 1) % LOG_N];
        rc = 0;
    }
    pthread_mutex_unlock(&m);
    return rc;
}

API int fake_sizeof(int which)
{
    switch (which) {
    case 0: return (int)sizeof(struct fake_ep_stats);
    case 1: return (int)sizeof(struct fake_global_stats);
    case 2: return (int)sizeof(struct fake_log_entry);
    case 3: return (int)sizeof(struct libusb_transfer);
    default: return -1;
    }
}
