/*
 * wdfusb shim: the libusb backend. libusb is loaded at run time (wu_libusb_load)
 * and every call goes through the table L. A synchronous transfer is libusb's
 * asynchronous one plus event handling on a completion flag, the way libusb's own
 * sync.c does it. A transfer longer than a piece continues from the callback, piece by
 * piece: usbfs caps the memory of every URB in flight (usbfs_memory_mb, 16 MiB by default),
 * so a piece that does not fit (ENOMEM) is halved until one does.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <sys/time.h>
#endif

#include "libusb_abi.h"
#include "shim.h"

#define WU_LIBUSB_PIECE ((size_t)8 << 20)   /* bytes per libusb transfer: half the usbfs cap */
#define WU_LIBUSB_MIN_PIECE ((size_t)16 << 10) /* a refused piece is halved down to this */
#define WU_DRAIN_NS ((int64_t)5000000000)    /* bound on waiting for cancelled transfers */

static struct {
#define X(ret, name, args) ret(WU_CALLBACK *name) args;
    WU_LIBUSB_FUNCTIONS(X)
#undef X
} L;

static void *lib_handle; /* written under load_lock, before lib_loaded */
static int lib_loaded;   /* atomic: 1 once libusb is loaded and initialised */
static libusb_context *ctx;
static char lib_path[1024];
static char lib_version[64];
static wu_mutex load_lock;
static wu_once_t load_once = WU_ONCE_INIT;
static uint8_t zero_byte;

/* The event thread completes transfers that nobody waits for. It handles libusb's events only
   while something needs it (its demand: asynchronous transfers and armed rings' transfers in
   flight, and hotplug watches) and otherwise waits on ev.cond, out of libusb: while it handles
   events, a synchronous transfer on another thread completes through it (one thread switch
   more per call). ev.lock is taken after a device lock, never before one. */
static struct {
    wu_mutex lock;
    wu_cond cond;
    struct wu_thread *thread; /* started once (per process), never stopped */
    int demand;               /* transfers holding a unit (engine.c: x->demand) + hotplug holds */
    int hotplug_holds;        /* wu_libusb_hotplug_hold */
    int handling;             /* the thread is inside libusb's event handling */
    uint64_t idles;           /* times it left event handling for lack of demand */
} ev;
static WU_THREAD_LOCAL int on_event_thread;

typedef struct {
    libusb_device_handle *h;
    int speed;
} ldev;

#define LD(d) ((ldev *)(d)->impl)

static int ctx_gen;      /* fork generation ctx belongs to */

/* In a forked child libusb's context (its threads, its file descriptors' users) is the
   parent's: devices from before the fork are refused, and the next use makes a new one. */
static void ev_init(void)
{
    wu_mutex_init(&ev.lock);
    wu_cond_init(&ev.cond);
    ev.thread = NULL; /* the parent's is not in the child; its demand was the parent's too */
    ev.demand = ev.hotplug_holds = ev.handling = 0;
    ev.idles = 0;
}

static void lu_after_fork(void)
{
    wu_mutex_init(&load_lock);
    ev_init();
}

static void init_load_lock(void)
{
    wu_mutex_init(&load_lock);
    ev_init();
    wu_on_fork_child(lu_after_fork);
}

/* The context of this process (a new one in a forked child). */
static int fresh_context(void)
{
    int rc = WU_OK;
    wu_once(&load_once, init_load_lock);
    wu_mutex_lock(&load_lock);
    if (ctx_gen != wu_fork_generation()) {
        libusb_context *c = NULL;
        rc = L.libusb_init(&c);
        if (rc == WU_OK) {
            ctx = c; /* the parent's is left alone: its threads are not here to stop */
            ctx_gen = wu_fork_generation();
        }
    }
    wu_mutex_unlock(&load_lock);
    return rc;
}

int wu_libusb_load(const char *path, char *err, size_t errlen)
{
    void *h;
    int rc;
    const struct libusb_version *ver;
    if (err && errlen) err[0] = 0;
    if (!path) return WU_ERR_INVALID_PARAM;
    wu_once(&load_once, init_load_lock);
    wu_mutex_lock(&load_lock);
    if (lib_handle) {
        wu_mutex_unlock(&load_lock);
        return WU_OK;
    }
    h = wu_dl_open(path, err, errlen);
    if (!h) {
        wu_mutex_unlock(&load_lock);
        return WU_ERR_NO_LIBUSB;
    }
#define X(ret, name, args)                                                              \
    *(void **)&L.name = wu_dl_sym(h, #name);                                            \
    if (!L.name) {                                                                      \
        if (err) snprintf(err, errlen, "not a usable libusb-1.0: %s is missing", #name); \
        wu_dl_close(h);                                                                 \
        wu_mutex_unlock(&load_lock);                                                    \
        return WU_ERR_NO_LIBUSB;                                                        \
    }
    WU_LIBUSB_FUNCTIONS(X)
#undef X
    rc = L.libusb_init(&ctx);
    if (rc < 0) {
        if (err) snprintf(err, errlen, "libusb_init failed (error %d)", rc);
        wu_dl_close(h);
        wu_mutex_unlock(&load_lock);
        return rc;
    }
    ctx_gen = wu_fork_generation();
    ver = L.libusb_get_version();
    snprintf(lib_version, sizeof lib_version, "%u.%u.%u.%u", ver->major, ver->minor, ver->micro, ver->nano);
    snprintf(lib_path, sizeof lib_path, "%s", path);
    lib_handle = h;
    WU_STORE(&lib_loaded, 1);
    wu_mutex_unlock(&load_lock);
    return WU_OK;
}

int wu_libusb_loaded(void) { return WU_LOAD(&lib_loaded); }
const char *wu_libusb_version(void) { return wu_libusb_loaded() ? lib_version : ""; }
const char *wu_libusb_path(void) { return wu_libusb_loaded() ? lib_path : ""; }

int wu_sizeof_check(void)
{
    return sizeof(struct libusb_device_descriptor) == 18 ? 0 : -1;
}

/* ---- enumeration --------------------------------------------------------------------- */

static void encode_descriptor(const struct libusb_device_descriptor *s, uint8_t *o)
{
    o[0] = s->bLength; o[1] = s->bDescriptorType;
    o[2] = s->bcdUSB & 0xFF; o[3] = s->bcdUSB >> 8;
    o[4] = s->bDeviceClass; o[5] = s->bDeviceSubClass; o[6] = s->bDeviceProtocol; o[7] = s->bMaxPacketSize0;
    o[8] = s->idVendor & 0xFF; o[9] = s->idVendor >> 8;
    o[10] = s->idProduct & 0xFF; o[11] = s->idProduct >> 8;
    o[12] = s->bcdDevice & 0xFF; o[13] = s->bcdDevice >> 8;
    o[14] = s->iManufacturer; o[15] = s->iProduct; o[16] = s->iSerialNumber; o[17] = s->bNumConfigurations;
}

int wu_libusb_list(wu_devinfo *out, int max)
{
    libusb_device **list;
    long n;
    int rc;
    if (!wu_libusb_loaded()) return WU_ERR_NO_LIBUSB;
    if ((rc = fresh_context()) != WU_OK) return rc;
    n = L.libusb_get_device_list(ctx, &list);
    if (n < 0) return (int)n;
    for (long i = 0; i < n && i < max && out; i++) {
        struct libusb_device_descriptor desc;
        int ports;
        memset(&out[i], 0, sizeof out[i]);
        out[i].bus = L.libusb_get_bus_number(list[i]);
        out[i].address = L.libusb_get_device_address(list[i]);
        out[i].speed = (uint8_t)L.libusb_get_device_speed(list[i]);
        ports = L.libusb_get_port_numbers(list[i], out[i].ports, 8);
        out[i].port_count = ports > 0 ? (uint8_t)ports : 0;
        if (L.libusb_get_device_descriptor(list[i], &desc) == 0) encode_descriptor(&desc, out[i].device_descriptor);
    }
    L.libusb_free_device_list(list, 1);
    return (int)n;
}

int wu_libusb_open(uint8_t bus, uint8_t address, wu_device **out)
{
    libusb_device **list;
    long n;
    int rc = WU_ERR_NOT_FOUND;
    if (!out) return WU_ERR_INVALID_PARAM;
    *out = NULL;
    if (!wu_libusb_loaded()) return WU_ERR_NO_LIBUSB;
    if ((rc = fresh_context()) != WU_OK) return rc;
    rc = WU_ERR_NOT_FOUND;
    n = L.libusb_get_device_list(ctx, &list);
    if (n < 0) return (int)n;
    for (long i = 0; i < n; i++) {
        libusb_device_handle *h;
        ldev *ld;
        if (L.libusb_get_bus_number(list[i]) != bus || L.libusb_get_device_address(list[i]) != address) continue;
        rc = L.libusb_open(list[i], &h);
        if (rc < 0) break;
        L.libusb_set_auto_detach_kernel_driver(h, 1);
        ld = calloc(1, sizeof *ld);
        if (ld) {
            ld->h = h;
            ld->speed = L.libusb_get_device_speed(list[i]);
            *out = wu_device_alloc(&wu_libusb_backend, ld, 0);
        }
        if (!*out) {
            free(ld);
            L.libusb_close(h);
            rc = WU_ERR_NO_MEM;
        }
        break;
    }
    L.libusb_free_device_list(list, 1);
    return rc;
}

/* ---- transfers ----------------------------------------------------------------------- */

static void WU_CALLBACK lu_callback(struct libusb_transfer *t);

/* The max packet size x's pieces are multiples of: a short packet would end the transfer. */
static size_t piece_unit(wu_xfer *x)
{
    if (!x->piece_unit) {
        int maxp = L.libusb_get_max_packet_size(L.libusb_get_device(LD(x->dev)->h), x->ep);
        x->piece_unit = maxp > 0 ? (size_t)maxp : 1024; /* (every bulk max packet size divides 1024) */
    }
    return x->piece_unit;
}

/* Submit the next piece of x (from x->actual). A control transfer is one piece: its buffer
   (setup packet, then the data stage) goes to libusb as it is. */
static int submit_chunk(wu_xfer *x)
{
    struct libusb_transfer *t = x->impl;
    size_t left = x->len - x->actual, n = left > x->piece ? x->piece : left;
    unsigned int timeout_ms = 0;
    int rc;
    if (x->deadline_ns != WU_NS_FOREVER) {
        int64_t ns = x->deadline_ns - wu_now_ns();
        if (ns <= 0) return WU_ERR_TIMEOUT;
        int64_t ms = (ns + 999999) / 1000000;
        timeout_ms = ms >= (int64_t)UINT_MAX ? UINT_MAX : (unsigned int)ms; /* libusb's range: ~49.7 days */
    }
    t->dev_handle = LD(x->dev)->h;
    t->flags = (n == left && (x->flags & WU_XFER_ZLP)) ? LIBUSB_TRANSFER_ADD_ZERO_PACKET : 0;
    t->endpoint = x->ep;
    t->type = x->type;
    t->timeout = timeout_ms;
    t->length = (int)n;
    t->actual_length = 0;
    t->callback = lu_callback;
    t->user_data = x;
    t->buffer = x->buf ? x->buf + x->actual : &zero_byte;
    t->num_iso_packets = 0;
    if (x->type == WU_EP_ISOCHRONOUS) { /* one piece: the packets as they are */
        struct libusb_iso_packet_descriptor *desc = t->iso_packet_desc;
        t->num_iso_packets = x->n_iso;
        for (int i = 0; i < x->n_iso; i++) desc[i].length = x->iso[i].length, desc[i].actual_length = 0, desc[i].status = 0;
    }
    rc = L.libusb_submit_transfer(t);
    if (rc == LIBUSB_ERROR_NO_MEM && x->type != WU_EP_CONTROL && x->type != WU_EP_ISOCHRONOUS &&
        n / 2 >= WU_LIBUSB_MIN_PIECE) {
        x->piece = n / 2 - n / 2 % piece_unit(x); /* usbfs has no room for it: a smaller one */
        return submit_chunk(x);
    }
    return rc;
}

static int map_status(int status)
{
    switch (status) {
    case LIBUSB_TRANSFER_COMPLETED: return WU_OK;
    case LIBUSB_TRANSFER_TIMED_OUT: return WU_ERR_TIMEOUT;
    case LIBUSB_TRANSFER_CANCELLED: return WU_ERR_CANCELLED;
    case LIBUSB_TRANSFER_STALL: return WU_ERR_PIPE;
    case LIBUSB_TRANSFER_NO_DEVICE: return WU_ERR_NO_DEVICE;
    case LIBUSB_TRANSFER_OVERFLOW: return WU_ERR_OVERFLOW;
    case LIBUSB_TRANSFER_ERROR: return WU_ERR_IO;
    default: return WU_ERR_OTHER;
    }
}

static void WU_CALLBACK lu_callback(struct libusb_transfer *t)
{
    wu_xfer *x = t->user_data;
    wu_device *d = x->dev;
    int result = map_status(t->status);
    wu_enter_callback();
    wu_mutex_lock(&d->lock);
    if (x->type == WU_EP_ISOCHRONOUS) { /* each packet's own result; the transfer's is libusb's */
        struct libusb_iso_packet_descriptor *desc = t->iso_packet_desc;
        for (int i = 0; i < x->n_iso; i++) {
            x->iso[i].actual = desc[i].actual_length;
            x->iso[i].status = map_status(desc[i].status);
            x->actual += desc[i].actual_length;
        }
    } else {
        x->actual += (size_t)(t->actual_length > 0 ? t->actual_length : 0); /* control: the data stage */
    }
    if (result == WU_OK && (x->type == WU_EP_BULK || x->type == WU_EP_INTERRUPT) && x->actual < x->len &&
        t->actual_length == t->length) {
        if (x->cancel_requested) {
            result = WU_ERR_CANCELLED; /* cancelled between two pieces: the rest never went out */
        } else {
            result = submit_chunk(x);
            if (result == WU_OK) {
                wu_mutex_unlock(&d->lock);
                wu_leave_callback();
                return;
            }
        }
    }
    wu_xfer_finish(x, result);
    wu_mutex_unlock(&d->lock);
    wu_leave_callback();
}

static int lu_xfer_init(wu_xfer *x)
{
    x->impl = L.libusb_alloc_transfer(0);
    x->impl_packets = 0;
    return x->impl ? WU_OK : WU_ERR_NO_MEM;
}

/* Room in x's libusb transfer for n isochronous packet descriptors (it is not in flight). */
static int iso_room(wu_xfer *x, int n)
{
    struct libusb_transfer *t;
    if (n <= x->impl_packets) return WU_OK;
    if (!(t = L.libusb_alloc_transfer(n))) return WU_ERR_NO_MEM;
    L.libusb_free_transfer(x->impl);
    x->impl = t;
    x->impl_packets = n;
    return WU_OK;
}

static void lu_xfer_fini(wu_xfer *x) { L.libusb_free_transfer(x->impl); }

/* Called with the device lock held, in the step that marks x in flight: a cancel can only
   come after libusb has the transfer. */
static int lu_submit(wu_xfer *x)
{
    if (!LD(x->dev)->h) return WU_ERR_NO_DEVICE;
    x->piece = x->len;
    x->piece_unit = 0; /* (the endpoint's, looked up once a transfer needs pieces) */
    if (x->type == WU_EP_ISOCHRONOUS) { /* one libusb transfer: its length is an int */
        int rc = x->len > INT_MAX ? WU_ERR_INVALID_PARAM : iso_room(x, x->n_iso);
        return rc == WU_OK ? submit_chunk(x) : rc;
    }
    if (x->type != WU_EP_CONTROL && x->len > WU_LIBUSB_PIECE)
        x->piece = WU_LIBUSB_PIECE - WU_LIBUSB_PIECE % piece_unit(x);
    return submit_chunk(x);
}

/* Handle libusb events until *completed or until_ns. */
static void handle_events(int64_t until_ns, int *completed)
{
    int64_t left = until_ns == WU_NS_FOREVER ? 100000000 : until_ns - wu_now_ns();
    struct timeval tv;
    if (left <= 0) return;
    if (left > 1000000000) left = 1000000000;
    tv.tv_sec = (long)(left / 1000000000);
    tv.tv_usec = (long)((left % 1000000000) / 1000);
    L.libusb_handle_events_timeout_completed(ctx, &tv, completed);
}

/* A transfer cut short by an unplug often ends as a bus error first: ask the device
   (GET_STATUS) and report it gone when it is. */
static void lu_refine(wu_xfer *x)
{
    uint8_t status[2];
    ldev *ld = LD(x->dev);
    if (!ld->h || !wu_device_usable(x->dev)) return;
    if (L.libusb_control_transfer(ld->h, 0x80, 0x00, 0, 0, status, 2, 100) == WU_ERR_NO_DEVICE) {
        wu_mutex_lock(&x->dev->lock);
        x->result = WU_ERR_NO_DEVICE;
        wu_mutex_unlock(&x->dev->lock);
    }
}

static int lu_wait(wu_xfer *x, int64_t until_ns)
{
    while (WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT) {
        if (until_ns != WU_NS_FOREVER && wu_now_ns() >= until_ns) return WU_PENDING;
        handle_events(until_ns, &x->completed);
    }
    return WU_OK;
}

static int lu_cancel(wu_xfer *x)
{
    L.libusb_cancel_transfer(x->impl); /* NOT_FOUND when libusb already completed it: fine */
    return WU_OK;
}

static void lu_drain(wu_device *d)
{
    int64_t until = wu_now_ns() + WU_DRAIN_NS;
    while (wu_device_live_transfers(d) > 0 && wu_now_ns() < until) handle_events(wu_now_ns() + 10000000, NULL);
}

/* The event thread: handles libusb's events while there is demand, else waits for some. A
   transfer submitted while it goes idle is not lost: its unit is counted under ev.lock before
   the transfer can come back, and the thread looks at the count under the same lock. */
static void *event_main(void *arg)
{
    (void)arg;
    wu_set_completion_context(1);
    on_event_thread = 1;
    wu_mutex_lock(&ev.lock);
    for (;;) {
        if (!ev.demand) {
            ev.idles++;
            while (!ev.demand) wu_cond_wait_until(&ev.cond, &ev.lock, WU_NS_FOREVER);
        }
        ev.handling = 1;
        wu_mutex_unlock(&ev.lock);
        handle_events(wu_now_ns() + 100000000, NULL); /* returns after one round of events */
        wu_mutex_lock(&ev.lock);
        ev.handling = 0;
    }
    return NULL;
}

/* Caller holds ev.lock. */
static int ev_thread_locked(void)
{
    if (!ev.thread) ev.thread = wu_thread_start(event_main, NULL);
    return ev.thread ? WU_OK : WU_ERR_NO_MEM;
}

/* Add delta to the demand. The last unit going back while the thread is inside libusb (on
   another thread than it: there it returns by itself) interrupts its event handling, so that
   it leaves at once rather than at its next time-out. */
static int ev_add(int delta, int *holds)
{
    int rc = WU_OK, kick = 0;
    wu_once(&load_once, init_load_lock);
    wu_mutex_lock(&ev.lock);
    if (delta > 0) {
        rc = ev_thread_locked();
        if (rc == WU_OK) {
            if (!ev.demand) wu_cond_broadcast(&ev.cond);
            ev.demand += delta;
            if (holds) *holds += delta;
        }
    } else if (ev.demand + delta < 0 || (holds && *holds + delta < 0)) {
        rc = WU_ERR_INVALID_PARAM; /* released more than was taken: refused, the count stays right */
    } else {
        ev.demand += delta;
        if (holds) *holds += delta;
        kick = !ev.demand && ev.handling && !on_event_thread;
    }
    wu_mutex_unlock(&ev.lock);
    if (kick) L.libusb_interrupt_event_handler(ctx);
    return rc;
}

static int lu_events_demand(wu_device *d, int delta)
{
    if (wu_device_forked(d)) return delta > 0 ? WU_ERR_FORKED : WU_OK; /* the parent's units */
    return ev_add(delta, NULL);
}

/* The thread exists (a first asynchronous submit, a ring armed); it runs once there is demand. */
static int lu_start_events(wu_device *d)
{
    int rc;
    (void)d;
    wu_once(&load_once, init_load_lock);
    wu_mutex_lock(&ev.lock);
    rc = ev_thread_locked();
    wu_mutex_unlock(&ev.lock);
    return rc;
}

int wu_libusb_event_thread_state(int *demand)
{
    int state;
    wu_once(&load_once, init_load_lock);
    wu_mutex_lock(&ev.lock);
    state = !ev.thread ? -1 : ev.handling;
    if (demand) *demand = ev.demand;
    wu_mutex_unlock(&ev.lock);
    return state;
}

uint64_t wu_libusb_event_thread_idles(void)
{
    uint64_t n;
    wu_once(&load_once, init_load_lock);
    wu_mutex_lock(&ev.lock);
    n = ev.idles;
    wu_mutex_unlock(&ev.lock);
    return n;
}

/* ---- arrival and removal -------------------------------------------------------------- */

static int hotplug_gen = -1; /* ctx_gen of the context the callback is registered with */
static int hotplug_on;

static int WU_CALLBACK on_hotplug(libusb_context *c, libusb_device *dev, int event, void *user_data)
{
    (void)c; (void)dev; (void)event; (void)user_data;
    wu_hotplug_bump();
    return 0; /* stay registered */
}

/* The callback is registered once per context and stays: libusb queues its events until
   a thread handles events, so a watch holds the event thread (wu_libusb_hotplug_hold) while it
   lives, and events that come while no watch does are delivered with the next handling (a
   synchronous transfer's, or the thread's when a watch starts). */
int wu_libusb_hotplug(void)
{
    int rc;
    if (!wu_libusb_loaded()) return WU_ERR_NO_LIBUSB;
    if ((rc = fresh_context()) != WU_OK) return rc;
    wu_mutex_lock(&load_lock);
    if (hotplug_gen != ctx_gen) {
        libusb_hotplug_callback_handle handle;
        hotplug_on = 0;
        if (L.libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG))
            hotplug_on = L.libusb_hotplug_register_callback(
                             ctx, LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT, 0,
                             LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY,
                             on_hotplug, NULL, &handle) == 0;
        hotplug_gen = ctx_gen;
    }
    rc = hotplug_on;
    wu_mutex_unlock(&load_lock);
    return rc;
}

int wu_libusb_hotplug_hold(int on)
{
    if (!wu_libusb_loaded()) return WU_ERR_NO_LIBUSB;
    return ev_add(on ? 1 : -1, &ev.hotplug_holds);
}

/* ---- device operations ------------------------------------------------------------------ */

static int lu_speed(wu_device *d) { return LD(d)->speed; }

static int lu_get_descriptor(wu_device *d, uint8_t type, uint8_t index, uint16_t langid, uint8_t *buf, int len)
{
    if (len > 0xFFFF) len = 0xFFFF;
    return L.libusb_control_transfer(LD(d)->h, 0x80, 0x06, (uint16_t)(type << 8 | index), langid, buf,
                                     (uint16_t)len, 1000);
}

static int lu_get_configuration(wu_device *d, int *c) { return L.libusb_get_configuration(LD(d)->h, c); }
static int lu_set_configuration(wu_device *d, int c) { return L.libusb_set_configuration(LD(d)->h, c); }
static int lu_claim(wu_device *d, int i) { return L.libusb_claim_interface(LD(d)->h, i); }
static int lu_release(wu_device *d, int i) { return L.libusb_release_interface(LD(d)->h, i); }
static int lu_set_alt(wu_device *d, int i, int a) { return L.libusb_set_interface_alt_setting(LD(d)->h, i, a); }
static int lu_clear_halt(wu_device *d, uint8_t ep) { return L.libusb_clear_halt(LD(d)->h, ep); }

/* libusb_reset_device: NOT_FOUND means the device came back as another one (it must be opened
   again): for this handle it is gone. */
static int lu_reset_port(wu_device *d)
{
    int rc = L.libusb_reset_device(LD(d)->h);
    return rc == WU_ERR_NOT_FOUND ? WU_ERR_NO_DEVICE : rc;
}

static int lu_cycle_port(wu_device *d)
{
    libusb_device *dev = L.libusb_get_device(LD(d)->h);
    uint8_t ports[8];
    int n = L.libusb_get_port_numbers(dev, ports, 8);
    if (n <= 0) return WU_ERR_NOT_SUPPORTED; /* a root hub has no port of its own */
    switch (wu_port_power_cycle(L.libusb_get_bus_number(dev), ports, n)) {
    case WU_PORT_OK: return WU_OK;
    case WU_PORT_DENIED: return WU_ERR_ACCESS;
    case WU_PORT_GONE: return WU_ERR_NO_DEVICE;
    default: return WU_ERR_NOT_SUPPORTED;
    }
}

static int lu_kernel_driver(wu_device *d, int iface, int op)
{
    libusb_device_handle *h = LD(d)->h;
    if (op == WU_KDRIVER_ACTIVE) return L.libusb_kernel_driver_active(h, iface);
    return op == WU_KDRIVER_DETACH ? L.libusb_detach_kernel_driver(h, iface) : L.libusb_attach_kernel_driver(h, iface);
}

static void lu_close(wu_device *d)
{
    ldev *ld = LD(d);
    if (ld->h && wu_device_live_transfers(d) == 0) {
        L.libusb_close(ld->h);
        ld->h = NULL;
    }
}

static void lu_destroy(wu_device *d)
{
    lu_close(d);
    free(d->impl);
}

const wu_backend wu_libusb_backend = {
    lu_xfer_init, lu_xfer_fini, lu_submit, lu_wait, lu_cancel, lu_refine, lu_speed, lu_get_descriptor,
    lu_get_configuration, lu_set_configuration, lu_claim, lu_release, lu_set_alt, lu_clear_halt, lu_reset_port,
    lu_cycle_port, lu_kernel_driver, lu_start_events, lu_drain, lu_close, lu_destroy, lu_events_demand,
};
