/*
 * wdfusb shim: the streaming ring (see wdfusb_shim.h). depth transfers on one pipe, used
 * in ring order and retired strictly in submission order, so waiting on the oldest is all a
 * ring ever does: on the virtual device that wait moves the bus model, on libusb it reaps
 * what the kernel finished. On an OUT pipe the caller submits; on an IN pipe (a reader) the
 * ring keeps its reads in flight itself and delivers what they bring, in order.
 *
 * The ring's lock guards its bookkeeping (head, count, the staging buffers' use, the byte
 * count, the error). It is taken before a device lock, never after. A transfer is waited
 * on without the ring lock; whoever then finds it back and still the oldest retires it,
 * exactly once. A failure is recorded under the lock before anything is cancelled, and
 * every submit checks it under the same lock: nothing is submitted behind a cancel.
 */
#include <stdlib.h>
#include <string.h>

#include "shim.h"

#define RING_ALIGN 4096 /* staging buffers start on a page (DMA-friendly, no split cache lines) */

enum { STAGE_FREE = 0, STAGE_FILLING = 1, STAGE_IN_FLIGHT = 2, STAGE_FULL = 3, STAGE_HELD = 4 };

struct wu_ring {
    wu_mutex lock;
    wu_device *dev;
    uint8_t ep, type;
    int depth;
    size_t chunk;
    int64_t timeout_us;
    wu_xfer **slots;
    int *slot_stage;      /* staging buffer a slot carries, or -1 */
    int *stage_state;     /* depth + 1 entries */
    uint8_t *stage_mem;   /* allocation; stage i at stage_base + i * chunk */
    uint8_t *stage_base;
    int head, count, peak;
    int error;
    int settling;         /* a thread is cancelling and reaping what is in flight */
    uint64_t bytes_done, submitted, retired;
    int64_t front_ns;     /* when the oldest in flight became the oldest */
    /* a reader (IN pipe): reads land in a staging buffer, or straight in the caller's buffer
       of the read in progress (dst: set from a read's first slice until it returns) */
    int reader;
    uint8_t **slot_dst;   /* where a slot's read lands in dst, or NULL (a staging buffer) */
    size_t *slot_len;
    size_t in_flight_len; /* bytes the reads in flight may bring */
    size_t *stage_len, *stage_off; /* a FULL buffer's bytes, and how many were delivered */
    int *ready;           /* FULL buffers in arrival order (a FIFO of depth + 1) */
    int ready_head, ready_n;
    uint64_t buffered;    /* bytes in FULL buffers not delivered */
    int held;             /* the buffer wu_ring_next handed out, or -1 */
    int inside;           /* a thread is in wu_ring_read or wu_ring_next (one at a time) */
    int claimed;          /* a read or next is in progress (from its first slice until it returns) */
    uint8_t *dst;
    size_t dst_len, dst_done, land_end; /* land_end: where the last direct read ends */
    wu_cq_note note;      /* posted to the completion queue when a slot comes back, once armed
                             (wu_ring_notify: every slot points to it) */
};

static void free_arrays(wu_ring *r)
{
    free(r->slots);
    free(r->slot_stage);
    free(r->stage_state);
    free(r->stage_mem);
    free(r->slot_dst);
    free(r->slot_len);
    free(r->stage_len);
    free(r->stage_off);
    free(r->ready);
    free(r);
}

/* When a call's slice ends: slice_us > 0 from now, 0 never, < 0 at once (the call does what
   needs no wait and returns WU_PENDING where it would wait). */
static int64_t deadline_of(int64_t slice_us)
{
    if (slice_us < 0) return wu_now_ns();
    return slice_us > 0 && slice_us < INT64_MAX / 2000 ? wu_now_ns() + slice_us * 1000 : WU_NS_FOREVER;
}

int wu_ring_new(wu_device *dev, uint64_t owner, uint8_t ep, uint8_t type, int depth, size_t chunk,
                int64_t timeout_us, wu_ring **out)
{
    wu_ring *r;
    int rc = WU_OK;
    if (!out) return WU_ERR_INVALID_PARAM;
    *out = NULL;
    if (!dev) return WU_ERR_NO_DEVICE;
    if (depth <= 0 || !chunk || chunk > ((size_t)1 << 30) || (size_t)depth + 1 > SIZE_MAX / chunk - 1)
        return WU_ERR_INVALID_PARAM;
    r = calloc(1, sizeof *r);
    if (!r) return WU_ERR_NO_MEM;
    r->dev = dev;
    r->ep = ep;
    r->type = type;
    r->depth = depth;
    r->chunk = chunk;
    r->timeout_us = timeout_us > 0 ? timeout_us : 0;
    r->slots = calloc((size_t)depth, sizeof *r->slots);
    r->slot_stage = calloc((size_t)depth, sizeof *r->slot_stage);
    r->stage_state = calloc((size_t)depth + 1, sizeof *r->stage_state);
    r->stage_mem = malloc(((size_t)depth + 1) * chunk + RING_ALIGN);
    r->reader = (ep & 0x80) != 0;
    r->held = -1;
    r->slot_dst = calloc((size_t)depth, sizeof *r->slot_dst);
    r->slot_len = calloc((size_t)depth, sizeof *r->slot_len);
    r->stage_len = calloc((size_t)depth + 1, sizeof *r->stage_len);
    r->stage_off = calloc((size_t)depth + 1, sizeof *r->stage_off);
    r->ready = calloc((size_t)depth + 1, sizeof *r->ready);
    if (!r->slots || !r->slot_stage || !r->stage_state || !r->stage_mem || !r->slot_dst || !r->slot_len ||
        !r->stage_len || !r->stage_off || !r->ready)
        rc = WU_ERR_NO_MEM;
    for (int i = 0; rc == WU_OK && i < depth; i++) {
        rc = wu_xfer_new(dev, owner, &r->slots[i]);
        r->slot_stage[i] = -1;
    }
    if (rc != WU_OK) {
        for (int i = 0; r->slots && i < depth; i++) wu_xfer_free(r->slots[i]);
        free_arrays(r);
        return rc;
    }
    r->stage_base = r->stage_mem + (RING_ALIGN - (uintptr_t)r->stage_mem % RING_ALIGN) % RING_ALIGN;
    wu_mutex_init(&r->lock);
    wu_live_add(1);
    *out = r;
    return WU_OK;
}

/* Reader: copy what FULL buffers hold into the read in progress, oldest first. Caller holds
   the ring lock. While a read is in progress the FIFO is empty unless its buffer is full, so
   a direct read (which lands behind everything before it) always finds it empty. */
static void deliver_ready(wu_ring *r)
{
    while (r->ready_n && r->dst && r->dst_done < r->dst_len) {
        int s = r->ready[r->ready_head];
        size_t n = r->stage_len[s] - r->stage_off[s], room = r->dst_len - r->dst_done;
        if (n > room) n = room;
        memcpy(r->dst + r->dst_done, r->stage_base + (size_t)s * r->chunk + r->stage_off[s], n);
        r->dst_done += n;
        r->stage_off[s] += n;
        r->bytes_done += n;
        r->buffered -= n;
        if (r->stage_off[s] < r->stage_len[s]) return;
        r->stage_state[s] = STAGE_FREE;
        r->ready_head = (r->ready_head + 1) % (r->depth + 1);
        r->ready_n--;
    }
}

/* Reader: the oldest read is back with `actual` bytes; they follow everything before them.
   A read that failed brings only its bytes (a zero-length one is a packet only when it succeeded). */
static void arrived(wu_ring *r, int slot, int result, size_t actual)
{
    int s = r->slot_stage[slot];
    r->in_flight_len -= r->slot_len[slot];
    if (s < 0) { /* landed in dst, at or behind where the stream has got to: close the gap */
        uint8_t *to = r->dst ? r->dst + r->dst_done : r->slot_dst[slot];
        if (actual && to != r->slot_dst[slot]) memmove(to, r->slot_dst[slot], actual);
        r->slot_dst[slot] = NULL;
        r->dst_done += actual;
        r->bytes_done += actual;
        return;
    }
    if (result != WU_OK && !actual) {
        r->stage_state[s] = STAGE_FREE;
        return;
    }
    r->stage_state[s] = STAGE_FULL;
    r->stage_len[s] = actual;
    r->stage_off[s] = 0;
    r->ready[(r->ready_head + r->ready_n) % (r->depth + 1)] = s;
    r->ready_n++;
    r->buffered += actual;
    deliver_ready(r);
}

/* The oldest transfer is back: count it. Caller holds the ring lock. */
static void retire_oldest(wu_ring *r, int result, size_t actual)
{
    wu_xfer *x = r->slots[r->head];
    int s = r->slot_stage[r->head];
    if (r->reader) arrived(r, r->head, result, actual);
    else {
        if (s >= 0) r->stage_state[s] = STAGE_FREE;
        r->bytes_done += actual;
    }
    r->slot_stage[r->head] = -1;
    r->head = (r->head + 1) % r->depth;
    r->count--;
    r->retired++;
    r->front_ns = wu_now_ns();
    if (result == WU_ERR_CANCELLED && r->error == WU_OK) { /* a cancel the ring did not ask for */
        int gone = wu_xfer_gone(x);
        if (gone != WU_OK) result = gone; /* the device's close (or its owner's) cancelled it: gone */
    }
    if (result != WU_OK && r->error == WU_OK) r->error = result;
}

/* Retire every transfer at the front that is back. Caller holds the ring lock. */
static void retire_done(wu_ring *r)
{
    while (r->count) {
        wu_xfer *x = r->slots[r->head];
        size_t actual = 0;
        int rc;
        if (wu_xfer_state(x) == WU_XFER_IN_FLIGHT) return;
        rc = wu_xfer_wait(x, 0, &actual);
        retire_oldest(r, rc, actual);
    }
}

/* Fail the ring (first reason wins), cancel what is in flight newest first, and wait until
   every transfer is back and counted. Caller holds the ring lock; returns with it held. */
static void settle(wu_ring *r, int reason)
{
    if (r->error == WU_OK) r->error = reason;
    for (int i = r->count - 1; i >= 0; i--) {
        wu_xfer *x = r->slots[(r->head + i) % r->depth];
        wu_xfer_cancel_in_flight(x); /* (one that came back meanwhile, e.g. on an event thread, is
                                         not cancelled again: its next submit must not fail) */
    }
    r->settling++;
    for (;;) {
        wu_xfer *x;
        size_t actual;
        retire_done(r);
        if (!r->count) break;
        x = r->slots[r->head];
        wu_mutex_unlock(&r->lock);
        wu_xfer_reap(x, &actual); /* cancelled above: back soon */
        wu_mutex_lock(&r->lock);
    }
    r->settling--;
}

void wu_ring_free(wu_ring *r)
{
    if (!r) return;
    if (wu_device_forked(r->dev)) return; /* the child leaves the parent's objects alone */
    wu_mutex_lock(&r->lock);
    if (r->count) settle(r, WU_ERR_CANCELLED);
    wu_mutex_unlock(&r->lock);
    wu_cq_note_arm(&r->note, 0); /* nothing is in flight to post it again; a queued post goes too */
    for (int i = 0; i < r->depth; i++) wu_xfer_free(r->slots[i]);
    wu_mutex_destroy(&r->lock);
    free_arrays(r);
    wu_live_add(-1);
}

uint8_t *wu_ring_stage(wu_ring *r)
{
    uint8_t *p = NULL;
    if (!r || r->reader) return NULL;
    wu_mutex_lock(&r->lock);
    for (int i = 0; i <= r->depth && !p; i++)
        if (r->stage_state[i] == STAGE_FILLING) p = r->stage_base + (size_t)i * r->chunk;
    for (int i = 0; i <= r->depth && !p; i++)
        if (r->stage_state[i] == STAGE_FREE) {
            r->stage_state[i] = STAGE_FILLING;
            p = r->stage_base + (size_t)i * r->chunk;
        }
    wu_mutex_unlock(&r->lock);
    return p; /* never NULL: depth + 1 buffers, at most depth in flight */
}

/* Submit the next slot; caller holds the ring lock and checked there is room. A transfer
   that is already back (ended by a pipe abort or a device-level cancel the ring has not seen
   yet) is retired first: if it failed, nothing goes out behind it, so what moved stays a
   prefix of the stream. */
static int submit_slot(wu_ring *r, uint8_t *buf, size_t len, unsigned flags, int stage)
{
    int slot = (r->head + r->count) % r->depth;
    int rc = wu_xfer_submit(r->slots[slot], r->ep, r->type, buf, len, flags, 0, 0);
    if (rc != WU_OK) return rc;
    if (stage >= 0) r->stage_state[stage] = STAGE_IN_FLIGHT;
    r->slot_stage[slot] = stage;
    r->slot_dst[slot] = stage < 0 && r->reader ? buf : NULL;
    r->slot_len[slot] = len;
    r->in_flight_len += len;
    if (!r->count) r->front_ns = wu_now_ns();
    r->count++;
    r->submitted++;
    if (r->count > r->peak) r->peak = r->count;
    return WU_OK;
}

/* The backend has no memory for one more transfer now (usbfs caps what all URBs in flight
   hold) but some are in flight: wait for one to come back, as when all depth are out. */
static int no_room_yet(const wu_ring *r, int rc) { return rc == WU_ERR_NO_MEM && r->count > 0; }

static int submit_locked(wu_ring *r, uint8_t *buf, size_t len, unsigned flags)
{
    int stage = -1;
    retire_done(r);
    if (r->error != WU_OK) return r->error;
    if (buf >= r->stage_base && buf < r->stage_base + ((size_t)r->depth + 1) * r->chunk) {
        stage = (int)((size_t)(buf - r->stage_base) / r->chunk);
        if (r->stage_state[stage] != STAGE_FILLING) return WU_ERR_INVALID_PARAM;
    }
    return submit_slot(r, buf, len, flags, stage);
}

int wu_ring_submit(wu_ring *r, uint8_t *buf, size_t len, unsigned flags)
{
    int rc;
    if (!r || r->reader || (!buf && len) || len > r->chunk) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    wu_mutex_lock(&r->lock);
    if (r->error != WU_OK) rc = r->error;
    else if (r->count == r->depth) rc = WU_ERR_BUSY;
    else if (no_room_yet(r, rc = submit_locked(r, buf, len, flags))) rc = WU_ERR_BUSY;
    if (rc != WU_OK && rc != WU_ERR_BUSY) settle(r, rc); /* the first failure stays the ring's error */
    wu_mutex_unlock(&r->lock);
    return rc;
}

/* When the oldest in flight times out: WU_NS_FOREVER for no time-out (or one beyond the clock). */
static int64_t front_deadline(const wu_ring *r)
{
    if (!r->timeout_us || r->timeout_us > (WU_NS_FOREVER - r->front_ns) / 1000) return WU_NS_FOREVER;
    return r->front_ns + r->timeout_us * 1000;
}

/* Wait for the oldest transfer until `until` (or its time-out) and retire it. Caller holds
   the ring lock; it is released while waiting. WU_OK, WU_PENDING or the ring's error. */
static int wait_oldest(wu_ring *r, int64_t until)
{
    wu_xfer *x;
    int64_t stop_at = until, now;
    int rc;
    retire_done(r);
    if (r->error != WU_OK) {
        settle(r, r->error);
        return r->error;
    }
    if (!r->count) return WU_OK;
    x = r->slots[r->head];
    if (front_deadline(r) < stop_at) stop_at = front_deadline(r);
    now = wu_now_ns();
    if (stop_at != WU_NS_FOREVER && now >= stop_at) {
        if (stop_at == until) return WU_PENDING;
        settle(r, WU_ERR_TIMEOUT); /* the oldest has waited too long: a prefix moved */
        return r->error;
    }
    wu_mutex_unlock(&r->lock);
    rc = wu_xfer_wait(x, stop_at == WU_NS_FOREVER ? 0 : (stop_at - now + 999) / 1000, NULL);
    wu_mutex_lock(&r->lock);
    if (rc == WU_ERR_WRONG_CONTEXT) {
        if (r->error == WU_OK) r->error = rc;
        return rc;
    }
    retire_done(r);
    if (r->error != WU_OK) settle(r, r->error);
    return r->error != WU_OK ? r->error : WU_OK;
}

int wu_ring_wait(wu_ring *r, int64_t slice_us)
{
    int64_t until = deadline_of(slice_us);
    int rc;
    if (!r) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT; /* it would wait for this very thread */
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    wu_mutex_lock(&r->lock);
    for (;;) {
        uint64_t before = r->retired;
        rc = wait_oldest(r, until);
        if (rc != WU_OK || r->retired != before || !r->count) break;
        if (until != WU_NS_FOREVER && wu_now_ns() >= until) {
            rc = WU_PENDING;
            break;
        }
    }
    wu_mutex_unlock(&r->lock);
    return rc;
}

int wu_ring_poll(wu_ring *r)
{
    int rc;
    if (!r) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    wu_mutex_lock(&r->lock);
    retire_done(r);
    if (r->error != WU_OK && r->count) settle(r, r->error);
    rc = r->error;
    wu_mutex_unlock(&r->lock);
    return rc;
}

/* What the ring says now. Caller holds the ring lock. */
static void info_locked(const wu_ring *r, wu_ring_info *out)
{
    int64_t due = front_deadline(r);
    out->timeout_in_us = -1;
    if (due != WU_NS_FOREVER && r->count && (!r->reader || r->claimed)) { /* (a reader's runs while a call waits) */
        int64_t left = due - wu_now_ns();
        out->timeout_in_us = left > 0 ? (left + 999) / 1000 : 0;
    }
    out->depth = r->depth;
    out->in_flight = r->count;
    out->peak = r->peak;
    out->error = r->error;
    out->bytes_done = r->bytes_done;
    out->submitted = r->submitted;
    out->retired = r->retired;
    out->buffered = r->buffered;
}

int wu_ring_run(wu_ring *r, uint8_t *buf, size_t len, unsigned flags, int64_t slice_us, size_t *done,
                wu_ring_info *info)
{
    int64_t until = deadline_of(slice_us);
    size_t next;
    int rc = WU_OK;
    if (!r || r->reader || !done || *done > len || (!buf && len)) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    next = *done;
    wu_mutex_lock(&r->lock);
    while (next < len) {
        if (r->error != WU_OK) {
            settle(r, r->error);
            rc = r->error;
            break;
        }
        if (r->count < r->depth) {
            size_t n = len - next < r->chunk ? len - next : r->chunk;
            rc = submit_locked(r, buf + next, n, flags);
            if (rc == WU_OK) {
                next += n;
                continue;
            }
            if (!no_room_yet(r, rc)) {
                settle(r, rc);
                break;
            }
        }
        rc = wait_oldest(r, until);
        if (rc != WU_OK) break;
    }
    if (info) info_locked(r, info); /* one lock serves the caller's next look as well */
    wu_mutex_unlock(&r->lock);
    *done = next;
    return rc;
}

/* ---- reading ------------------------------------------------------------------------ */

/* Reader: keep depth reads in flight. A read lands straight in the read in progress when a
   whole chunk of it is still free behind every byte already on its way (the reads in flight
   may all come back full); otherwise in a free staging buffer. None free: the caller has
   not taken what came, and the device waits (it NAKs), as on the bus. Caller holds the lock. */
static void refill(wu_ring *r)
{
    while (r->count < r->depth && r->error == WU_OK) {
        int stage = -1, rc;
        uint8_t *p = NULL;
        if (r->dst) {
            size_t at = r->dst_done + (size_t)r->buffered + r->in_flight_len;
            if (at < r->land_end) at = r->land_end; /* after a short read, still behind the last */
            if (at <= r->dst_len && r->dst_len - at >= r->chunk) p = r->dst + at;
        }
        if (!p) {
            for (int i = 0; i <= r->depth && stage < 0; i++)
                if (r->stage_state[i] == STAGE_FREE) stage = i;
            if (stage < 0) return;
            p = r->stage_base + (size_t)stage * r->chunk;
        }
        rc = submit_slot(r, p, r->chunk, 0, stage);
        if (rc == WU_OK) {
            if (stage < 0) r->land_end = (size_t)(p - r->dst) + r->chunk;
            continue;
        }
        if (no_room_yet(r, rc)) return;
        settle(r, rc);
    }
}

/* A caller starts waiting for data: the oldest read's time-out counts from now (nobody
   waited before), what was handed out is taken back, and a time-out or interrupt that
   ended the previous call is forgotten (the stream had stopped on a prefix). */
static int transient(int error) { return error == WU_ERR_TIMEOUT || error == WU_ERR_INTERRUPTED; }

static void begin_wait(wu_ring *r)
{
    if (r->held >= 0) {
        r->stage_state[r->held] = STAGE_FREE;
        r->held = -1;
    }
    if (transient(r->error) && !r->count) r->error = WU_OK;
    r->front_ns = wu_now_ns();
}

/* The read in progress ends: no read may still land in its buffer. */
static void end_read(wu_ring *r)
{
    for (int i = 0; i < r->count; i++)
        if (r->slot_dst[(r->head + i) % r->depth]) {
            settle(r, WU_ERR_INTERRUPTED);
            break;
        }
    r->dst = NULL;
    r->dst_len = r->dst_done = r->land_end = 0;
}

/* Reader: keep the reads going and wait for the oldest until `until`. 0 when the caller
   should stop (*rc: WU_PENDING, or an error when no read can be made); else 1, look again. */
static int step(wu_ring *r, int64_t until, int *rc)
{
    refill(r);
    if (r->error != WU_OK) return 1;
    if (!r->count) { /* nothing to wait for and no buffer free: cannot happen, but never spin */
        *rc = WU_ERR_BUSY;
        return 0;
    }
    *rc = wait_oldest(r, until);
    if (*rc == WU_PENDING) return 0;
    *rc = WU_OK;
    return 1;
}

int wu_ring_read(wu_ring *r, uint8_t *dst, size_t len, int fresh, int64_t slice_us, size_t *done,
                 wu_ring_info *info)
{
    int64_t until = deadline_of(slice_us);
    int rc = WU_OK;
    if (!r || !r->reader || (!dst && len) || !done) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    wu_mutex_lock(&r->lock);
    /* one read at a time: another thread's is in C or between two of its slices */
    if (r->inside || (fresh && r->claimed) || (!fresh && (r->dst != dst || r->dst_len != len))) {
        rc = r->inside || fresh ? WU_ERR_BUSY : WU_ERR_INVALID_PARAM;
        wu_mutex_unlock(&r->lock);
        return rc;
    }
    r->inside = 1;
    if (fresh) {
        begin_wait(r);
        r->claimed = 1;
        r->dst = dst;
        r->dst_len = len;
    }
    for (;;) {
        retire_done(r);
        deliver_ready(r);
        if (r->dst_done == r->dst_len) break;
        if (r->error != WU_OK) {
            settle(r, r->error); /* what was in flight lands too */
            deliver_ready(r);
            if (r->dst_done < r->dst_len) rc = r->error;
            break;
        }
        if (!step(r, until, &rc)) break;
    }
    *done = r->dst_done;
    if (rc != WU_PENDING) {
        end_read(r);
        r->claimed = 0;
        refill(r); /* keep reading for the next call */
    }
    r->inside = 0;
    if (info) info_locked(r, info);
    wu_mutex_unlock(&r->lock);
    return rc;
}

int wu_ring_next(wu_ring *r, size_t max, int fresh, int64_t slice_us, uint8_t **data, size_t *len,
                 wu_ring_info *info)
{
    int64_t until = deadline_of(slice_us);
    int rc = WU_OK;
    if (!r || !r->reader || !data || !len || !max) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    *data = NULL;
    *len = 0;
    wu_mutex_lock(&r->lock);
    if (r->inside || (fresh && r->claimed) || r->dst) { /* another thread's read is in progress */
        wu_mutex_unlock(&r->lock);
        return WU_ERR_BUSY;
    }
    r->inside = 1;
    if (fresh) {
        begin_wait(r);
        r->claimed = 1;
    }
    for (;;) {
        retire_done(r);
        if (r->ready_n) {
            int s = r->ready[r->ready_head];
            size_t n = r->stage_len[s] - r->stage_off[s];
            if (n > max) n = max;
            *data = r->stage_base + (size_t)s * r->chunk + r->stage_off[s];
            *len = n;
            r->stage_off[s] += n;
            r->bytes_done += n;
            r->buffered -= n;
            if (r->stage_off[s] == r->stage_len[s]) { /* handed out whole: held until the next call */
                r->stage_state[s] = STAGE_HELD;
                r->held = s;
                r->ready_head = (r->ready_head + 1) % (r->depth + 1);
                r->ready_n--;
            }
            break;
        }
        if (r->error != WU_OK) {
            settle(r, r->error);
            if (r->ready_n) continue;
            rc = r->error;
            break;
        }
        if (!step(r, until, &rc)) break;
    }
    if (rc != WU_PENDING) {
        r->claimed = 0;
        refill(r);
    }
    r->inside = 0;
    if (info) info_locked(r, info);
    wu_mutex_unlock(&r->lock);
    return rc;
}

int wu_ring_cancel(wu_ring *r, int reason)
{
    int rc;
    if (!r) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    if (reason == WU_OK) reason = WU_ERR_CANCELLED;
    wu_mutex_lock(&r->lock);
    if (r->reader && transient(r->error) && !transient(reason))
        r->error = reason; /* a reader resumes after a time-out, never after a cancel */
    settle(r, reason); /* a read in progress ends in its own thread's next call */
    rc = r->error;
    wu_mutex_unlock(&r->lock);
    wu_cq_note_post(&r->note); /* an awaiting caller looks again, even if nothing was in flight */
    return rc;
}

int wu_ring_notify(wu_ring *r, uint64_t tag)
{
    int rc;
    if (!r) return WU_ERR_INVALID_PARAM;
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    if (tag) {
        if ((rc = wu_device_check(r->dev)) != WU_OK) return rc;
        if ((rc = r->dev->be->start_events(r->dev)) != WU_OK) /* transfers move with nobody waiting */
            return wu_device_check(r->dev) != WU_OK ? wu_device_check(r->dev) : rc;
    }
    if (tag) wu_cq_note_arm(&r->note, tag);
    for (int i = 0; i < r->depth; i++) /* (unarmed, a slot's return takes no queue lock) */
        wu_xfer_set_note(r->slots[i], tag ? &r->note : NULL);
    if (!tag) wu_cq_note_arm(&r->note, 0);
    return WU_OK;
}

int wu_ring_interrupt(wu_ring *r, size_t *done)
{
    int rc;
    if (!r || !r->reader || !done) return WU_ERR_INVALID_PARAM;
    if (wu_in_callback()) return WU_ERR_WRONG_CONTEXT;
    if (wu_device_forked(r->dev)) return WU_ERR_FORKED;
    wu_mutex_lock(&r->lock);
    if (r->inside) { /* (another thread's read, in C: not the caller's to stop) */
        wu_mutex_unlock(&r->lock);
        return WU_ERR_BUSY;
    }
    settle(r, WU_ERR_INTERRUPTED); /* every read back; what they brought lands, in order */
    if (r->dst) {
        *done = r->dst_done;
        end_read(r);
    }
    r->claimed = 0;
    rc = r->error;
    wu_mutex_unlock(&r->lock);
    return rc;
}

void wu_ring_info_get(wu_ring *r, wu_ring_info *out)
{
    if (!r || !out) return;
    if (wu_device_forked(r->dev)) { /* the parent's lock may be held by a thread the child lacks */
        memset(out, 0, sizeof *out);
        out->error = WU_ERR_FORKED;
        return;
    }
    wu_mutex_lock(&r->lock);
    info_locked(r, out);
    wu_mutex_unlock(&r->lock);
}
