/*
 * wdfusb shim: the built-in virtual device, behind the same backend table as libusb.
 *
 * Each endpoint keeps a queue of transfers. Time is modelled like the bus: a bulk
 * endpoint moves `per_frame` packets every `frame_ns` (13 x 512 B per 125 us
 * micro-frame at high speed), an interrupt endpoint one packet per interval.
 * Whoever waits on a transfer drives its endpoint forward under the device lock,
 * so data moves (and is CRC'd) progressively and a cancel, a time-out, a stall or
 * an unplug ends a transfer with exactly the bytes that had moved by then.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#define V_MAX_EPS 32       /* endpoints a profile may have, besides EP0 */
#define V_STEP_NS 1000000 /* move data at least every 1 ms while a transfer runs */
#define V_STALL (-2)      /* a control request the device refuses: a protocol stall */
#define V_OVERFLOW (-3)   /* the device sent a packet bigger than the room left (babble) */

typedef struct {
    wu_vep_config cfg;
    wu_xfer *head, *tail;
    int64_t bus_ns;      /* when the endpoint's last packet finished on the bus */
    int64_t nak_until;   /* NAK every token until then (WU_NS_FOREVER: for ever) */
    int halted;
    int64_t frame_ns;    /* 0: no pacing */
    int64_t per_frame;   /* packets per frame */
    uint64_t received, sent, transfers, zlps;
    uint32_t crc;
    int source;          /* enum wu_vsource: an IN endpoint that always has data, or none */
    uint64_t source_pos; /* bytes the source has sent since it started */
} vep;

typedef struct {
    int speed;
    int unplugged;
    int configuration;
    int remote_wakeup;   /* DEVICE_REMOTE_WAKEUP set by the host */
    int alt, n_alts;     /* interface 0's alternate setting, and how many it has */
    int n_eps;
    vep eps[V_MAX_EPS + 1]; /* eps[0] is EP0, the control endpoint */
    uint8_t ep0_buf[WU_CONTROL_MAX]; /* the vendor test requests' buffer (Gadget Zero's 0x5b/0x5c) */
    int function;        /* vendor and class requests go to the function (a handler in Python) */
    int function_gone;   /* the device closed: the function's wait ends */
    uint64_t next_ctl_id;
    uint8_t *desc;
    size_t desc_len;
    uint8_t *fifo;       /* loopback ring (allocated when first fed): LOOPBACK_OUT feeds it,
                            LOOPBACK_IN drains it */
    size_t cap, head, count;
    uint64_t dropped;
    uint8_t switch_state;
    int switch_pending;
    wu_cond cond;        /* broadcast on every change a waiter may care about */
    struct wu_thread *events;  /* drives every endpoint once asynchronous transfers exist */
    int events_stop;
} vdev;

#define V(d) ((vdev *)(d)->impl)

static vep *find_ep(vdev *v, uint8_t address)
{
    for (int i = 0; i < v->n_eps; i++)
        if (v->eps[i].cfg.address == address) return &v->eps[i];
    return NULL;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static uint64_t div_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); } /* no overflow */
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Time the bus needs for n packets of this endpoint. */
static int64_t pkt_time(const vep *e, uint64_t n)
{
    if (!e->frame_ns) return 0;
    return (int64_t)((n * (uint64_t)e->frame_ns + (uint64_t)e->per_frame - 1) / (uint64_t)e->per_frame);
}

static void set_pacing(vep *e, int speed)
{
    int iv = e->cfg.interval ? e->cfg.interval : 1;
    e->frame_ns = 0;
    e->per_frame = 1;
    if (speed == WU_SPEED_NONE) return;
    if (e->cfg.type == WU_EP_INTERRUPT || e->cfg.type == WU_EP_ISOCHRONOUS) { /* one packet per interval */
        int64_t unit = speed <= WU_SPEED_FULL ? 1000000 : 125000;               /* a frame, a microframe */
        if (e->cfg.type == WU_EP_INTERRUPT && speed <= WU_SPEED_FULL) e->frame_ns = (int64_t)iv * unit;
        else e->frame_ns = unit << (iv > 16 ? 15 : iv - 1);                    /* 2^(bInterval-1) of them */
        return;
    }
    if (speed <= WU_SPEED_FULL) { e->frame_ns = 1000000; e->per_frame = 19; }
    else if (speed == WU_SPEED_HIGH) { e->frame_ns = 125000; e->per_frame = 13; }
    else { e->frame_ns = 125000; e->per_frame = speed == WU_SPEED_SUPER ? 60 : 120; }
}

/* ---- loopback ring --------------------------------------------------------------- */

static void fifo_push(vdev *v, const uint8_t *p, size_t n)
{
    size_t tail, first;
    if (!v->cap || !n) return;
    if (!v->fifo && !(v->fifo = malloc(v->cap))) { /* no memory: as if the loopback were full */
        v->dropped += n;
        return;
    }
    if (n >= v->cap) {
        v->dropped += v->count + (n - v->cap);
        memcpy(v->fifo, p + (n - v->cap), v->cap);
        v->head = 0;
        v->count = v->cap;
        return;
    }
    if (v->count + n > v->cap) {
        size_t over = v->count + n - v->cap;
        v->head = (v->head + over) % v->cap;
        v->count -= over;
        v->dropped += over;
    }
    tail = (v->head + v->count) % v->cap;
    first = min64((int64_t)n, (int64_t)(v->cap - tail));
    memcpy(v->fifo + tail, p, first);
    memcpy(v->fifo, p + first, n - first);
    v->count += n;
}

static void fifo_pop(vdev *v, uint8_t *p, size_t n)
{
    size_t first = min64((int64_t)n, (int64_t)(v->cap - v->head));
    memcpy(p, v->fifo + v->head, first);
    memcpy(p + first, v->fifo, n - first);
    v->head = (v->head + n) % v->cap;
    v->count -= n;
}

/* ---- the endpoint model ------------------------------------------------------------- */

static void unlink_xfer(vep *e, wu_xfer *x)
{
    wu_xfer **pp = &e->head, *prev = NULL;
    while (*pp && *pp != x) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp) return;
    *pp = x->qnext;
    if (e->tail == x) e->tail = prev;
    x->qnext = NULL;
    x->linked = 0;
}

static void complete(vdev *v, vep *e, wu_xfer *x, int result)
{
    /* a transfer that ends early (time-out, cancel, stall) held the bus until now:
       the next one starts from here, not from when it was submitted */
    if (result != WU_OK && x == e->head && x->started) {
        int64_t now = wu_now_ns();
        e->bus_ns = max64(e->bus_ns, min64(now, x->deadline_ns));
    }
    unlink_xfer(e, x);
    x->started = 0;
    if (result == WU_OK) e->transfers++;
    if (result == WU_OK && !(x->ep & 0x80) && (!x->len || ((x->flags & WU_XFER_ZLP) && x->len % e->cfg.max_packet == 0)))
        e->zlps++;
    wu_xfer_finish(x, result);
    wu_cond_broadcast(&v->cond);
}

/* Move the OUT data of packets [x->pkts, due). Returns 1 when the transfer is complete. */
static int move_out(vdev *v, vep *e, wu_xfer *x, uint64_t due)
{
    uint64_t upto = due < x->total_pkts ? due : x->total_pkts;
    size_t end;
    if (upto <= x->pkts) return 0;
    end = (size_t)min64((int64_t)x->len, (int64_t)(upto * e->cfg.max_packet));
    if (end > x->actual) {
        size_t n = end - x->actual;
        e->crc = wu_crc32(e->crc, x->buf + x->actual, n);
        e->received += n;
        if (e->cfg.role == WU_ROLE_LOOPBACK_OUT) {
            fifo_push(v, x->buf + x->actual, n);
            wu_cond_broadcast(&v->cond);
        }
        x->actual = end;
    }
    x->pkts = upto;
    return x->pkts == x->total_pkts;
}

/* Move isochronous packets [x->pkts, due): each one its own length, no handshake (an IN packet
   carries what the endpoint has, up to its length; none is a zero-length packet). Returns 1 when
   every packet has gone. */
static void send_in(vdev *v, vep *e, uint8_t *dst, size_t n, size_t lost);

static int move_iso(vdev *v, vep *e, wu_xfer *x, uint64_t due)
{
    uint64_t upto = due < x->total_pkts ? due : x->total_pkts;
    for (; x->pkts < upto; x->pkts++) {
        wu_iso_packet *p = &x->iso[x->pkts];
        uint8_t *at = x->buf + x->iso_offset;
        size_t n = p->length;
        if (x->ep & 0x80) {
            size_t have = e->source ? n : e->cfg.role == WU_ROLE_LOOPBACK_IN ? v->count : 0;
            if (n > have) n = have;
            if (n) send_in(v, e, at, n, 0);
        } else if (n) {
            e->crc = wu_crc32(e->crc, at, n);
            e->received += n;
            if (e->cfg.role == WU_ROLE_LOOPBACK_OUT) {
                fifo_push(v, at, n);
                wu_cond_broadcast(&v->cond);
            }
        }
        p->actual = (uint32_t)n;
        p->status = WU_OK;
        x->actual += n;
        x->iso_offset += p->length;
    }
    return x->pkts == x->total_pkts;
}

/* A source's bytes [pos, pos + n) of its stream (every packet full, so the stream position
   modulo the max packet size is the position in the packet). */
static void source_fill(const vep *e, uint8_t *p, uint64_t pos, size_t n)
{
    size_t maxp = e->cfg.max_packet, i = 0;
    if (e->source == WU_SOURCE_ZEROS) {
        memset(p, 0, n);
        return;
    }
    if (e->source == WU_SOURCE_MOD63) { /* one packet's pattern, then copies of it */
        uint8_t packet[1024];
        size_t at = (size_t)(pos % maxp);
        for (size_t j = 0; j < maxp; j++) packet[j] = (uint8_t)(j % 63);
        while (i < n) {
            size_t k = maxp - at < n - i ? maxp - at : n - i;
            memcpy(p + i, packet + at, k);
            i += k;
            at = 0;
        }
        return;
    }
    for (; i < n && pos % 4; i++, pos++) p[i] = (uint8_t)((pos / 4 & 0xFFFFFFFFu) >> (pos % 4 * 8));
    for (; i + 4 <= n; i += 4, pos += 4) { /* whole words, little-endian */
        uint32_t w = (uint32_t)(pos / 4);
        p[i] = (uint8_t)w, p[i + 1] = (uint8_t)(w >> 8), p[i + 2] = (uint8_t)(w >> 16), p[i + 3] = (uint8_t)(w >> 24);
    }
    for (; i < n; i++, pos++) p[i] = (uint8_t)((pos / 4 & 0xFFFFFFFFu) >> (pos % 4 * 8));
}

/* Give the host n bytes of the endpoint's data (the source's or the loopback's) at dst, and
   drop `lost` more (the rest of a packet that did not fit). */
static void send_in(vdev *v, vep *e, uint8_t *dst, size_t n, size_t lost)
{
    if (e->source) {
        source_fill(e, dst, e->source_pos, n);
        e->source_pos += n + lost;
    } else {
        fifo_pop(v, dst, n);
        v->head = (v->head + lost) % v->cap;
        v->count -= lost;
    }
    e->sent += n + lost;
}

/* Move IN data for packets up to `due`: whole packets while they fit, then the last one. A
   packet shorter than the max packet size ends the transfer (the loopback ran dry); one longer
   than the room left is an overflow, as on the bus. Returns 1 complete, 0 more to come, -1 NAK,
   or V_OVERFLOW. */
static int move_in(vdev *v, vep *e, wu_xfer *x, uint64_t due)
{
    size_t maxp = e->cfg.max_packet, room, have, whole, last;
    uint64_t allowed;
    if (x->len == 0) return 1;
    if (e->cfg.role == WU_ROLE_SWITCH && !e->source) {
        if (!v->switch_pending) return x->actual ? 1 : -1;
        if (due <= x->pkts) return 0;
        x->buf[x->actual++] = v->switch_state;
        v->switch_pending = 0;
        e->sent++;
        x->pkts++;
        return x->actual == x->len || maxp > 1;
    }
    if (!e->source && (e->cfg.role != WU_ROLE_LOOPBACK_IN || (v->count == 0 && x->actual == 0))) return -1;
    if (due <= x->pkts) return 0;
    allowed = due - x->pkts;
    room = x->len - x->actual;
    have = e->source ? SIZE_MAX : v->count;
    whole = room / maxp < have / maxp ? room / maxp : have / maxp; /* packets that fit and are there */
    if (whole > allowed) whole = (size_t)allowed;
    send_in(v, e, x->buf + x->actual, whole * maxp, 0);
    x->actual += whole * maxp;
    x->pkts += whole;
    room = x->len - x->actual;
    if (whole == allowed || !room) return !room;
    last = have - whole * maxp < maxp ? have - whole * maxp : maxp; /* the next packet's length */
    x->pkts++;
    if (last > room) { /* babble: what fits arrives, the rest of the packet is lost */
        send_in(v, e, x->buf + x->actual, room, last - room);
        x->actual += room;
        return V_OVERFLOW;
    }
    send_in(v, e, x->buf + x->actual, last, 0);
    x->actual += last;
    return 1; /* a short packet (or none left: the loopback ran dry) ends it */
}

/* ---- EP0: the standard requests, and Gadget Zero's vendor test requests --------------- */

/* The descriptor record (type, index) of the device's table, or NULL. */
static const uint8_t *find_desc(const vdev *v, uint8_t type, uint8_t index, size_t *len)
{
    size_t i = 0;
    while (i + 4 <= v->desc_len) {
        size_t n = v->desc[i + 2] | (size_t)v->desc[i + 3] << 8;
        if (i + 4 + n > v->desc_len) break;
        if (v->desc[i] == type && v->desc[i + 1] == index) {
            *len = n;
            return v->desc + i + 4;
        }
        i += 4 + n;
    }
    return NULL;
}

/* bmAttributes of the configuration descriptor (0x80: bus powered, no remote wake-up). */
static uint8_t config_attributes(const vdev *v)
{
    size_t n = 0;
    const uint8_t *c = find_desc(v, 2, 0, &n);
    return c && n >= 8 ? c[7] : 0x80;
}

/* The endpoint a standard request names (wIndex), or NULL; EP0 is eps[0] whichever direction. */
static vep *request_ep(vdev *v, unsigned index)
{
    return (index & 0x7F) == 0 ? &v->eps[0] : find_ep(v, (uint8_t)index);
}

/* Interface 0 takes alternate setting `alt` (caller holds the device lock and checked it): the
   old setting's transfers are cancelled, as the host kills them, and the new setting's
   endpoints start afresh (no halt). */
static void switch_alt(vdev *v, int alt)
{
    for (int i = 1; i < v->n_eps; i++) {
        vep *e = &v->eps[i];
        if (e->cfg.alt == alt) {
            e->halted = 0;
            continue;
        }
        while (e->head) complete(v, e, e->head, WU_ERR_CANCELLED);
    }
    v->alt = alt;
    wu_cond_broadcast(&v->cond);
}

/* A standard request: the bytes of its IN data stage (0 for none), or V_STALL. */
static int standard_request(vdev *v, uint8_t type, uint8_t req, unsigned value, unsigned index, uint8_t *data,
                            unsigned length)
{
    int in = type & 0x80, to = type & 0x1F;
    size_t n = 0;
    const uint8_t *d;
    vep *e;
    switch (req) {
    case 0x00: /* GET_STATUS */
        if (!in || value || length < 2) return V_STALL;
        data[0] = data[1] = 0;
        if (to == 0) data[0] = (uint8_t)((config_attributes(v) & 0x40 ? 1 : 0) | (v->remote_wakeup ? 2 : 0));
        else if (to == 1) { if (index != 0) return V_STALL; }
        else if (to == 2) { if (!(e = request_ep(v, index))) return V_STALL; data[0] = (uint8_t)(e->halted != 0); }
        else return V_STALL;
        return 2;
    case 0x01: /* CLEAR_FEATURE */
    case 0x03: /* SET_FEATURE */
        if (in || length) return V_STALL;
        if (to == 2 && value == 0) { /* ENDPOINT_HALT: the endpoint's real halt state */
            if (!(e = request_ep(v, index))) return V_STALL;
            if (e != &v->eps[0]) e->halted = req == 0x03;
            wu_cond_broadcast(&v->cond);
            return 0;
        }
        if (to == 0 && value == 1 && (config_attributes(v) & 0x20)) { /* DEVICE_REMOTE_WAKEUP */
            v->remote_wakeup = req == 0x03;
            return 0;
        }
        return V_STALL;
    case 0x06: /* GET_DESCRIPTOR (a string's LANGID is not checked, as on most devices) */
        if (!in || (to != 0 && to != 1)) return V_STALL;
        if (!(d = find_desc(v, (uint8_t)(value >> 8), (uint8_t)value, &n))) return V_STALL;
        if (n > length) n = length;
        memcpy(data, d, n);
        return (int)n;
    case 0x08: /* GET_CONFIGURATION */
        if (!in || to || length < 1) return V_STALL;
        data[0] = (uint8_t)v->configuration;
        return 1;
    case 0x09: /* SET_CONFIGURATION */
        if (in || to || length || value > 1) return V_STALL;
        v->configuration = (int)value;
        return 0;
    case 0x0A: /* GET_INTERFACE */
        if (!in || to != 1 || index != 0 || length < 1 || !v->configuration) return V_STALL;
        data[0] = (uint8_t)v->alt;
        return 1;
    case 0x0B: /* SET_INTERFACE */
        if (in || to != 1 || index != 0 || value >= (unsigned)v->n_alts || length || !v->configuration)
            return V_STALL;
        switch_alt(v, (int)value);
        return 0;
    default:
        return V_STALL;
    }
}

/* Gadget Zero's control test requests (f_sourcesink): 0x5b (vendor OUT) fills the device's
   buffer, 0x5c (vendor IN) returns it; wValue and wIndex must be 0. */
static int vendor_request(vdev *v, uint8_t type, uint8_t req, unsigned value, unsigned index, uint8_t *data,
                          unsigned length)
{
    if (value || index || length > sizeof v->ep0_buf) return V_STALL;
    if (req == 0x5b && type == 0x40) {
        memcpy(v->ep0_buf, data, length);
        return 0;
    }
    if (req == 0x5c && type == 0xC0) {
        memcpy(data, v->ep0_buf, length);
        return (int)length;
    }
    return V_STALL;
}

#define V_WAITING 2 /* move_control: the request waits for the function's answer */

/* Advance a control transfer: SETUP, the data stage and STATUS take their bus time (SETUP and
   STATUS a (micro)frame each); the device answers when STATUS is due, or, for a request its
   function answers, once the answer is in (the host's STATUS stage waits, as a NAKing device
   makes it). 1 done, 0 in progress, V_WAITING, or V_STALL. */
static int move_control(vdev *v, vep *e, wu_xfer *x, uint64_t due)
{
    const uint8_t *s = x->buf;
    unsigned value = s[2] | (unsigned)s[3] << 8, index = s[4] | (unsigned)s[5] << 8;
    unsigned length = s[6] | (unsigned)s[7] << 8;
    int n;
    (void)e;
    if (due < x->total_pkts) {
        x->pkts = due;
        return 0;
    }
    x->pkts = x->total_pkts;
    if ((s[0] & 0x60) && v->function) { /* vendor or class: the function's */
        if (!x->ctl_id) {
            x->ctl_id = ++v->next_ctl_id; /* handed out by wu_virtual_next_request */
            wu_cond_broadcast(&v->cond);
        }
        if (!x->ctl_answer) return V_WAITING;
        n = x->ctl_answer == 1 ? 0 : V_STALL; /* IN data and actual were set by the answer */
        if (n == 0 && !(s[0] & 0x80)) x->actual = length;
        return n < 0 ? V_STALL : 1;
    }
    switch (s[0] & 0x60) {
    case 0x00: n = standard_request(v, s[0], s[1], value, index, x->buf + WU_SETUP_SIZE, length); break;
    case 0x40: n = vendor_request(v, s[0], s[1], value, index, x->buf + WU_SETUP_SIZE, length); break;
    default: n = V_STALL; /* no class requests on this device */
    }
    if (n < 0) return V_STALL;
    x->actual = s[0] & 0x80 ? (size_t)n : length; /* OUT: the host sent the whole data stage */
    return 1;
}

/* Time out transfers queued behind the head; returns the earliest deadline left. */
static int64_t expire_queued(vdev *v, vep *e, int64_t now)
{
    int64_t next = WU_NS_FOREVER;
    wu_xfer *x = e->head ? e->head->qnext : NULL;
    while (x) {
        wu_xfer *after = x->qnext;
        if (x->deadline_ns <= now) complete(v, e, x, WU_ERR_TIMEOUT);
        else next = min64(next, x->deadline_ns);
        x = after;
    }
    return next;
}

static int64_t head_advance(vdev *v, vep *e, int64_t now);

/* Drive the endpoint's queue to `now`. Returns when it next needs attention. */
static int64_t ep_advance(vdev *v, vep *e, int64_t now)
{
    int64_t next = head_advance(v, e, now);
    return min64(next, expire_queued(v, e, now));
}

static int64_t head_advance(vdev *v, vep *e, int64_t now)
{
    for (;;) {
        wu_xfer *x = e->head;
        int64_t limit = now, start;
        uint64_t due;
        int r, timed_out;
        if (!x) return WU_NS_FOREVER;
        if (v->unplugged) { complete(v, e, x, WU_ERR_NO_DEVICE); continue; }
        if (e->halted) {
            complete(v, e, x, WU_ERR_PIPE);
            if (e->cfg.type == WU_EP_CONTROL) e->halted = 0; /* a protocol stall: the next SETUP clears it */
            continue;
        }
        timed_out = x->deadline_ns <= now;
        if (timed_out) limit = x->deadline_ns;
        if (e->nak_until > limit && e->cfg.type != WU_EP_ISOCHRONOUS) { /* the device NAKs: nothing moves */
            x->started = 0;
            if (timed_out) { complete(v, e, x, WU_ERR_TIMEOUT); continue; }
            return min64(e->nak_until, x->deadline_ns);
        }
        if (!x->started) {
            x->started = 1;
            x->pkt_base = x->pkts;
            x->start_ns = max64(max64(x->start_ns, e->bus_ns), e->nak_until);
            if (x->start_ns > limit) x->start_ns = limit;
        }
        start = x->start_ns;
        due = e->frame_ns ? x->pkt_base + (uint64_t)((limit - start) * e->per_frame / e->frame_ns) : UINT64_MAX;
        if (e->cfg.type == WU_EP_CONTROL) r = move_control(v, e, x, due);
        else if (e->cfg.type == WU_EP_ISOCHRONOUS) r = move_iso(v, e, x, due);
        else r = e->cfg.address & 0x80 ? move_in(v, e, x, due) : move_out(v, e, x, due);
        if (r == V_WAITING) {
            if (timed_out) { complete(v, e, x, WU_ERR_TIMEOUT); continue; }
            return x->deadline_ns; /* the answer (or a cancel) broadcasts */
        }
        if (r == 1 || r == V_STALL || r == V_OVERFLOW) {
            e->bus_ns = start + pkt_time(e, x->pkts - x->pkt_base);
            complete(v, e, x, r == 1 ? WU_OK : r == V_STALL ? WU_ERR_PIPE : WU_ERR_OVERFLOW);
            continue;
        }
        if (timed_out) { complete(v, e, x, WU_ERR_TIMEOUT); continue; }
        if (r < 0) {                               /* IN with nothing to send: NAK */
            x->started = 0;
            x->start_ns = now;
            return x->deadline_ns;
        }
        if (x->total_pkts) return min64(start + pkt_time(e, x->total_pkts - x->pkt_base), now + V_STEP_NS);
        return min64(start + pkt_time(e, x->pkts - x->pkt_base + 1), now + V_STEP_NS);
    }
}

static void advance_all(vdev *v)
{
    int64_t now = wu_now_ns();
    for (int i = 0; i < v->n_eps; i++) ep_advance(v, &v->eps[i], now);
}

/* ---- transfers ------------------------------------------------------------------------ */

static int v_xfer_init(wu_xfer *x) { (void)x; return WU_OK; }
static void v_xfer_fini(wu_xfer *x) { (void)x; }

/* Called with the device lock held, in the step that marks x in flight. */
static int v_submit(wu_xfer *x)
{
    vdev *v = V(x->dev);
    vep *e = find_ep(v, x->ep);
    uint64_t maxp;
    if (v->unplugged) return WU_ERR_NO_DEVICE;
    if (!e || (e != &v->eps[0] && e->cfg.alt != v->alt)) return WU_ERR_NOT_FOUND; /* not in the setting */
    if (e->cfg.type != x->type) return WU_ERR_INVALID_PARAM;
    maxp = e->cfg.max_packet;
    x->total_pkts = 0;
    if (x->type == WU_EP_CONTROL) /* SETUP and STATUS: a frame's worth each; the data stage's packets */
        x->total_pkts = 2 * (uint64_t)e->per_frame + div_up(x->len - WU_SETUP_SIZE, maxp);
    else if (x->type == WU_EP_ISOCHRONOUS) { /* one packet per service interval */
        for (int i = 0; i < x->n_iso; i++)
            if (x->iso[i].length > maxp) return WU_ERR_INVALID_PARAM; /* (usbfs refuses it too) */
        x->total_pkts = (uint64_t)x->n_iso;
        x->iso_offset = 0;
    } else if (!(x->ep & 0x80)) {
        x->total_pkts = x->len ? div_up(x->len, maxp) : 1;
        if ((x->flags & WU_XFER_ZLP) && x->len && x->len % maxp == 0) x->total_pkts++;
    }
    x->pkts = x->pkt_base = 0;
    x->started = 0;
    x->ctl_id = 0;
    x->ctl_answer = 0;
    x->start_ns = wu_now_ns();
    x->qnext = NULL;
    x->linked = 1;
    if (e->tail) e->tail->qnext = x; else e->head = x;
    e->tail = x;
    if (v->events) wu_cond_broadcast(&v->cond);
    return WU_OK;
}

static int v_wait(wu_xfer *x, int64_t until_ns)
{
    wu_device *d = x->dev;
    vdev *v = V(d);
    vep *e;
    wu_mutex_lock(&d->lock);
    e = find_ep(v, x->ep);
    while (WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT) {
        int64_t now = wu_now_ns(), next = ep_advance(v, e, now);
        if (WU_LOAD(&x->state) != WU_XFER_IN_FLIGHT) break;
        if (x->deadline_ns <= now) { complete(v, e, x, WU_ERR_TIMEOUT); break; }
        if (now >= until_ns) {
            wu_mutex_unlock(&d->lock);
            return WU_PENDING;
        }
        wu_cond_wait_until(&v->cond, &d->lock, min64(min64(next, until_ns), x->deadline_ns));
    }
    wu_mutex_unlock(&d->lock);
    return WU_OK;
}

static int v_cancel(wu_xfer *x)
{
    vdev *v = V(x->dev);
    vep *e = find_ep(v, x->ep);
    if (!e) return WU_ERR_NOT_FOUND;
    ep_advance(v, e, wu_now_ns());
    if (WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT) complete(v, e, x, WU_ERR_CANCELLED);
    return WU_OK;
}

/* ---- device operations ------------------------------------------------------------------ */

static int v_speed(wu_device *d) { return V(d)->speed; }

/* Whether the device left the bus, for the operations that do not take its lock. */
static int gone(vdev *v) { return WU_LOAD(&v->unplugged); }

static int v_get_descriptor(wu_device *d, uint8_t type, uint8_t index, uint16_t langid, uint8_t *buf, int len)
{
    vdev *v = V(d);
    size_t n = 0;
    const uint8_t *p;
    (void)langid;
    if (gone(v)) return WU_ERR_NO_DEVICE;
    if (!(p = find_desc(v, type, index, &n))) return WU_ERR_PIPE; /* a real device stalls it */
    if (n > (size_t)len) n = (size_t)len;
    memcpy(buf, p, n);
    return (int)n;
}

static int v_get_configuration(wu_device *d, int *config)
{
    int rc = WU_OK;
    wu_mutex_lock(&d->lock); /* EP0's SET_CONFIGURATION changes it under the lock */
    if (V(d)->unplugged) rc = WU_ERR_NO_DEVICE;
    else *config = V(d)->configuration;
    wu_mutex_unlock(&d->lock);
    return rc;
}

static int v_set_configuration(wu_device *d, int config)
{
    int rc = WU_OK;
    wu_mutex_lock(&d->lock);
    if (V(d)->unplugged) rc = WU_ERR_NO_DEVICE;
    else if (config != 0 && config != 1) rc = WU_ERR_NOT_FOUND;
    else V(d)->configuration = config;
    wu_mutex_unlock(&d->lock);
    return rc;
}

static int v_claim(wu_device *d, int iface)
{
    if (gone(V(d))) return WU_ERR_NO_DEVICE;
    return iface == 0 ? WU_OK : WU_ERR_NOT_FOUND;
}

static int v_set_alt(wu_device *d, int iface, int alt)
{
    vdev *v = V(d);
    int rc = WU_OK;
    wu_mutex_lock(&d->lock);
    if (v->unplugged) rc = WU_ERR_NO_DEVICE;
    else if (iface != 0 || alt < 0 || alt >= v->n_alts) rc = WU_ERR_NOT_FOUND;
    else switch_alt(v, alt);
    wu_mutex_unlock(&d->lock);
    return rc;
}

static int v_clear_halt(wu_device *d, uint8_t ep)
{
    vdev *v = V(d);
    vep *e;
    int rc = WU_OK;
    wu_mutex_lock(&d->lock);
    e = find_ep(v, ep);
    if (v->unplugged) rc = WU_ERR_NO_DEVICE;
    else if (!e) rc = WU_ERR_NOT_FOUND;
    else e->halted = 0;
    wu_mutex_unlock(&d->lock);
    return rc;
}

/* A port reset: every endpoint's halt and toggle cleared (the engine cancelled what was in
   flight); the configuration, the function's state and the loopback data stay. */
static int v_reset_port(wu_device *d)
{
    vdev *v = V(d);
    int rc = WU_OK;
    wu_mutex_lock(&d->lock);
    if (v->unplugged) rc = WU_ERR_NO_DEVICE;
    for (int i = 0; rc == WU_OK && i < v->n_eps; i++) v->eps[i].halted = 0;
    v->remote_wakeup = 0;
    wu_cond_broadcast(&v->cond);
    wu_mutex_unlock(&d->lock);
    return rc;
}

static int v_leave(wu_device *d);

/* A port cycle leaves the bus; the virtual device's owner (wdfusb.VirtualDevice) then plugs a new
   attachment in, as a real device re-enumerates by itself. */
static int v_cycle_port(wu_device *d) { return v_leave(d); }

/* The device's event thread: moves every endpoint along the modelled bus time. */
static void *v_events_main(void *arg)
{
    wu_device *d = arg;
    vdev *v = V(d);
    wu_set_completion_context(1);
    wu_mutex_lock(&d->lock);
    while (!v->events_stop) {
        int64_t now = wu_now_ns(), next = WU_NS_FOREVER;
        for (int i = 0; i < v->n_eps; i++) next = min64(next, ep_advance(v, &v->eps[i], now));
        wu_cond_wait_until(&v->cond, &d->lock, next);
    }
    wu_mutex_unlock(&d->lock);
    return NULL;
}

static int v_start_events(wu_device *d)
{
    vdev *v = V(d);
    int rc = WU_OK;
    wu_mutex_lock(&d->lock);
    if (!v->events && !v->events_stop) v->events = wu_thread_start(v_events_main, d);
    if (!v->events) rc = WU_ERR_NO_MEM;
    wu_mutex_unlock(&d->lock);
    return rc;
}

static void v_drain(wu_device *d) { (void)d; /* cancel completes virtual transfers at once */ }

static void v_close(wu_device *d)
{
    vdev *v = V(d);
    struct wu_thread *t;
    wu_mutex_lock(&d->lock);
    v->events_stop = 1;
    v->function_gone = 1;
    t = v->events;
    v->events = NULL;
    wu_cond_broadcast(&v->cond);
    wu_mutex_unlock(&d->lock);
    wu_thread_join(t);
    wu_hotplug_bump(); /* a closed virtual device is detached */
}

static void v_destroy_state(vdev *v)
{
    wu_cond_destroy(&v->cond);
    free(v->fifo);
    free(v->desc);
    free(v);
}

/* No kernel driver binds to a device inside the process: none is active, none to detach. */
static int v_kernel_driver(wu_device *d, int iface, int op)
{
    (void)iface;
    if (gone(V(d))) return WU_ERR_NO_DEVICE;
    return op == WU_KDRIVER_ACTIVE ? 0 : WU_ERR_NOT_FOUND;
}

static void v_destroy(wu_device *d)
{
    v_close(d);
    v_destroy_state(V(d));
}

const wu_backend wu_virtual_backend = {
    v_xfer_init, v_xfer_fini, v_submit, v_wait, v_cancel, NULL, v_speed, v_get_descriptor,
    v_get_configuration, v_set_configuration, v_claim, v_claim, v_set_alt, v_clear_halt, v_reset_port,
    v_cycle_port, v_kernel_driver, v_start_events, v_drain, v_close, v_destroy,
    NULL, /* its event thread, once started, runs until the device closes */
};

/* ---- creation, faults and statistics --------------------------------------------------- */

/* bMaxPacketSize0 of the device descriptor (an exponent from USB 3.0 on), 64 without one. */
static uint16_t ep0_max_packet(const vdev *v)
{
    size_t n = 0;
    const uint8_t *d = find_desc(v, 1, 0, &n);
    if (!d || n < 8 || !d[7]) return 64;
    if (n >= 4 && (d[2] | d[3] << 8) >= 0x0300) return (uint16_t)(1u << (d[7] > 9 ? 9 : d[7]));
    return d[7];
}

int wu_virtual_create(const wu_vdev_config *c, wu_device **out)
{
    vdev *v;
    if (!c || !out || c->n_endpoints < 0 || c->n_endpoints > V_MAX_EPS) return WU_ERR_INVALID_PARAM;
    if (c->n_endpoints && !c->endpoints) return WU_ERR_INVALID_PARAM;
    if (c->speed < WU_SPEED_NONE || c->speed > WU_SPEED_SUPER_PLUS) return WU_ERR_INVALID_PARAM;
    if (c->n_alts < 0 || c->n_alts > 256) return WU_ERR_INVALID_PARAM;
    for (int i = 0; i < c->n_endpoints; i++) {
        const wu_vep_config *ep = &c->endpoints[i];
        if (ep->alt >= (c->n_alts ? c->n_alts : 1)) return WU_ERR_INVALID_PARAM;
        if (ep->type == WU_EP_CONTROL || (ep->address & 0x7F) == 0 || ep->max_packet == 0 || ep->max_packet > 1024)
            return WU_ERR_INVALID_PARAM; /* EP0 is the device's own */
        for (int j = 0; j < i; j++)
            if (c->endpoints[j].address == ep->address) return WU_ERR_INVALID_PARAM;
    }
    v = calloc(1, sizeof *v);
    if (!v) return WU_ERR_NO_MEM;
    v->speed = c->speed;
    v->n_alts = c->n_alts ? c->n_alts : 1;
    v->n_eps = c->n_endpoints + 1;
    v->switch_pending = 1;
    for (int i = 0; i < v->n_eps; i++) {
        if (i) v->eps[i].cfg = c->endpoints[i - 1];
        set_pacing(&v->eps[i], c->speed);
    }
    v->cap = c->loopback_capacity;
    v->desc_len = c->descriptors_len;
    v->desc = v->desc_len ? malloc(v->desc_len) : NULL;
    if (v->desc_len && !v->desc) {
        free(v);
        return WU_ERR_NO_MEM;
    }
    if (v->desc_len) memcpy(v->desc, c->descriptors, v->desc_len);
    v->eps[0].cfg.type = WU_EP_CONTROL; /* EP0: bMaxPacketSize0 of the device descriptor */
    v->eps[0].cfg.max_packet = ep0_max_packet(v);
    set_pacing(&v->eps[0], c->speed);
    wu_cond_init(&v->cond);
    *out = wu_device_alloc(&wu_virtual_backend, v, 1);
    if (!*out) {
        v_destroy_state(v);
        return WU_ERR_NO_MEM;
    }
    return WU_OK; /* attached once Python lists it: virtual.py announces it (wu_hotplug_bump) */
}

/* Run body with e = endpoint ep of virtual device d, under the device lock. */
#define WITH_EP(d, ep, body)                                                   \
    do {                                                                       \
        vdev *v;                                                               \
        vep *e;                                                                \
        int rc = WU_OK;                                                        \
        if (!(d) || !(d)->virtual_device) return WU_ERR_INVALID_PARAM;         \
        if (wu_device_forked(d)) return WU_ERR_FORKED;                         \
        v = V(d);                                                              \
        wu_mutex_lock(&(d)->lock);                                             \
        e = find_ep(v, (ep));                                                  \
        if (!e) rc = WU_ERR_NOT_FOUND;                                         \
        else { body }                                                          \
        wu_mutex_unlock(&(d)->lock);                                           \
        return rc;                                                             \
    } while (0)

int wu_virtual_ep_stats(wu_device *d, uint8_t ep, wu_vep_stats *out)
{
    if (!out) return WU_ERR_INVALID_PARAM;
    WITH_EP(d, ep, {
        out->received_bytes = e->received;
        out->sent_bytes = e->sent;
        out->transfers = e->transfers;
        out->crc32 = e->crc;
        out->halted = (uint32_t)e->halted;
        out->loopback_dropped = v->dropped;
        out->zero_length_packets = e->zlps;
        out->source = (uint32_t)e->source;
    });
}

int wu_virtual_stall(wu_device *d, uint8_t ep)
{
    WITH_EP(d, ep, {
        ep_advance(v, e, wu_now_ns());
        e->halted = 1;
        ep_advance(v, e, wu_now_ns());
        wu_cond_broadcast(&v->cond);
    });
}

int wu_virtual_source(wu_device *d, uint8_t ep, int pattern)
{
    if (pattern < WU_SOURCE_NONE || pattern > WU_SOURCE_COUNTER || !(ep & 0x80) || !(ep & 0x7F))
        return WU_ERR_INVALID_PARAM; /* an IN endpoint, not EP0 */
    WITH_EP(d, ep, {
        if (e->cfg.type != WU_EP_BULK && e->cfg.type != WU_EP_INTERRUPT) rc = WU_ERR_INVALID_PARAM;
        else {
            ep_advance(v, e, wu_now_ns()); /* what moved so far moved as the endpoint was */
            e->source = pattern;
            e->source_pos = 0;
            wu_cond_broadcast(&v->cond);
        }
    });
}

int wu_virtual_nak(wu_device *d, uint8_t ep, double seconds)
{
    if (isnan(seconds) || seconds < 0) return WU_ERR_INVALID_PARAM;
    WITH_EP(d, ep, {
        int64_t now = wu_now_ns();
        ep_advance(v, e, now);
        e->nak_until = seconds >= 9e9 ? WU_NS_FOREVER : now + (int64_t)(seconds * 1e9);
        if (e->head) e->head->started = 0;
        wu_cond_broadcast(&v->cond);
    });
}

/* Off the bus: what is in flight ends with the device-gone status and the bytes that moved.
   WU_ERR_NO_DEVICE when it had already left. */
static int v_leave(wu_device *d)
{
    int was;
    wu_mutex_lock(&d->lock);
    was = V(d)->unplugged;
    advance_all(V(d));
    WU_STORE(&V(d)->unplugged, 1); /* (read without the lock by gone()) */
    advance_all(V(d));
    wu_cond_broadcast(&V(d)->cond);
    wu_mutex_unlock(&d->lock);
    wu_hotplug_bump(); /* it left */
    return was ? WU_ERR_NO_DEVICE : WU_OK;
}

int wu_virtual_unplug(wu_device *d)
{
    if (!d || !d->virtual_device) return WU_ERR_INVALID_PARAM;
    if (wu_device_forked(d)) return WU_ERR_FORKED;
    (void)v_leave(d); /* unplugging twice is no error */
    return WU_OK;
}

/* ---- the device's function: vendor and class requests answered by the caller ----------- */

int wu_virtual_set_function(wu_device *d, int on)
{
    if (!d || !d->virtual_device) return WU_ERR_INVALID_PARAM;
    if (wu_device_forked(d)) return WU_ERR_FORKED;
    wu_mutex_lock(&d->lock);
    V(d)->function = on != 0;
    wu_cond_broadcast(&V(d)->cond);
    wu_mutex_unlock(&d->lock);
    return WU_OK;
}

/* The request at the head of EP0 handed to the function and not yet answered, or NULL. */
static wu_xfer *waiting_request(vdev *v)
{
    wu_xfer *x = v->eps[0].head;
    return x && x->ctl_id && !x->ctl_answer && WU_LOAD(&x->state) == WU_XFER_IN_FLIGHT ? x : NULL;
}

int wu_virtual_next_request(wu_device *d, int64_t timeout_us, wu_vrequest *out)
{
    vdev *v;
    int64_t until;
    int rc = WU_ERR_TIMEOUT;
    if (!d || !d->virtual_device || !out) return WU_ERR_INVALID_PARAM;
    if (wu_device_forked(d)) return WU_ERR_FORKED;
    v = V(d);
    until = timeout_us > 0 && timeout_us < INT64_MAX / 2000 ? wu_now_ns() + timeout_us * 1000 : WU_NS_FOREVER;
    wu_mutex_lock(&d->lock);
    for (;;) {
        wu_xfer *x;
        int64_t now = wu_now_ns();
        if (v->function_gone || v->unplugged) { rc = WU_ERR_NO_DEVICE; break; }
        ep_advance(v, &v->eps[0], now); /* the host's transfer moves to its STATUS stage */
        if ((x = waiting_request(v)) != NULL && x->ctl_id != out->id) {
            size_t length = x->buf[6] | (size_t)x->buf[7] << 8;
            out->id = x->ctl_id;
            memcpy(out->setup, x->buf, WU_SETUP_SIZE);
            out->length = (uint16_t)length;
            if (!(x->buf[0] & 0x80) && length) memcpy(out->data, x->buf + WU_SETUP_SIZE, length);
            rc = WU_OK;
            break;
        }
        if (now >= until) break;
        wu_cond_wait_until(&v->cond, &d->lock, until);
    }
    wu_mutex_unlock(&d->lock);
    return rc;
}

int wu_virtual_answer(wu_device *d, uint64_t id, int result, const uint8_t *data, size_t len)
{
    vdev *v;
    wu_xfer *x;
    int rc = WU_ERR_NOT_FOUND;
    if (!d || !d->virtual_device || (result != WU_OK && result != WU_ERR_PIPE) || (!data && len))
        return WU_ERR_INVALID_PARAM;
    if (wu_device_forked(d)) return WU_ERR_FORKED;
    v = V(d);
    wu_mutex_lock(&d->lock);
    if ((x = waiting_request(v)) != NULL && x->ctl_id == id) {
        size_t length = x->buf[6] | (size_t)x->buf[7] << 8;
        if (result == WU_OK && (x->buf[0] & 0x80)) {
            size_t n = len < length ? len : length;
            memcpy(x->buf + WU_SETUP_SIZE, data, n);
            x->actual = n;
        }
        x->ctl_answer = result == WU_OK ? 1 : -1;
        ep_advance(v, &v->eps[0], wu_now_ns());
        wu_cond_broadcast(&v->cond);
        rc = WU_OK;
    }
    wu_mutex_unlock(&d->lock);
    return rc;
}

int wu_virtual_set_switch(wu_device *d, uint8_t value)
{
    if (!d || !d->virtual_device) return WU_ERR_INVALID_PARAM;
    if (wu_device_forked(d)) return WU_ERR_FORKED;
    wu_mutex_lock(&d->lock);
    if (V(d)->switch_state != value) V(d)->switch_pending = 1;
    V(d)->switch_state = value;
    wu_cond_broadcast(&V(d)->cond);
    wu_mutex_unlock(&d->lock);
    return WU_OK;
}

int wu_virtual_get_switch(wu_device *d, uint8_t *value)
{
    if (!d || !d->virtual_device || !value) return WU_ERR_INVALID_PARAM;
    if (wu_device_forked(d)) return WU_ERR_FORKED;
    wu_mutex_lock(&d->lock);
    *value = V(d)->switch_state;
    wu_mutex_unlock(&d->lock);
    return WU_OK;
}
